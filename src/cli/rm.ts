import type { Command } from '@commander-js/extra-typings'
import { formatImageName, parseImageName } from '../format/image-name.js'
import { parseSnapshotId, resolveSnapshot } from '../store/resolve-snapshot.js'
import { UsageError } from '../util/errors.js'
import { ENDPOINT_HELP, STORE_HELP } from './store-options.js'
import { action } from './run-command.js'
import { repeatable } from './snapshot-options.js'
import { sweepStoreFromOptions } from './sweep-store.js'

export function registerRm(program: Command): void {
  program
    .command('rm')
    .description(
      "remove every revision of each snapshot ID from the store, the image names and tags that name it, and the snapshot's " +
        "small root object (the rest of what they used is freed by a later 'snapdir gc', once nothing else uses it). " +
        '--image NAME:TAG removes that tag, and its snapshot too when no other tag names it (as docker rmi). ' +
        'Prints one line per tag and revision removed. An ID with no revision, or a tag the store does not record: exit 2, nothing removed',
    )
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option('--image <name:tag>', 'an image name and tag to remove (repeat for several)', repeatable)
    .option('--json', 'print the removed tags and revisions as JSON lines')
    .argument('[id...]', 'snapshot IDs (as push printed them), or unique prefixes of at least 8 hex digits')
    .action(
      action(async (ids: string[], opts: { store: string; s3Endpoint?: string; image?: string[]; json?: true }) => {
        const refs = ids.map((id) => parseSnapshotId(id))
        const images = (opts.image ?? []).map((i) => parseImageName(i))
        if (refs.length + images.length === 0) throw new UsageError('give the snapshot IDs to remove, or --image NAME:TAG')
        const { removeRevisions } = await import('../store/remove-revisions.js')
        const store = sweepStoreFromOptions(opts)
        try {
          const resolved: string[] = []
          for (const ref of refs) resolved.push(await resolveSnapshot(store, ref))
          const { untagged, removed } = await removeRevisions(store, resolved, { images })
          for (const n of untagged) {
            process.stdout.write(opts.json ? JSON.stringify({ untagged: n }) + '\n' : `untagged ${formatImageName(n)} ${n.id}\n`)
          }
          for (const { revision: r } of removed) {
            process.stdout.write(opts.json ? JSON.stringify(r) + '\n' : `removed ${r.id} ${r.name} ${r.created_at}\n`)
          }
        } finally {
          await store.close()
        }
      }),
    )
}
