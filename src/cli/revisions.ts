import type { Command } from '@commander-js/extra-typings'
import { listRevisions } from '../store/revisions.js'
import { storeFromUrl } from '../store/open-store.js'
import { action } from './run-command.js'

export function registerRevisions(program: Command): void {
  program
    .command('revisions')
    .description('list the snapshots a store holds, oldest first, as JSON lines (created_at, id, previous_id, name, size, source)')
    .requiredOption('--store <url>', 'store: a path or file:///path')
    .action(
      action(async (opts: { store: string }) => {
        const store = storeFromUrl(opts.store)
        await store.open()
        for (const r of await listRevisions(store)) process.stdout.write(JSON.stringify(r) + '\n')
      }),
    )
}
