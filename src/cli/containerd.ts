import type { Command } from '@commander-js/extra-typings'
import { parseId } from '../format/id.js'
import { parsePlatform } from '../oci/platform.js'
import { action } from './run-command.js'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'

export function registerContainerd(program: Command): void {
  const containerd = program.command('containerd').description('put images of a store into containerd, served lazily by `snapdir snapshotter`')
  containerd
    .command('pull')
    .description(
      "put image ID into containerd as NAME without its layers: its manifest and config go into containerd's content store, " +
        'and each layer becomes a snapshot the snapdir snapshotter serves lazily from the store (it must run with --store on ' +
        "this store, and be containerd's proxy snapshotter --snapshotter). Then `ctr run --snapshotter snapdir NAME …` " +
        'starts at once, and only what the container reads is fetched. Prints the image name.',
    )
    .argument('<name>', 'the image name in containerd, e.g. docker.io/library/app:1')
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .requiredOption('--id <id>', 'snapshot ID of a pushed image')
    .option('--image <ref>', 'the image of a layout holding several (ref name or manifest digest)')
    .option('--platform <os/arch[/variant]>', "the image of a multi-platform index (default: this machine's)")
    .option('--address <socket>', "containerd's socket", '/run/containerd/containerd.sock')
    .option('--namespace <ns>', 'the containerd namespace', 'default')
    .option('--snapshotter <name>', 'the name containerd knows the snapdir snapshotter by', 'snapdir')
    .option('--json', 'print the image, its manifest and each layer as JSON')
    .action(
      action(async (name: string, opts) => {
        const { containerdPull } = await import('../snapshotter/containerd-pull.js')
        const path = await import('node:path')
        const id = parseId(opts.id)
        const store = storeFromOptions(opts)
        const log = (line: string) => process.stderr.write(`snapdir containerd pull: ${line}\n`)
        try {
          await store.open()
          const result = await containerdPull(store, id, {
            address: path.resolve(opts.address),
            namespace: opts.namespace,
            snapshotter: opts.snapshotter,
            name,
            ...(opts.image !== undefined ? { image: opts.image } : {}),
            ...(opts.platform !== undefined ? { platform: parsePlatform(opts.platform) } : {}),
            log,
          })
          process.stdout.write(opts.json ? `${JSON.stringify(result)}\n` : `${result.name}\n`)
        } finally {
          await store.close()
        }
      }),
    )
}
