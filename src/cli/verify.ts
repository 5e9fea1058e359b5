import type { Command } from '@commander-js/extra-typings'
import { parseId } from '../format/id.js'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'
import { SnapdirError } from '../util/errors.js'
import { action } from './run-command.js'
import { progressBar } from './progress.js'

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('re-read and re-hash every object snapshot ID needs; exit 1 naming any damaged chunk and its files')
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .requiredOption('--id <id>', 'snapshot ID')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (opts: { store: string; s3Endpoint?: string; id: string; json?: true }) => {
        const { verify } = await import('../snapshot/verify.js')
        const id = parseId(opts.id)
        const store = storeFromOptions(opts)
        const bar = progressBar('items')
        try {
          const r = await verify(store, id, { onTree: (n) => bar.start(n, 'verify'), onChunk: () => bar.add(1) })
          bar.stop()
          if (opts.json) process.stdout.write(JSON.stringify(r) + '\n')
          else process.stdout.write(`${r.chunksChecked} chunks checked, ${r.damaged.length} damaged\n`)
          for (const d of r.damaged) {
            process.stderr.write(`snapdir: damaged chunk ${d.id} (${d.problem}): ${d.detail}; used by ${d.files.join(', ')}\n`)
          }
          if (r.damaged.length > 0) {
            throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `snapshot ${id} in ${store.url} is damaged: ${r.damaged.length} chunk(s)`)
          }
        } finally {
          bar.stop()
          await store.close()
        }
      }),
    )
}
