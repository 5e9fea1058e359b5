// The plan of a `sync --config` run: each source image (a registry repository at one tag or digest,
// or a snapshot of a store) once, with the targets it goes to, in the order of the copies that make
// them. A source image read by several entries (or listed twice) is one image with all their targets.
//
// Each source is read once: the first copy goes to one target (one of the source's own kind when
// there is one: a registry to a registry streams blob to blob, a store to a store copies objects), and
// every other target is then copied from a target already complete, not from the source again: a
// store target from a store if one is done (objects as they are), else from a registry; a registry
// target from a registry if one is done (on the same registry, blobs are mounted, not sent), else
// from a store. Each of those copies is an ordinary single-image copy (digests checked as it goes), so
// a target is only ever fed from a copy that was verified complete; if that copy failed, the next
// target falls back to another complete copy, or to the source. Fetching each blob once and teeing it
// to every target would also read the source once, but it ties the targets together (the slowest
// sets the pace, one failing aborts the shared read) and needs a copy routine of its own for each
// mix of targets; this composes the one copy there is.
import { formatPlatform, type Platform } from '../oci/platform.js'
import { Semaphore } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'
import { locationKey, type Location, type SyncConfig, type SyncEntry } from './sync-config.js'
import { selectTags } from './tag-filter.js'

/** One image at a place: a registry location with its tag or digest, or a store with a snapshot ID. */
export type ImageAt =
  | { kind: 'registry'; host: string; repository: string; tag?: string; digest?: string }
  | { kind: 'store'; url: string; id?: string }

/** What the planner asks of registries (the registry client answers). */
export interface RegistryLookup {
  /** every tag of a repository */
  listTags(image: ImageAt & { kind: 'registry' }, signal?: AbortSignal): Promise<string[]>
  /**
   * The manifest digest a tag or digest names (null when there is none): one HEAD; with `platforms`,
   * one GET instead, and for an index the platforms it lists.
   */
  resolve(image: ImageAt & { kind: 'registry' }, platforms: boolean, signal?: AbortSignal): Promise<Resolved | null>
  /**
   * The snapshot a store records under NAME:TAG, and the registry digest it was taken from when the
   * record says (a copy from a registry records it): null when there is no such record or store
   */
  storedImage?(url: string, name: string, tag: string): Promise<{ id: string; digest?: string } | null>
}

/** A manifest as the planner knows it: its digest, and for an index the manifest of each platform. */
export interface Resolved {
  digest: string
  /** of an index: its manifests' platforms and digests (null: a single manifest, or not asked) */
  manifests: Array<{ platform: Platform; digest: string }> | null
}

export interface PlannedTarget {
  /** the target as shown: docker://HOST/REPO:TAG or the store's URL */
  text: string
  at: ImageAt
}

export interface PlannedImage {
  /** the sync entries that ask for it (`sync[0]`) */
  entries: string[]
  text: string
  at: ImageAt
  /** the manifest digest (registry) or snapshot ID (store); null when it could not be resolved */
  digest: string | null
  /** platforms asked for (null: all) */
  platforms: Platform[] | null
  /** of an index: the platforms it lists (null: a single manifest, or a store) */
  available: Platform[] | null
  /**
   * The digest a registry target has once the image is there: the source's, or with a platform filter
   * the one platform's manifest (or the index, when the filter keeps all of it); null when the copy
   * writes a new index (several platforms of more), so only the copy can tell.
   */
  expected: string | null
  /** in the order the copies run */
  targets: PlannedTarget[]
  /** why this image cannot be copied (a tag that is not there, an unreachable registry); it fails alone */
  error?: string
}

export interface Plan {
  images: PlannedImage[]
}

/** `docker://HOST/REPO:TAG`, `docker://HOST/REPO@DIGEST`, or the store's URL with the ID. */
export function imageText(at: ImageAt): string {
  if (at.kind === 'store') return at.id === undefined ? at.url : `${at.url} ${at.id}`
  return `docker://${at.host}/${at.repository}${at.tag !== undefined ? `:${at.tag}` : ''}${at.digest !== undefined && at.tag === undefined ? `@${at.digest}` : ''}`
}

