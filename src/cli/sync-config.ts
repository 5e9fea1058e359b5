// `snapdir sync --config FILE`: many sources to many targets (docs/sync-config.md). stdout is the
// result (the plan with --dry-run, a summary, or the --json report); stderr is progress: the tags each
// source resolved to, one line per (image, target) as it finishes, and the total.
import { parsePlatform } from '../oci/platform.js'
import { SnapdirError } from '../util/errors.js'
import { formatBytes, integerOption } from './numbers.js'

export interface ConfigSyncOptions {
  config: string
  jobs?: string
  platform: string[]
  dryRun?: true
  json?: true
  s3Endpoint?: string
}

/** Images at once when neither --jobs nor the file's defaults.jobs says. */
const DEFAULT_JOBS = 4

export async function syncFromConfig(opts: ConfigSyncOptions): Promise<void> {
  const { loadSyncConfig } = await import('../sync/sync-config.js')
  const { planSync } = await import('../sync/sync-plan.js')
  const { runSync } = await import('../sync/sync-run.js')
  const { SyncEndpoints } = await import('../sync/sync-endpoints.js')
  const { copyImageAt } = await import('../snapshot/image-copy.js')
  const config = loadSyncConfig(opts.config)
  const platforms = opts.platform.length > 0 ? opts.platform.map((p) => parsePlatform(p)) : undefined
  const jobs = opts.jobs !== undefined ? integerOption('--jobs', opts.jobs, 1, 256) : (config.jobs ?? DEFAULT_JOBS)
  const dryRun = opts.dryRun === true
  const endpoints = new SyncEndpoints(config, opts.s3Endpoint === undefined ? {} : { s3Endpoint: opts.s3Endpoint })
  const log = (line: string) => process.stderr.write(`${line}\n`)
  try {
    const plan = await planSync(config, endpoints.lookup, {
      jobs,
      ...(platforms ? { platforms } : {}),
      onResolved: (entry, n) => log(`${entry}: ${n} image${n === 1 ? '' : 's'}`),
    })
    const width = String(plan.images.reduce((n, i) => n + i.targets.length, 0)).length
    const report = await runSync(plan, (job) => copyImageAt(job, endpoints), endpoints.lookup, {
      jobs,
      dryRun,
      onRow: (row, done, of) => {
        const n = `[${String(done).padStart(width)}/${of}]`
        const what = `${row.source} -> ${row.destination}`
        if (row.status === 'failed') log(`${n} failed ${what}: ${row.error}`)
        else if (row.status === 'planned') log(`${n} would copy ${what}${row.from !== row.source ? ` (from ${row.from})` : ''}`)
        else if (row.status === 'up-to-date') log(`${n} up to date ${what}`)
        else log(`${n} copied ${what}: ${row.blobs.copied} blobs (${formatBytes(row.bytes.copied)}), ${row.blobs.skipped} already there${row.from !== row.source ? `; from ${row.from}` : ''}`)
      },
    })
    const t = report.total
    const summary = dryRun
      ? `${t.images} images, ${t.copies} copies: ${t.copies - t.upToDate - t.failed} would copy, ${t.upToDate} up to date, ${t.failed} failed`
      : `${t.images} images, ${t.copies} copies: ${t.copied} copied (${t.blobs.copied} blobs, ${formatBytes(t.bytes.copied)}), ${t.upToDate} up to date, ${t.failed} failed`
    log(`total: ${summary}`)
    if (opts.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n')
    else if (dryRun) {
      // the plan: each source image with its digest, then its targets in the order they are copied
      for (const image of plan.images) {
        const extra = [...(image.at.kind === 'store' ? [] : [image.digest ?? 'unresolved']), ...(image.platforms ? [`platforms ${image.platforms.map((p) => [p.os, p.architecture, ...(p.variant ? [p.variant] : [])].join('/')).join(',')}`] : [])]
        process.stdout.write(`${[image.text, ...extra].join(' ')}\n`)
        for (const row of report.rows.filter((r) => r.source === image.text)) {
          const state = row.status === 'failed' ? `fails: ${row.error}` : row.status === 'up-to-date' ? 'up to date' : `copy from ${row.from === row.source ? 'the source' : row.from}`
          process.stdout.write(`  -> ${row.destination} ${state}\n`)
        }
      }
    } else process.stdout.write(`${summary}\n`)
    if (t.failed > 0) {
      const first = report.rows.find((r) => r.status === 'failed')!
      throw new SnapdirError('ERR_SYNC_INCOMPLETE', `${t.failed} of ${t.copies} copies failed (${config.file}); the first: ${first.source} -> ${first.destination}: ${first.error}`)
    }
  } finally {
    await endpoints.close()
  }
}
