// Runs a sync plan: `jobs` source images at once (tags of one image one after the other), each image's targets one after the other in the
// plan's order (the first from the source, the rest from a complete copy: sync-plan.ts). An image that
// fails does not stop the others; the report says what happened to each (source, target) pair.
import type { Platform } from '../oci/platform.js'
import { SnapdirError } from '../util/errors.js'
import { feedFor, mapLimit, type ImageAt, type Plan, type PlannedImage, type PlannedTarget, type RegistryLookup } from './sync-plan.js'

/** One image copied from one place to another: the single-image copy the registry and store code provide. */
export interface CopyJob {
  from: ImageAt
  to: ImageAt
  /** the image as the sync config named it (a store records its name and tag) */
  origin: ImageAt
  /** null: every platform */
  platforms: Platform[] | null
  /** the manifest digest (or snapshot ID) `from` is expected to hold, when known */
  digest: string | null
  /** the manifest digest the target holds once the copy is done, when the plan can tell (PlannedImage.expected) */
  expected?: string | null
  /**
   * A registry target: what its reference named when the runner checked it just before the copy
   * (null: nothing), so the copy need not ask again; absent when it was not asked.
   */
  targetDigest?: string | null
  signal?: AbortSignal
  /** bytes sent as they go, for progress */
  onBytes?: (n: number) => void
}

export interface CopyResult {
  /** the manifest digest at the target, or the snapshot ID in a store */
  digest: string
  /** where the copy now is, for later copies to read from (a store: with its snapshot ID) */
  at: ImageAt
  blobs: { copied: number; skipped: number }
  bytes: { copied: number; skipped: number }
  /** the target held the image already and nothing was written (default: nothing was copied) */
  alreadyComplete?: boolean
}

export type CopyImage = (job: CopyJob) => Promise<CopyResult>

export type RowStatus = 'copied' | 'up-to-date' | 'failed' | 'planned'

/** One (source image, target) pair of the report. */
export interface ReportRow {
  entries: string[]
  source: string
  destination: string
  /** what the copy read: the source, or a target already complete */
  from: string
  /** at the source: manifest digest or snapshot ID */
  digest: string | null
  platforms: string[] | null
  status: RowStatus
  /** at the target after the copy */
  targetDigest?: string
  blobs: { copied: number; skipped: number }
  bytes: { copied: number; skipped: number }
  error?: string
}

export interface SyncReport {
  dryRun: boolean
  rows: ReportRow[]
  total: { images: number; copies: number; copied: number; upToDate: number; failed: number; blobs: { copied: number; skipped: number }; bytes: { copied: number; skipped: number } }
}

export interface RunOptions {
  jobs: number
  dryRun: boolean
  signal?: AbortSignal
  /** one line per (image, target) as it finishes, and the running totals */
  onRow?: (row: ReportRow, done: number, of: number) => void
  onBytes?: (n: number) => void
}

/**
 * Copies what the plan says. A registry target whose manifest already has the digest the copy would
 * give it (PlannedImage.expected) is up to date after that one request, and is not copied; anything
 * else goes to `copy`, which skips what the target has.
 */
