// One image copied from where it is to where it goes, for every pair of kinds: the one dispatch that
// `sync --from X --to Y` and `sync --config` (sync/sync-run.ts, given this as its copier) both use.
//
//   registry -> registry   blob to blob, streamed (sync/copy-image.ts); same registry: mounted
//   store    -> registry   the stored image sent, layers regenerated as they stream (sync/send-stored-image.ts)
//   registry -> store      a push from the registry, layers expanded as they stream (push-registry.ts)
//   store    -> store      objects as they are (sync/sync.ts)
//
// It lives here, above sync/, because the registry -> store copy is a push (snapshot/), and sync/ may
// not import upwards. Each kind's code is loaded when a copy of that kind runs: a registry to registry
// copy has no use for the store, the chunker and their native addons, which cost its start ~40 ms.
import type { RegistryClient } from '../registry/client.js'
import { imageRef } from '../registry/reference.js'
import type { ImageNameRecord } from '../store/image-names.js'
import type { Store } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import type { ImageCopySummary } from '../sync/copy-image.js'
import type { StoredImageSummary } from '../sync/send-stored-image.js'
import type { BlobOutcome } from '../sync/send-image.js'
import type { ImageAt } from '../sync/sync-plan.js'
import type { CopyJob, CopyResult } from '../sync/sync-run.js'
import type { SyncSummary } from '../sync/sync.js'
import type { PushResult } from './push.js'

export type Side = 'source' | 'destination'

/** Where a copy finds its stores and registry clients: opened once by the caller, shared, closed by it. */
export interface CopyPlaces {
  store(url: string, side: Side): Store
  registry(host: string, side: Side): RegistryClient
}

/** Progress of one copy (the CLI's bar): bytes for a registry target or a push, objects between stores. */
export interface CopyProgress {
  start(total: number, label: string): void
  add(n: number): void
}

export interface ImageCopyOptions {
  /** blobs (or objects) checked or sent at once */
  jobs?: number
  /** store -> store: the source's image names for the snapshot (default: sync lists them) */
  images?: ImageNameRecord[]
  progress?: CopyProgress
  /** the label of the bar (the command's name) */
  label?: string
}

/** What each kind of copy reports, for the CLI to print as the command it stands for does. */
export type ImageCopyOutcome =
  | { kind: 'send'; summary: ImageCopySummary | (StoredImageSummary & { referrers?: number }) }
  | { kind: 'push'; result: PushResult }
  | { kind: 'sync'; summary: SyncSummary }

