import type { Command } from '@commander-js/extra-typings'
import type { GcKind, GcReport } from '../store/gc.js'
import { ENDPOINT_HELP, STORE_HELP } from './store-options.js'
import { durationOption, integerOption } from './numbers.js'
import { action } from './run-command.js'
import { progressBar } from './progress.js'
import { sweepStoreFromOptions } from './sweep-store.js'

const KIND_NAMES: Record<GcKind, string> = {
  revision: 'revisions',
  trace: 'access traces',
  'layer-ref': 'layer refs',
  tree: 'trees',
  recipe: 'recipes',
  'tree-part': 'tree parts',
  chunk: 'chunks',
  temporary: 'temporary files',
  lease: 'stale leases',
}

export function registerGc(program: Command): void {
  program
    .command('gc')
    .description(
      'delete what no revision needs: mark every snapshot the revisions name (image layers included; a layer no ' +
        'revision lists is not kept), then delete unmarked objects, layer refs, the access traces of snapshots and layers no longer ' +
        'kept, and writers\' leftover temporary files older than the grace period. Safe while pushes and syncs run: they wait while gc deletes, and gc ' +
        'waits for those under way. Prints objects and bytes freed per kind',
    )
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option('--grace <duration>', 'keep unreferenced objects younger than this (by mtime, S3 LastModified): 90s, 30m, 1h, 2d', '1h')
    .option('--keep-last <n>', 'first remove all but the newest N revisions of each name')
    .option('--dry-run', 'report what would be deleted, delete nothing')
    .option('--json', 'print the report as JSON')
    .action(
      action(async (opts: { store: string; s3Endpoint?: string; grace: string; keepLast?: string; dryRun?: true; json?: true }) => {
        const graceMs = durationOption('--grace', opts.grace)
        const keepLast = opts.keepLast === undefined ? undefined : integerOption('--keep-last', opts.keepLast, 1, Number.MAX_SAFE_INTEGER)
        const { gc } = await import('../store/gc.js')
        const store = sweepStoreFromOptions(opts)
        const bar = progressBar('items')
        try {
          const report = await gc(store, {
            graceMs,
            ...(opts.dryRun ? { dryRun: true } : {}),
            ...(keepLast !== undefined ? { keepLast } : {}),
            onPhase: (phase, total) => {
              bar.stop()
              bar.start(total, phase === 'mark' ? 'gc: mark snapshots' : 'gc: delete objects')
            },
            onProgress: (n) => bar.add(n),
            onWait: (writers) => {
              bar.stop()
              process.stderr.write(`snapdir: gc waits for ${writers} push(es) or sync(s) in progress to end\n`)
            },
          })
          bar.stop()
          process.stdout.write(opts.json ? JSON.stringify(report) + '\n' : textReport(report))
        } finally {
          bar.stop()
          await store.close()
        }
      }),
    )
}

function textReport(r: GcReport): string {
  const lines: string[] = []
  const verb = r.dryRun ? 'would free' : 'freed'
  for (const rev of r.removedRevisions) lines.push(`${r.dryRun ? 'would remove' : 'removed'} revision ${rev.id} ${rev.name} ${rev.created_at} (--keep-last)`)
  const kinds = Object.entries(r.freed) as Array<[GcKind, { objects: number; bytes: number }]>
  const width = Math.max(...kinds.map(([k]) => KIND_NAMES[k].length))
  let objects = 0
  let bytes = 0
  for (const [kind, c] of kinds) {
    objects += c.objects
    bytes += c.bytes
    lines.push(`${KIND_NAMES[kind].padEnd(width)}  ${String(c.objects).padStart(9)} objects  ${String(c.bytes).padStart(14)} bytes`)
  }
  lines.push(`${'total'.padEnd(width)}  ${String(objects).padStart(9)} objects  ${String(bytes).padStart(14)} bytes ${verb} in ${r.seconds} s`)
  lines.push(`in use: ${r.live.objects} objects, ${r.live.bytes} bytes; unused but younger than the grace (${r.graceSeconds} s): ${r.young.objects} objects, ${r.young.bytes} bytes`)
  if (r.refsRewritten > 0) lines.push(`layer refs rewritten without a deleted recipe: ${r.refsRewritten}`)
  return lines.join('\n') + '\n'
}
