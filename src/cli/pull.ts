import { Option, type Command } from '@commander-js/extra-typings'
import { resolveSnapshot, type SnapshotRef } from '../store/resolve-snapshot.js'
import { parsePlatform } from '../oci/platform.js'
import { UsageError } from '../util/errors.js'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'
import { action } from './run-command.js'
import { ID_HELP, IMAGE_HELP, snapshotRefOf } from './snapshot-options.js'
import { progressBar } from './progress.js'
import { integerOption } from './numbers.js'
import { addRegistryOptions, registryClientOptions, type RegistryCliOptions } from './registry-options.js'

// the values of --format (snapshot/archive-format.ts ARCHIVE_FORMATS, kept here so that --help loads nothing)
const FORMATS = ['oci-archive', 'docker-archive'] as const

export function registerPull(program: Command): void {
  const command = program
    .command('pull')
    .description(
      'materialise a snapshot (--id or --image) as DIR (which must not exist or be empty), or with --tar as one tar archive, or send its image to a registry ' +
        "(docker://HOST[:PORT]/REPO[:TAG][@DIGEST]); every chunk is verified, and an image's blobs against their digests",
    )
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option('--id <id>', ID_HELP)
    .option('--image <name:tag>', IMAGE_HELP)
    .option('--tar', "write a tar archive at TARGET ('-' for stdout) instead of a directory: for docker load, skopeo docker-archive: or oci-archive:, ctr import")
    .addOption(
      new Option('--format <format>', 'with --tar, for an image: oci-archive (an OCI image layout) or docker-archive (what docker load reads, layers uncompressed); default: as pushed').choices(
        FORMATS,
      ),
    )
    .option(
      '--platform <os/arch[/variant]>',
      "the image of a multi-platform index: with --tar --format docker-archive, the one to write (default: this machine's); to a registry, repeatable: once sends that platform's manifest alone, several an index of those (default: every platform)",
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option('--jobs <n>', 'docker://: blobs checked or sent at once', '4')
    .option('--json', 'docker://: print a JSON summary (blobs and bytes sent, skipped, mounted)')
    .argument('<target>', 'target directory (or archive file with --tar, or docker://… image)')
  addRegistryOptions(command).action(
      action(async (dir: string, opts: { store: string; s3Endpoint?: string; id?: string; image?: string; tar?: true; format?: (typeof FORMATS)[number]; platform: string[]; jobs: string; json?: true } & RegistryCliOptions) => {
        const ref = snapshotRefOf(opts)
        if (dir.startsWith('docker://')) {
          if (opts.tar || opts.format !== undefined) throw new UsageError('--tar and --format write an archive; a docker:// target is a registry')
          return pullIntoRegistry(ref, dir, opts)
        }
        const { pull } = await import('../snapshot/pull.js')
        const { pullArchive } = await import('../snapshot/pull-archive.js')
        if (opts.format !== undefined && !opts.tar) throw new UsageError('--format is for an archive: add --tar')
        if (opts.platform.length > 0 && opts.format !== 'docker-archive') throw new UsageError('--platform picks the image a docker-archive holds: add --tar --format docker-archive')
        if (opts.platform.length > 1) throw new UsageError('a docker-archive holds one image: give --platform once')
        const format = {
          ...(opts.format !== undefined ? { format: opts.format } : {}),
          ...(opts.platform[0] !== undefined ? { platform: parsePlatform(opts.platform[0]) } : {}),
        }
        const store = storeFromOptions(opts)
        const bar = progressBar('bytes')
        const progress = { onTree: (total: number) => bar.start(total, 'pull'), onBytes: (n: number) => bar.add(n) }
        try {
          const id = await resolveSnapshot(store, ref)
          if (opts.tar) await pullArchive(store, id, dir, { ...progress, ...format })
          else await pull(store, id, dir, progress)
        } finally {
          bar.stop()
          await store.close()
        }
      }),
    )
}

async function pullIntoRegistry(snapshot: SnapshotRef, target: string, opts: { store: string; s3Endpoint?: string; platform: string[]; jobs: string; json?: true } & RegistryCliOptions): Promise<void> {
  const { parseImageRef } = await import('../registry/reference.js')
  const { sendStoredImage } = await import('../sync/send-stored-image.js')
  const { imageName, printSend, sendProgress } = await import('./image-send.js')
  const ref = parseImageRef(target)
  const platforms = opts.platform.map((p) => parsePlatform(p))
  const jobs = integerOption('--jobs', opts.jobs, 1, 64)
  const store = storeFromOptions(opts)
  const { RegistryClient } = await import('../registry/client.js')
  const client = new RegistryClient(ref.registry, registryClientOptions(opts, 'destination'))
  const progress = sendProgress('pull')
  try {
    await store.open()
    const id = await resolveSnapshot(store, snapshot)
    const summary = await sendStoredImage(
      store,
      id,
      client,
      { repository: ref.repository, ...(ref.tag !== undefined ? { tag: ref.tag } : {}), ...(ref.digest !== undefined ? { digest: ref.digest } : {}) },
      { jobs, platforms, ...progress.options },
    )
    progress.stop()
    printSend(imageName(ref.registry, ref.repository, ref.tag), summary, opts.json === true)
  } finally {
    progress.stop()
    await client.close()
    await store.close()
  }
}
