import type { Command } from '@commander-js/extra-typings'
import { parseId } from '../format/id.js'
import { parsePlatform } from '../oci/platform.js'
import { isImageRef, parseImageRef } from '../registry/reference.js'
import { UsageError } from '../util/errors.js'
import { addRegistryOptions, registryClientOptions, type RegistryCliOptions } from './registry-options.js'
import { action } from './run-command.js'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'

export function registerContainerd(program: Command): void {
  const containerd = program.command('containerd').description('put images into containerd, served lazily by `snapdir snapshotter`')
  const pull = containerd
    .command('pull')
    .description(
      "put an image into containerd without fetching the layers the snapdir snapshotter's store holds: its manifest and config go " +
        "into containerd's content store, and each layer the snapshotter's store holds (by its chain of diff_ids) becomes a snapshot " +
        'it serves lazily. The snapshotter must run with --store, and be containerd\'s proxy snapshotter --snapshotter. ' +
        'Then `ctr run --snapshotter snapdir NAME …` starts at once, and only what the container reads is fetched. Prints the image name.\n\n' +
        'REF is a registry image, docker://HOST[:PORT]/REPO:TAG or @sha256:…, named HOST/REPO:TAG in containerd (--name to change it); ' +
        "a layer the snapshotter's store lacks is fetched from the registry and unpacked by containerd, as its own pull does. " +
        'An image `snapdir serve` offers from the snapshotter\'s store is such an image, and comes in all lazy.\n\n' +
        'Or REF is the name to give image --id of --store in containerd; a layer the snapshotter\'s store lacks is streamed from --store and unpacked by containerd.',
    )
    .argument('<ref>', 'docker://HOST/REPO:TAG, or with --store and --id the image name in containerd, e.g. docker.io/library/app:1')
    .option('--store <url>', `with --id: the store the image is in; ${STORE_HELP}`)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option('--id <id>', 'with --store: snapshot ID of a pushed image')
    .option('--image <ref>', 'with --id: the image of a layout holding several (ref name or manifest digest)')
    .option('--name <name>', 'for a registry image: its name in containerd (default HOST/REPO:TAG)')
    .option('--platform <os/arch[/variant]>', "the image of a multi-platform index (default: this machine's)")
    .option('--address <socket>', "containerd's socket", '/run/containerd/containerd.sock')
    .option('--namespace <ns>', 'the containerd namespace', 'default')
    .option('--snapshotter <name>', 'the name containerd knows the snapdir snapshotter by', 'snapdir')
    .option('--json', 'print the image, its manifest and each layer (lazy, or applied) as JSON')
  addRegistryOptions(pull).action(
    action(async (ref: string, opts) => {
      const path = await import('node:path')
      const log = (line: string) => process.stderr.write(`snapdir containerd pull: ${line}\n`)
      const common = {
        address: path.resolve(opts.address),
        namespace: opts.namespace,
        snapshotter: opts.snapshotter,
        ...(opts.platform !== undefined ? { platform: parsePlatform(opts.platform) } : {}),
        log,
      }
      let result
      if (isImageRef(ref)) {
        if (opts.store !== undefined || opts.id !== undefined || opts.image !== undefined) {
          throw new UsageError(`${ref} is a registry image: it takes no --store, --id or --image (the snapshotter's store decides which layers are lazy)`)
        }
        const image = parseImageRef(ref)
        const { containerdPullRegistry, containerdImageName } = await import('../snapshotter/containerd-registry-pull.js')
        result = await containerdPullRegistry(image, { ...common, name: opts.name ?? containerdImageName(image), registry: registryClientOptions(opts as RegistryCliOptions, 'source') })
      } else {
        if (opts.store === undefined || opts.id === undefined) {
          throw new UsageError(`${JSON.stringify(ref)}: give a registry image (docker://HOST/REPO:TAG), or --store and --id of the stored image to name so`)
        }
        if (opts.name !== undefined) throw new UsageError('--name is for a registry image; with --store and --id, REF is the name')
        const { containerdPull } = await import('../snapshotter/containerd-pull.js')
        const id = parseId(opts.id)
        const store = storeFromOptions({ store: opts.store, ...(opts.s3Endpoint !== undefined ? { s3Endpoint: opts.s3Endpoint } : {}) })
        try {
          await store.open()
          result = await containerdPull(store, id, { ...common, name: ref, ...(opts.image !== undefined ? { image: opts.image } : {}) })
        } finally {
          await store.close()
        }
      }
      process.stdout.write(opts.json ? `${JSON.stringify(result)}\n` : `${result.name}\n`)
    }),
  )
}
