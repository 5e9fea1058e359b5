import type { Command } from '@commander-js/extra-typings'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'
import { action } from './run-command.js'

export function registerRevisions(program: Command): void {
  program
    .command('revisions')
    .description(
      'list the snapshots a store holds, oldest first, as JSON lines (created_at, id, previous_id, name, size, source, ' +
        'and images: the NAME:TAGs that name the snapshot now, when any do)',
    )
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option('--json', 'the same JSON lines (the only output there is; for scripts that pass --json to every command)')
    .action(
      action(async (opts: { store: string; s3Endpoint?: string; json?: true }) => {
        const { listRevisions } = await import('../store/revisions.js')
        const { listImageNames } = await import('../store/image-names.js')
        const { formatImageName } = await import('../format/image-name.js')
        const store = storeFromOptions(opts)
        try {
          await store.open()
          const revisions = await listRevisions(store)
          const names = new Map<string, string[]>()
          for (const n of await listImageNames(store)) names.set(n.id, [...(names.get(n.id) ?? []), formatImageName(n)])
          for (const r of revisions) {
            const images = names.get(r.id)
            process.stdout.write(JSON.stringify(images ? { ...r, images } : r) + '\n')
          }
        } finally {
          await store.close()
        }
      }),
    )
}