/** An image of the plan: where it is, and the platforms asked of it. */
function imageKey(at: ImageAt, platforms: Platform[] | null): string {
  return `${imageText(at)} ${platforms === null ? '*' : platforms.map(formatPlatform).sort().join(',')}`
}

function registryAt(l: Location & { kind: 'registry' }, tag?: string): ImageAt & { kind: 'registry' } {
  const t = tag ?? l.tag
  return { kind: 'registry', host: l.host, repository: l.repository, ...(t !== undefined ? { tag: t } : {}), ...(l.digest !== undefined && t === undefined ? { digest: l.digest } : {}) }
}

/** Where one source image lands at a target: the same tag in the target repository, or the target's own tag. */
function targetAt(target: Location, source: ImageAt): PlannedTarget {
  if (target.kind === 'store') return { text: target.text, at: { kind: 'store', url: target.url } }
  const tag = target.tag ?? (source.kind === 'registry' ? source.tag : undefined)
  const at: ImageAt = { kind: 'registry', host: target.host, repository: target.repository, ...(tag !== undefined ? { tag } : {}) }
  return { text: imageText(at), at }
}

export interface PlanOptions {
  /** --platform: replaces every entry's platforms */
  platforms?: Platform[]
  /** lookups at once */
  jobs: number
  signal?: AbortSignal
  /** called as each source repository's tags are resolved */
  onResolved?: (entry: string, images: number) => void
}

/**
 * Resolves every entry's tags (the tags the source repository lists, filtered) and each image's digest,
 * then merges images that more than one entry asks for, and orders each image's targets (see above).
 */
export async function planSync(config: SyncConfig, registry: RegistryLookup, options: PlanOptions): Promise<Plan> {
  const images = new Map<string, PlannedImage>()
  const add = (entry: SyncEntry, at: ImageAt, platforms: Platform[] | null, error?: string): PlannedImage => {
    const key = imageKey(at, platforms)
    let image = images.get(key)
    if (image === undefined) {
      // a store as the file names it, with the snapshot's ID
      const text = at.kind === 'store' ? `${entry.source.text} ${at.id}` : imageText(at)
      image = { entries: [], text, at, digest: at.kind === 'store' ? (at.id ?? null) : null, platforms, available: null, expected: null, targets: [], ...(error !== undefined ? { error } : {}) }
      images.set(key, image)
    }
    if (!image.entries.includes(entry.field)) image.entries.push(entry.field)
    for (const t of entry.targets) {
      const target = targetAt(t, at)
      if (!image.targets.some((x) => x.text === target.text)) image.targets.push(target)
    }
    return image
  }

  // a tag an entry names outright is resolved (its manifest's HEAD) while the repository's tags are
  // listed, not after: the listing only tells which named tags are missing, and a first copy would
  // wait for the two one after the other. As many at once as the lookups below.
  const early = new Map<string, Promise<Resolved | null>>()
  const lookups = new Semaphore(options.jobs)
  const resolveEarly = (at: ImageAt & { kind: 'registry' }, platforms: Platform[] | null): void => {
    const key = imageKey(at, platforms)
    if (early.has(key)) return
    const resolving = (async () => {
      await lookups.acquire(options.signal)
      try {
        return await registry.resolve(at, platforms !== null, options.signal)
      } finally {
        lookups.release()
      }
    })()
    resolving.catch(() => {}) // awaited below, unless the tag turns out not to be listed
    early.set(key, resolving)
  }

  // first the tags of each repository source (one listing per repository, however many entries name it)
  const listings = new Map<string, Promise<string[]>>()
  // images are gathered by add(), merged across entries
  await mapLimit(config.entries, options.jobs, async (entry) => {
    const platforms = options.platforms ?? entry.platforms
    const source = entry.source
    if (source.kind === 'store') return entry.ids.map((id) => add(entry, { kind: 'store', url: source.url, id }, platforms))
    if (source.tag !== undefined || source.digest !== undefined) return [add(entry, registryAt(source), platforms)]
    const repo = registryAt(source)
    const key = locationKey(source)
    let listing = listings.get(key)
    if (listing === undefined) {
      listing = registry.listTags(repo, options.signal)
      listings.set(key, listing)
    }
    if (entry.tags) for (const tag of selectTags(entry.tags.names, entry.tags)) resolveEarly(registryAt(source, tag), platforms)
    let tags: string[]
    try {
      tags = await listing
    } catch (err) {
      if (!(err instanceof SnapdirError)) throw err
      return [add(entry, repo, platforms, err.message)]
    }
    const chosen = selectTags(tags, entry.tags)
    const missing = entry.tags?.names.filter((n) => !tags.includes(n)) ?? []
    const out = chosen.map((tag) => add(entry, registryAt(source, tag), platforms))
    for (const tag of missing) out.push(add(entry, registryAt(source, tag), platforms, `${entry.field}: tag ${tag} is not in ${source.text} (it lists ${tags.length} tags)`))
    options.onResolved?.(entry.field, out.length)
    return out
  })
  // then each registry image's digest (and an index's platforms): one manifest request each
  await mapLimit([...images.values()], options.jobs, async (image) => {
    if (image.error !== undefined || image.at.kind !== 'registry') return
    try {
      const r = await (early.get(imageKey(image.at, image.platforms)) ?? registry.resolve(image.at, image.platforms !== null, options.signal))
      if (r === null) {
        image.error = `${image.text}: no such manifest`
        return
      }
      image.digest = r.digest
      image.available = r.manifests?.map((m) => m.platform) ?? null
      image.expected = r.digest
      const wanted = image.platforms
      if (wanted !== null && r.manifests !== null) {
        const kept = r.manifests.filter((m) => wanted.some((want) => matches(m.platform, want)))
        if (kept.length === 0) {
          image.error = `${image.text}: no image for ${wanted.map(formatPlatform).join(', ')} (it has ${r.manifests.map((m) => formatPlatform(m.platform)).join(', ') || 'none'})`
        }
        // one platform: its manifest alone; all of them: the index as it is; else a new index
        image.expected = kept.length === 1 ? kept[0]!.digest : kept.length === r.manifests.length ? r.digest : null
      }
    } catch (err) {
      if (!(err instanceof SnapdirError)) throw err
      image.error = err.message
    }
  })

  for (const image of images.values()) image.targets = orderTargets(image.at, image.targets)
  return { images: [...images.values()] }
}

