import type { Command } from '@commander-js/extra-typings'
import { parseId } from '../format/id.js'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'
import { action } from './run-command.js'
import { progressBar } from './progress.js'

export function registerPull(program: Command): void {
  program
    .command('pull')
    .description(
      'materialise snapshot ID as DIR (which must not exist or be empty), or with --tar as one tar archive; ' +
        "every chunk is verified, and an image layout's blobs against their digests",
    )
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .requiredOption('--id <id>', 'snapshot ID (64 hex digits, as printed by push)')
    .option('--tar', "write a tar archive at TARGET ('-' for stdout) instead of a directory: for docker load, skopeo docker-archive: or oci-archive:, ctr import")
    .argument('<target>', 'target directory (or archive file with --tar)')
    .action(
      action(async (dir: string, opts: { store: string; s3Endpoint?: string; id: string; tar?: true }) => {
        const { pull } = await import('../snapshot/pull.js')
        const { pullArchive } = await import('../snapshot/pull-archive.js')
        const id = parseId(opts.id)
        const store = storeFromOptions(opts)
        const bar = progressBar('bytes')
        try {
          await (opts.tar ? pullArchive : pull)(store, id, dir, { onTree: (total) => bar.start(total, 'pull'), onBytes: (n) => bar.add(n) })
        } finally {
          bar.stop()
          await store.close()
        }
      }),
    )
}