/** Copies `job.from` to `job.to`; the result as the sync runner counts it, with what the copy itself said. */
export async function copyImageAt(job: CopyJob, places: CopyPlaces, options: ImageCopyOptions = {}): Promise<CopyResult & { outcome: ImageCopyOutcome }> {
  const { from, to } = job
  const platforms = job.platforms ?? undefined
  const progress = options.progress
  const label = options.label ?? 'sync'
  const jobs = options.jobs ?? 4
  const sendProgress = {
    onPlan: (_blobs: number, bytes: number) => progress?.start(bytes, label),
    onBlob: (_digest: string, size: number, outcome: BlobOutcome) => {
      if (outcome !== 'sent') progress?.add(size)
    },
    onBytes: (n: number) => {
      progress?.add(n)
      job.onBytes?.(n)
    },
  }

  if (to.kind === 'registry') {
    const dest = places.registry(to.host, 'destination')
    let summary: ImageCopySummary | StoredImageSummary
    let tag: string | undefined
    if (from.kind === 'registry') {
      const source = places.registry(from.host, 'source')
      // the destination's tag is the source's unless it names its own; the source read by the digest
      // the plan resolved, so what is copied is what was planned even if the tag moves meanwhile
      tag = to.tag ?? (to.digest === undefined ? from.tag : undefined)
      const sourceRef = job.digest ?? from.digest ?? from.tag ?? 'latest'
      const reference = tag ?? to.digest ?? from.digest ?? job.digest ?? 'latest'
      // what the run asked just now (the plan: the source's digest; the up-to-date check: the target's reference) is not asked again
      const known = job.digest !== null && sourceRef === job.digest && job.targetDigest !== undefined && reference === (to.digest ?? to.tag ?? 'latest') ? { source: job.digest, target: job.targetDigest } : undefined
      const { copyImage } = await import('../sync/copy-image.js')
      summary = await copyImage(source, { repository: from.repository, reference: sourceRef }, dest, { repository: to.repository, reference }, { jobs, ...(platforms ? { platforms } : {}), ...(known ? { known } : {}), ...sendProgress })
    } else {
      const store = places.store(from.url, 'source')
      tag = to.tag
      const id = snapshotOf(from)
      const { sendStoredImage } = await import('../sync/send-stored-image.js')
      summary = await sendStoredImage(store, id, dest, { repository: to.repository, ...(to.tag !== undefined ? { tag: to.tag } : {}), ...(to.digest !== undefined ? { digest: to.digest } : {}) }, { jobs, ...(platforms ? { platforms } : {}), ...sendProgress })
    }
    const at: ImageAt = { kind: 'registry', host: to.host, repository: to.repository, ...(tag !== undefined ? { tag } : { digest: summary.digest }) }
    return {
      digest: summary.digest,
      at,
      blobs: { copied: summary.blobs.sent, skipped: summary.blobs.skipped + summary.blobs.mounted },
      bytes: { copied: summary.bytes.sent, skipped: summary.bytes.skipped + summary.bytes.mounted },
      alreadyComplete: summary.alreadyComplete,
      outcome: { kind: 'send', summary },
    }
  }

  const store = places.store(to.url, 'destination')
  if (from.kind === 'store') {
    const id = snapshotOf(from)
    const { sync } = await import('../sync/sync.js')
    const s = await sync(places.store(from.url, 'source'), store, id, {
      jobs,
      ...(options.images ? { images: options.images } : {}),
      onPlan: (n) => progress?.start(n, label),
      onObject: () => progress?.add(1),
    })
    return {
      digest: id,
      at: { kind: 'store', url: to.url, id },
      blobs: { copied: s.objects.copied, skipped: s.objects.skipped },
      bytes: { copied: s.bytes.copied, skipped: s.bytes.skipped },
      alreadyComplete: s.alreadyComplete,
      outcome: { kind: 'sync', summary: s },
    }
  }

  // registry -> store: a push from the registry, named in the store as the image the sync was asked
  // for (its origin), whichever copy of it was read
  const client = places.registry(from.host, 'source')
  const tag = from.tag ?? (from.digest === undefined ? 'latest' : undefined)
  const origin = job.origin.kind === 'registry' ? job.origin : from
  const originTag = origin.tag ?? (origin.digest === undefined ? 'latest' : undefined)
  const { pushFromRegistry } = await import('./push-registry.js')
  const result = await pushFromRegistry(
    store,
    {
      registry: client,
      repository: from.repository,
      reference: job.digest ?? from.digest ?? tag!,
      ...(tag !== undefined ? { tag } : {}),
      // as a push of the same reference names it, so a later one finds this bundle to start from
      shownAs: imageRef(from.host, from.repository, tag, tag === undefined ? from.digest : undefined).toString(),
    },
    {
      ...(platforms ? { platforms } : {}),
      // with the digest it was taken at, so that a later sync of that tag sees the store up to date by this record alone
      ...(originTag !== undefined ? { images: [{ name: `${origin.host}/${origin.repository}`, tag: originTag, ...(job.expected ? { digest: job.expected } : {}) }] } : {}),
      onLayersPlanned: (total) => progress?.start(total, 'fetch layers'),
      onLayerBytes: (n) => {
        progress?.add(n)
        job.onBytes?.(n)
      },
      onScanned: (total) => progress?.start(total, label),
      onBytes: (n) => progress?.add(n),
      ...(job.signal ? { signal: job.signal } : {}),
    },
  )
  const layers = result.layers
  return {
    digest: result.id,
    at: { kind: 'store', url: to.url, id: result.id },
    blobs: { copied: layers?.expanded ?? 0, skipped: layers?.skipped ?? 0 },
    bytes: { copied: result.stats.bytesWritten + (layers?.bytesWritten ?? 0), skipped: 0 },
    outcome: { kind: 'push', result },
  }
}

function snapshotOf(image: ImageAt & { kind: 'store' }): string {
  if (image.id === undefined) throw new SnapdirError('ERR_INTERNAL', `internal error: a copy from ${image.url} without a snapshot ID`)
  return image.id
}