function matches(have: Platform, want: Platform): boolean {
  return have.os === want.os && have.architecture === want.architecture && (want.variant === undefined || have.variant === want.variant)
}

/** The first copy to a target of the source's kind, where there is one; the rest as they were listed. */
export function orderTargets(source: ImageAt, targets: PlannedTarget[]): PlannedTarget[] {
  const first = targets.findIndex((t) => t.at.kind === source.kind)
  if (first <= 0) return targets
  return [targets[first]!, ...targets.slice(0, first), ...targets.slice(first + 1)]
}

/**
 * Where a target's copy reads from: a complete copy of the cheapest kind for it (a store from a
 * store, a registry from a registry of the same host, then any registry), else the source.
 */
export function feedFor(target: PlannedTarget, done: PlannedTarget[], source: PlannedTarget): PlannedTarget {
  const t = target.at
  const pick =
    t.kind === 'store'
      ? (done.find((d) => d.at.kind === 'store') ?? done.find((d) => d.at.kind === 'registry'))
      : (done.find((d) => d.at.kind === 'registry' && d.at.host === t.host) ?? done.find((d) => d.at.kind === 'registry') ?? done.find((d) => d.at.kind === 'store'))
  return pick ?? source
}

/** fn over items, `limit` at once, results in order; the first failure is rethrown after the rest settle. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length)
  let next = 0
  let failure: { error: unknown } | null = null
  const worker = async (): Promise<void> => {
    while (failure === null && next < items.length) {
      const i = next++
      try {
        out[i] = await fn(items[i]!, i)
      } catch (error) {
        failure ??= { error }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  if (failure !== null) throw (failure as { error: unknown }).error
  return out
}