export async function runSync(plan: Plan, copy: CopyImage, lookup: RegistryLookup, options: RunOptions): Promise<SyncReport> {
  const rows: ReportRow[] = []
  // the report in the plan's order, whatever order the copies finish in
  const order = new Map<ReportRow, number>()
  const of = plan.images.reduce((n, i) => n + i.targets.length, 0)
  let position = 0
  const emit = (row: ReportRow): void => {
    rows.push(row)
    options.onRow?.(row, rows.length, of)
  }
  // each image's rows have their place in the report before any runs
  const firsts = new Map<PlannedImage, number>()
  for (const image of plan.images) {
    firsts.set(image, position)
    position += image.targets.length
  }
  // images of one digest in one repository (tags of one image) one after the other: the first copies
  // the blobs, the next find them at the targets, rather than both fetching them at once
  const groups = new Map<string, PlannedImage[]>()
  for (const [i, image] of plan.images.entries()) {
    const key = image.at.kind === 'registry' && image.digest !== null ? `${image.at.host}/${image.at.repository}@${image.digest}` : `#${i}`
    groups.set(key, [...(groups.get(key) ?? []), image])
  }
  const copyOne = async (image: PlannedImage): Promise<void> => {
    const first = firsts.get(image)!
    const done: PlannedTarget[] = []
    const source: PlannedTarget = { text: image.text, at: image.at }
    for (const [t, target] of image.targets.entries()) {
      const feed = feedFor(target, done, source)
      const from = feed.at
      const row: ReportRow = {
        entries: image.entries,
        source: image.text,
        destination: target.text,
        from: feed.text,
        digest: image.digest,
        platforms: image.platforms === null ? null : image.platforms.map((p) => [p.os, p.architecture, ...(p.variant ? [p.variant] : [])].join('/')),
        status: 'planned',
        blobs: { copied: 0, skipped: 0 },
        bytes: { copied: 0, skipped: 0 },
      }
      order.set(row, first + t)
      if (image.error !== undefined) {
        Object.assign(row, { from: image.text, status: 'failed', error: image.error })
        emit(row)
        continue
      }
      if (options.dryRun) {
        if ((await upToDate(image, target, lookup, options.signal)).there !== null) row.status = 'up-to-date'
        emit(row)
        // a dry run's later targets read from this one, as the run would (a store keeps the snapshot's ID)
        done.push(target.at.kind === 'store' && image.at.kind === 'store' ? { text: target.text, at: { ...target.at, ...(image.at.id !== undefined ? { id: image.at.id } : {}) } } : target)
        continue
      }
      try {
        const { there, names } = await upToDate(image, target, lookup, options.signal)
        if (there !== null) {
          row.status = 'up-to-date'
          row.targetDigest = there.kind === 'store' ? there.id! : image.expected!
          done.push({ text: target.text, at: there })
        } else {
          const r = await copy({
            from,
            to: target.at,
            origin: image.at,
            platforms: image.platforms,
            digest: from === image.at ? image.digest : null,
            expected: image.expected,
            ...(names !== undefined ? { targetDigest: names } : {}),
            ...(options.signal ? { signal: options.signal } : {}),
            ...(options.onBytes ? { onBytes: options.onBytes } : {}),
          })
          row.status = (r.alreadyComplete ?? (r.blobs.copied === 0 && r.bytes.copied === 0)) ? 'up-to-date' : 'copied'
          row.targetDigest = r.digest
          row.blobs = r.blobs
          row.bytes = r.bytes
          done.push({ text: target.text, at: r.at })
        }
      } catch (err) {
        if (!(err instanceof SnapdirError)) throw err
        row.status = 'failed'
        row.error = err.message
      }
      emit(row)
    }
  }
  await mapLimit([...groups.values()], options.jobs, async (group) => {
    for (const image of group) await copyOne(image)
  })
  rows.sort((x, y) => order.get(x)! - order.get(y)!)
  const sum = (f: (r: ReportRow) => number) => rows.reduce((n, r) => n + f(r), 0)
  return {
    dryRun: options.dryRun,
    rows,
    total: {
      images: plan.images.length,
      copies: rows.length,
      copied: rows.filter((r) => r.status === 'copied').length,
      upToDate: rows.filter((r) => r.status === 'up-to-date').length,
      failed: rows.filter((r) => r.status === 'failed').length,
      blobs: { copied: sum((r) => r.blobs.copied), skipped: sum((r) => r.blobs.skipped) },
      bytes: { copied: sum((r) => r.bytes.copied), skipped: sum((r) => r.bytes.skipped) },
    },
  }
}

/**
 * Where a target already holds the image the copy would put there (`there`, else null): a registry
 * target whose manifest has the digest (one HEAD; `names` says what it had, for the copy to know); a
 * store target whose record of the image's name and tag says it took that digest (one small read, no
 * request to any registry), with the snapshot's ID.
 */
async function upToDate(image: PlannedImage, target: PlannedTarget, lookup: RegistryLookup, signal?: AbortSignal): Promise<{ there: ImageAt | null; names?: string | null }> {
  if (image.at.kind !== 'registry' || image.expected === null) return { there: null }
  // a target that cannot be asked is copied to, and that copy says what is wrong
  const unknown = (err: unknown): undefined => {
    if (err instanceof SnapdirError) return undefined
    throw err
  }
  if (target.at.kind === 'store') {
    if (image.at.tag === undefined || lookup.storedImage === undefined) return { there: null }
    const record = await lookup.storedImage(target.at.url, `${image.at.host}/${image.at.repository}`, image.at.tag).catch(unknown)
    return { there: record !== undefined && record !== null && record.digest === image.expected ? { ...target.at, id: record.id } : null }
  }
  const resolved = await lookup.resolve(target.at, false, signal).catch(unknown)
  if (resolved === undefined) return { there: null }
  return { there: resolved !== null && resolved.digest === image.expected ? target.at : null, names: resolved?.digest ?? null }
}
