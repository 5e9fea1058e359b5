import type { Command } from '@commander-js/extra-typings'
import { formatImageName, parseImageName, type ImageName } from '../format/image-name.js'
import { parsePlatform, type Platform } from '../oci/platform.js'
import type { PushResult } from '../snapshot/push.js'
import { isImageRef } from '../registry/reference.js'
import { addRegistryOptions, registryClientOptions, type RegistryCliOptions } from './registry-options.js'
import { repeatable } from './snapshot-options.js'
import { discardIfCreated, ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'
import { action } from './run-command.js'
import { progressBar } from './progress.js'

export function registerPush(program: Command): void {
  const command = program
    .command('push')
    .description(
      'snapshot DIR into the store and print its ID (only the ID) on stdout. DIR may also be a tar archive (plain, ' +
        'gzip or zstd), e.g. an image from docker save, ctr image export or skopeo oci-archive:/docker-archive:; ' +
        'it is unpacked into a temporary directory (under TMPDIR) first. Images are checked by digest and their layers expanded. ' +
        'docker://HOST[:PORT]/REPO:TAG streams an image from a registry into the store, as the OCI layout skopeo copy would write, with no local copy.',
    )
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option(
      '--image <name:tag>',
      "record this image name and tag for the snapshot (repeat for several), written last; a tag the store has moves to it. " +
        "A layout's org.opencontainers.image.ref.name and an archive's RepoTags are not taken as names: give them here",
      repeatable,
    )
    .option('--name <name>', 'name recorded in the revisions log (default: the first --image name, else the directory or archive name)')
    .option('--json', 'print a JSON summary instead of the bare ID')
    .option(
      '--platform <os/arch[/variant]>',
      'for a multi-platform image: keep only this platform (repeat, or separate by commas, for several); its indexes are ' +
        'rewritten to list just those, so their digests change',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .argument('<dir>', 'directory (or archive file) to snapshot, or docker://HOST[:PORT]/REPO:TAG (or @sha256:…): an image streamed from a registry')
  addRegistryOptions(command)
  command.action(
      action(async (dir: string, opts: { store: string; s3Endpoint?: string; image?: string[]; name?: string; json?: true; platform?: string[] } & RegistryCliOptions) => {
        const platforms = opts.platform?.flatMap((p) => p.split(',')).map((p) => parsePlatform(p))
        const images = opts.image?.map((i) => parseImageName(i))
        if (isImageRef(dir)) return pushImageRef(dir, opts, platforms, images)
        const store = storeFromOptions(opts)
        // the workers boot (~0.1 s) while push's modules load; push closes them whatever happens
        const { poolFor } = await import('../ingest/worker-pool.js')
        const pool = poolFor(store)
        const { push } = await import('../snapshot/push.js')
        const bar = progressBar('bytes')
        try {
          const result = await push(store, dir, {
            pool,
            ...(opts.name !== undefined ? { name: opts.name } : {}),
            ...(platforms ? { platforms } : {}),
            ...(images ? { images } : {}),
            ...pushProgress(bar, 'expand layers'),
          })
          bar.stop()
          printPush(result, opts.json === true, images)
        } catch (err) {
          await discardIfCreated(store)
          throw err
        } finally {
          bar.stop()
          await store.close()
        }
      }),
    )
}

/** What push prints: the ID, or with --json a summary; and on stderr each layer blob kept raw. */
export function printPush(result: PushResult, json: boolean, images: ImageName[] | undefined): void {
  // a layer blob kept raw costs its bytes again: say which, and why
  for (const l of result.layerStorage ?? []) if ('raw' in l) process.stderr.write(`layer ${l.digest} stored raw: ${l.raw}\n`)
  if (json) {
    const { id, stats, layers, layerStorage, phases, revision } = result
    const named = images ? { images: images.map(formatImageName) } : {}
    process.stdout.write(JSON.stringify({ id, ...stats, ...(layers ? { layers } : {}), ...(layerStorage ? { layerStorage } : {}), phases, revision, ...named }) + '\n')
  } else process.stdout.write(result.id + '\n')
}

/**
 * push of docker://…: the image streamed from the registry (snapshot/push-registry.ts), named in the
 * store as HOST[:PORT]/REPO with its tag unless `images` says otherwise.
 */
export async function pushImageRef(
  given: string,
  opts: { store: string; s3Endpoint?: string; name?: string; json?: true } & RegistryCliOptions,
  platforms: Platform[] | undefined,
  images: ImageName[] | undefined,
): Promise<void> {
  const { parseImageRef } = await import('../registry/reference.js')
  const ref = parseImageRef(given)
  const { RegistryClient } = await import('../registry/client.js')
  const client = new RegistryClient(ref.registry, registryClientOptions(opts, 'source'))
  const store = storeFromOptions(opts)
  const { pushFromRegistry } = await import('../snapshot/push-registry.js')
  const bar = progressBar('bytes')
  try {
    const tag = ref.tag ?? (ref.digest === undefined ? 'latest' : undefined)
    const result = await pushFromRegistry(
      store,
      { registry: client, repository: ref.repository, reference: ref.reference, ...(tag !== undefined ? { tag } : {}), shownAs: ref.toString() },
      {
        ...(opts.name !== undefined ? { name: opts.name } : {}),
        ...(platforms ? { platforms } : {}),
        ...(images ? { images } : tag !== undefined ? { images: [{ name: `${ref.registry}/${ref.repository}`, tag }] } : {}),
        ...pushProgress(bar, 'fetch layers'),
      },
    )
    bar.stop()
    printPush(result, opts.json === true, images)
  } catch (err) {
    await discardIfCreated(store)
    throw err
  } finally {
    bar.stop()
    await client.close()
    await store.close()
  }
}

/** Push's progress on one bar: the layers' bytes (expanded or fetched), then the snapshot's. */
function pushProgress(bar: ReturnType<typeof progressBar>, layers: string) {
  return {
    onLayersPlanned: (total: number) => bar.start(total, layers),
    onLayerBytes: (n: number) => bar.add(n),
    onScanned: (total: number) => {
      bar.stop()
      bar.start(total, 'push')
    },
    onBytes: (n: number) => bar.add(n),
  }
}
