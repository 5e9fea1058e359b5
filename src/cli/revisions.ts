import type { Command } from '@commander-js/extra-typings'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'
import { action } from './run-command.js'

export function registerRevisions(program: Command): void {
  program
    .command('revisions')
    .description('list the snapshots a store holds, oldest first, as JSON lines (created_at, id, previous_id, name, size, source)')
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .action(
      action(async (opts: { store: string; s3Endpoint?: string }) => {
        const { listRevisions } = await import('../store/revisions.js')
        const store = storeFromOptions(opts)
        try {
          await store.open()
          for (const r of await listRevisions(store)) process.stdout.write(JSON.stringify(r) + '\n')
        } finally {
          await store.close()
        }
      }),
    )
}
