import type { Command } from '@commander-js/extra-typings'
import { parseId } from '../format/id.js'
import { ENDPOINT_HELP, STORE_HELP } from './store-options.js'
import { action } from './run-command.js'
import { sweepStoreFromOptions } from './sweep-store.js'

export function registerRm(program: Command): void {
  program
    .command('rm')
    .description(
      "remove every revision of each snapshot ID from the store, and the snapshot's small root object (the rest of what " +
        "they used is freed by a later 'snapdir gc', once nothing else uses it); prints one line per revision removed. " +
        'An ID with no revision: exit 2, nothing removed',
    )
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option('--json', 'print the removed revisions as JSON lines')
    .argument('<id...>', 'snapshot IDs (as push printed them)')
    .action(
      action(async (ids: string[], opts: { store: string; s3Endpoint?: string; json?: true }) => {
        const parsed = ids.map((id) => parseId(id))
        const { removeRevisions } = await import('../store/remove-revisions.js')
        const store = sweepStoreFromOptions(opts)
        try {
          const { removed } = await removeRevisions(store, parsed)
          for (const { revision: r } of removed) {
            process.stdout.write(opts.json ? JSON.stringify(r) + '\n' : `removed ${r.id} ${r.name} ${r.created_at}\n`)
          }
        } finally {
          await store.close()
        }
      }),
    )
}
