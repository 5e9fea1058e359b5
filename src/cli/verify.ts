import type { Command } from '@commander-js/extra-typings'
import { resolveSnapshot } from '../store/resolve-snapshot.js'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'
import { SnapdirError } from '../util/errors.js'
import { action } from './run-command.js'
import { ID_HELP, IMAGE_HELP, snapshotRefOf } from './snapshot-options.js'
import { progressBar } from './progress.js'

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('re-read and re-hash every object a snapshot (--id or --image) needs (an image: its expanded layers too); exit 1 naming any damaged object, its files and layer')
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option('--id <id>', ID_HELP)
    .option('--image <name:tag>', IMAGE_HELP)
    .option('--json', 'print the result as JSON')
    .action(
      action(async (opts: { store: string; s3Endpoint?: string; id?: string; image?: string; json?: true }) => {
        const { verify } = await import('../snapshot/verify.js')
        const ref = snapshotRefOf(opts)
        const store = storeFromOptions(opts)
        const bar = progressBar('items')
        try {
          const id = await resolveSnapshot(store, ref)
          const r = await verify(store, id, { onPlan: (n) => bar.start(n, 'verify'), onChunk: () => bar.add(1) })
          bar.stop()
          const damaged = r.damaged.length + r.damagedLayers.length + r.damagedBlobs.length
          if (opts.json) process.stdout.write(JSON.stringify(r) + '\n')
          else {
            const scope = r.layers > 0 ? ` (the bundle and ${r.layers} layer${r.layers === 1 ? '' : 's'})` : ''
            const blobs = r.blobsChecked > 0 ? `, ${r.blobsChecked} layer blob${r.blobsChecked === 1 ? '' : 's'} regenerated from recipes` : ''
            process.stdout.write(`${r.chunksChecked} chunks checked${scope}${blobs}, ${damaged} damaged\n`)
          }
          for (const d of r.damagedLayers) process.stderr.write(`snapdir: damaged layer ${d.diffId} (${d.object} ${d.problem}): ${d.detail}\n`)
          for (const d of r.damaged) {
            const users = [...(d.files.length > 0 ? [d.files.join(', ')] : []), ...d.layers.map((l) => `${l.files.join(', ')} in layer ${l.diffId}`)]
            process.stderr.write(`snapdir: damaged chunk ${d.id} (${d.problem}): ${d.detail}; used by ${users.join('; ')}\n`)
          }
          for (const d of r.damagedBlobs) process.stderr.write(`snapdir: damaged layer blob ${d.file}: ${d.detail}\n`)
          if (damaged > 0) {
            const counts = [
              ...(r.damaged.length > 0 ? [`${r.damaged.length} chunk(s)`] : []),
              ...(r.damagedLayers.length > 0 ? [`${r.damagedLayers.length} layer tree(s), ref(s) or recipe(s)`] : []),
              ...(r.damagedBlobs.length > 0 ? [`${r.damagedBlobs.length} layer blob(s) that do not regenerate`] : []),
            ]
            throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `snapshot ${id} in ${store.url} is damaged: ${counts.join(', ')}`)
          }
        } finally {
          bar.stop()
          await store.close()
        }
      }),
    )
}
