// Garbage collection: mark what the store's revisions need, sweep what nothing needs and is older
// than the grace period (docs/FORMAT.md, "Deleting: rm and gc").
//
// Mark: every revision and every image name or tag (image-names.ts) is a root; each snapshot's closure (closure.ts, the one walk verify and sync
// use) is its tree and parts, its layers' refs, trees and parts, its recipes and every chunk of all
// of them. A layer ref no revision lists is not a root: a layer stays as long as an image uses it, and
// an image removed with rm takes its layers with it at the next gc (once older than the grace).
//
// Sweep, with writers kept out (write-lease.ts) and the refs listed again (what pushes that ended
// while gc marked have added is marked too), deletes referrers before what they name, each step
// flushed before the next, so that at every moment an object present means everything it names is
// present (sync relies on that to skip what the destination has):
//
//   revisions (--keep-last) -> layer refs -> trees no dead recipe names -> recipes -> the other trees
//   -> tree parts -> chunks -> writers' temporary files and stale leases
//
// A live layer ref that names a recipe being deleted (the blob of a removed image, same diff_id) is
// rewritten without it first. An access trace (traces.ts) lives as long as what it is keyed by: a live
// snapshot, or for a layer view a live layer ref. Nothing depends on a trace (a mount treats a missing
// chunk of one as no trace), so dead traces go with the revisions, first.
import { SnapdirError } from '../util/errors.js'
import { listImageNames, type ImageNameRecord } from './image-names.js'
import { layerRefKey, LAYER_REFS, readLayerRef, type LayerRef } from './layer-refs.js'
import { snapshotClosure } from './closure.js'
import { isObjectDamage, objectDirectory, readRecipe, type ObjectKind } from './objects.js'
import { listRevisionRecords, type Revision, type RevisionRecord, type SkippedRevision } from './revisions.js'
import { checkStoreFormat } from './store-config.js'
import { TRACE_REFS } from './traces.js'
import type { ListedObject, SweepStore } from './store.js'
import { acquireGcLease, GC_LEASES, listLeases, WRITER_LEASES, type Lease } from './write-lease.js'

export type GcKind = 'revision' | 'trace' | 'layer-ref' | ObjectKind | 'temporary' | 'lease'
export const GC_KINDS: readonly GcKind[] = ['revision', 'trace', 'layer-ref', 'tree', 'recipe', 'tree-part', 'chunk', 'temporary', 'lease']

export interface GcCount {
  objects: number
  bytes: number
}

export interface GcReport {
  dryRun: boolean
  graceSeconds: number
  /** the revisions --keep-last removed (or would remove) */
  removedRevisions: Array<Pick<Revision, 'id' | 'name' | 'created_at'>>
  /** deleted (or, dry run, to delete), per kind */
  freed: Record<GcKind, GcCount>
  /** objects a revision needs */
  live: GcCount
  /** objects nothing needs, kept because they are younger than the grace period */
  young: GcCount
  /** layer refs rewritten without a recipe that was deleted */
  refsRewritten: number
  seconds: number
}

export interface GcOptions {
  /** objects nothing needs are deleted only when older than this (their mtime, S3's LastModified) */
  graceMs: number
  dryRun?: boolean
  /** keep only the newest N revisions of each name (and every revision of a snapshot a tag names); the others are removed first */
  keepLast?: number
  /** a phase begins: marking (total: snapshots), sweeping (total: objects to delete) */
  onPhase?: (phase: 'mark' | 'sweep', total: number) => void
  /** snapshots marked, objects deleted */
  onProgress?: (n: number) => void
  /** the sweep waits for this many pushes or syncs to end */
  onWait?: (writers: number) => void
  /** told about each malformed revision or tag record (gc then deletes nothing) */
  onSkip?: SkippedRevision
}

/** What the mark phase found live. */
class Marks {
  readonly snapshots = new Set<string>()
  readonly keys = new Set<string>()
  /** recipe IDs: a live ref may name only these */
  readonly recipes = new Set<string>()

  add(kind: ObjectKind, id: string): void {
    this.keys.add(`${objectDirectory(kind)}/${id.slice(0, 2)}/${id}`)
    if (kind === 'recipe') this.recipes.add(id)
  }
}

const noProgress = (): void => {}

export async function gc(store: SweepStore, options: GcOptions): Promise<GcReport> {
  const started = performance.now()
  const dryRun = options.dryRun === true
  await store.open()
  await checkStoreFormat(store)
  const cutoff = Date.now() - options.graceMs
  const progress = options.onProgress ?? noProgress
  // A revision or tag record that cannot be read is skipped by every listing, but gc cannot skip it: the
  // snapshot it names (unknown) may be one no other record keeps, and gc would sweep it. So gc deletes
  // nothing while such a record is there, and says which.
  const malformed: string[] = []
  const onSkip: SkippedRevision = (key, reason) => {
    malformed.push(`${key} (${reason})`)
    options.onSkip?.(key, reason)
  }
  const refuseMalformed = (): void => {
    if (malformed.length === 0) return
    const more = malformed.length > 1 ? ` and ${malformed.length - 1} more` : ''
    throw new SnapdirError(
      'ERR_SNAPSHOT_DAMAGED',
      `gc: a record under refs/ cannot be read, so the snapshot it names is unknown and nothing was deleted: ${malformed[0]}${more}; repair or delete it, then run gc again`,
      { data: { store: store.url, records: malformed } },
    )
  }

  const first = await listRevisionRecords(store, onSkip)
  const firstNames = await listImageNames(store, onSkip)
  refuseMalformed()
  // a tagged snapshot keeps its revisions: they list its layers, which would go without them
  const tagged = new Set(firstNames.map((n) => n.id))
  let doomed = options.keepLast === undefined ? [] : olderThanLast(first, options.keepLast).filter((r) => !tagged.has(r.revision.id))
  const doomedKeys = new Set(doomed.map((r) => r.key))
  const marks = new Marks()
  const liveRefs = new Set<string>()
  const markAll = async (records: RevisionRecord[], names: ImageNameRecord[]): Promise<void> => {
    const kept = records.filter((r) => !doomedKeys.has(r.key))
    const revisions = kept.map((r) => r.revision)
    for (const r of revisions) for (const l of r.image?.layers ?? []) liveRefs.add(layerRefKey(l.diffId))
    // roots: the snapshots revisions name and those tags name (one marking for both)
    const ids = [...new Set([...revisions.map((r) => r.id), ...names.map((n) => n.id)])].filter((id) => !marks.snapshots.has(id))
    options.onPhase?.('mark', ids.length)
    for (const id of ids) {
      await markSnapshot(store, id, revisions, marks)
      progress(1)
    }
  }
  await markAll(first, firstNames)

  let lease: Lease | null = null
  try {
    if (!dryRun) {
      lease = await acquireGcLease(store, options.onWait ? { onWait: options.onWait } : {})
      // pushes and syncs that ended while gc marked: their revisions are roots too
      // and tags written or moved meanwhile, with the revisions of what they name
      const seen = new Set(first.map((r) => r.key))
      const added = (await listRevisionRecords(store, onSkip)).filter((r) => !seen.has(r.key))
      const names = await listImageNames(store, onSkip)
      refuseMalformed()
      const retagged = names.filter((n) => !tagged.has(n.id))
      if (retagged.length > 0) {
        for (const n of retagged) tagged.add(n.id)
        doomed = doomed.filter((r) => !tagged.has(r.revision.id))
        doomedKeys.clear()
        for (const r of doomed) doomedKeys.add(r.key)
      }
      if (added.length > 0 || retagged.length > 0) await markAll([...first, ...added], names)
    }
    return await sweep(store, { ...options, dryRun, cutoff, marks, liveRefs, doomed, started, progress })
  } finally {
    await lease?.release()
  }
}

/** The records --keep-last N removes: all but the newest N of each name (records sort by time). */
function olderThanLast(records: RevisionRecord[], n: number): RevisionRecord[] {
  const byName = new Map<string, RevisionRecord[]>()
  for (const r of records) {
    const list = byName.get(r.revision.name) ?? []
    list.push(r)
    byName.set(r.revision.name, list)
  }
  const out: RevisionRecord[] = []
  for (const list of byName.values()) {
    list.sort((a, b) => (a.revision.created_at < b.revision.created_at ? -1 : a.revision.created_at > b.revision.created_at ? 1 : a.key < b.key ? -1 : 1))
    out.push(...list.slice(0, Math.max(0, list.length - n)))
  }
  return out
}

/**
 * Marks what snapshot `id` needs. A snapshot that cannot be read whole stops gc before anything is
 * deleted: what its missing parts name is unknown, and might be all that is left of it. Unless no
 * revision names it any more: an `rm` that ran while gc marked took its revisions and its root (rm
 * does not wait for a gc's mark phase, only for its sweep), and a snapshot no revision names is no root.
 */
async function markSnapshot(store: SweepStore, id: string, revisions: Revision[], marks: Marks): Promise<void> {
  marks.snapshots.add(id)
  const refuse = async (detail: string, cause?: unknown): Promise<SnapdirError | null> => {
    const now = await listRevisionRecords(store, () => {}) // warned once already
    const tags = await listImageNames(store, () => {})
    if (!now.some((r) => r.revision.id === id) && !tags.some((n) => n.id === id)) return null
    return new SnapdirError('ERR_SNAPSHOT_DAMAGED', `gc: snapshot ${id} in ${store.url} cannot be read whole, nothing was deleted (snapdir verify --id ${id} says more): ${detail}`, {
      cause,
      data: { id, store: store.url },
    })
  }
  let closure
  try {
    closure = await snapshotClosure(store, id, { files: false, partIds: true, revisions })
  } catch (err) {
    if (err instanceof SnapdirError && (err.code === 'ERR_OBJECT_MISSING' || err.code === 'ERR_OBJECT_CORRUPT' || err.code === 'ERR_SNAPSHOT_NOT_FOUND' || err.code === 'ERR_SNAPSHOT_DAMAGED' || err.code === 'ERR_TREE_MALFORMED')) {
      const refused = await refuse(err.message, err)
      if (refused === null) return
      throw refused
    }
    throw err
  }
  if (closure.damage.length > 0) {
    const refused = await refuse(closure.damage[0]!.detail)
    if (refused !== null) throw refused
    return
  }
  for (const t of closure.trees) {
    marks.add('tree', t.id)
    for (const p of t.partIds ?? []) marks.add('tree-part', p)
  }
  for (const r of closure.recipes) marks.add('recipe', r.id)
  for (const c of closure.chunks.keys()) marks.add('chunk', c)
}

interface SweepContext extends GcOptions {
  dryRun: boolean
  cutoff: number
  marks: Marks
  liveRefs: Set<string>
  doomed: RevisionRecord[]
  started: number
  progress: (n: number) => void
}

const PREFIX_KIND: Array<[string, GcKind]> = [
  [`${objectDirectory('chunk')}/`, 'chunk'],
  [`${objectDirectory('tree')}/`, 'tree'],
  [`${objectDirectory('tree-part')}/`, 'tree-part'],
  [`${objectDirectory('recipe')}/`, 'recipe'],
  [LAYER_REFS, 'layer-ref'],
  ['refs/revisions/', 'revision'],
  [TRACE_REFS, 'trace'],
  [WRITER_LEASES, 'lease'],
  [GC_LEASES, 'lease'],
]

/** A key's kind; null for what gc never deletes (config, anything it does not know). */
function kindOf(key: string): GcKind | null {
  if (key.slice(key.lastIndexOf('/') + 1).includes('.tmp-')) return 'temporary'
  for (const [prefix, kind] of PREFIX_KIND) if (key.startsWith(prefix)) return kind
  return null
}

const BATCH = 1000

async function sweep(store: SweepStore, cx: SweepContext): Promise<GcReport> {
  const freed = Object.fromEntries(GC_KINDS.map((k) => [k, { objects: 0, bytes: 0 }])) as Record<GcKind, GcCount>
  const live: GcCount = { objects: 0, bytes: 0 }
  const young: GcCount = { objects: 0, bytes: 0 }
  const dead = new Map<GcKind, ListedObject[]>(GC_KINDS.map((k) => [k, []]))
  const doomedKeys = new Set(cx.doomed.map((r) => r.key))
  // leases of writers and gcs that were killed (past the TTL: nobody renews them)
  const staleLeases = new Set([...(await listLeases(store, WRITER_LEASES)).stale, ...(await listLeases(store, GC_LEASES)).stale].map((o) => o.key))
  // one listing of the whole store (temporary files too): what is not marked, and old enough, goes
  for await (const o of store.listObjects('', { temporary: true })) {
    const kind = kindOf(o.key)
    if (kind === null) continue
    if (kind === 'revision') {
      if (doomedKeys.has(o.key)) dead.get(kind)!.push(o)
      continue
    }
    if (kind === 'lease') {
      if (staleLeases.has(o.key)) dead.get(kind)!.push(o)
      continue
    }
    const isLive =
      kind === 'layer-ref' ? cx.liveRefs.has(o.key) : kind === 'trace' ? traceIsLive(o.key, cx) : kind !== 'temporary' && cx.marks.keys.has(o.key)
    if (isLive) add(live, o)
    else if (o.modified >= cx.cutoff) add(young, o)
    else dead.get(kind)!.push(o)
  }
  for (const [kind, list] of dead) for (const o of list) add(freed[kind], o)

  // trees a dead recipe names go after the recipes (a recipe present means its layer tree is)
  const recipeTrees = new Set<string>()
  for (const o of dead.get('recipe')!) {
    try {
      const { recipe } = await readRecipe(store, idOf(o.key))
      recipeTrees.add(`${objectDirectory('tree')}/${recipe.tree.slice(0, 2)}/${recipe.tree}`)
    } catch (err) {
      if (!isObjectDamage(err) && !(err instanceof SnapdirError && err.code === 'ERR_TREE_MALFORMED')) throw err
      // a damaged recipe names nothing anyone can use
    }
  }
  const deadTrees = dead.get('tree')!
  const stages: ListedObject[][] = [
    [...dead.get('revision')!, ...dead.get('trace')!],
    dead.get('layer-ref')!,
    deadTrees.filter((o) => !recipeTrees.has(o.key)),
    dead.get('recipe')!,
    deadTrees.filter((o) => recipeTrees.has(o.key)),
    dead.get('tree-part')!,
    dead.get('chunk')!,
    [...dead.get('temporary')!, ...dead.get('lease')!],
  ]
  let refsRewritten = 0
  if (!cx.dryRun) {
    cx.onPhase?.('sweep', stages.reduce((a, s) => a + s.length, 0))
    for (const [i, stage] of stages.entries()) {
      // before the recipes go: live refs that name one are rewritten without it
      if (i === 3) refsRewritten = await dropDeadRecipes(store, cx.liveRefs, cx.marks.recipes)
      if (stage.length === 0) continue
      for (let at = 0; at < stage.length; at += BATCH) {
        const batch = stage.slice(at, at + BATCH)
        await store.deleteMany(batch.map((o) => o.key))
        cx.progress(batch.length)
      }
      await store.flush()
    }
  }
  return {
    dryRun: cx.dryRun,
    graceSeconds: cx.graceMs / 1000,
    removedRevisions: cx.doomed.map((r) => ({ id: r.revision.id, name: r.revision.name, created_at: r.revision.created_at })),
    freed,
    live,
    young,
    refsRewritten,
    seconds: Math.round(performance.now() - cx.started) / 1000,
  }
}

function add(count: GcCount, o: ListedObject): void {
  count.objects++
  count.bytes += o.size
}

/** refs/traces/<hex>/<view>: live while snapshot <hex> is marked, or (a layer view) layer ref <hex> is live. */
function traceIsLive(key: string, cx: SweepContext): boolean {
  const hex = key.slice(TRACE_REFS.length).split('/')[0]!
  return cx.marks.snapshots.has(hex) || cx.liveRefs.has(`${LAYER_REFS}${hex}`)
}

function idOf(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1)
}

/** Rewrites each live layer ref that names a recipe not marked live, without that blob; returns how many. */
async function dropDeadRecipes(store: SweepStore, liveRefs: Set<string>, liveRecipes: Set<string>): Promise<number> {
  let rewritten = 0
  for (const key of liveRefs) {
    const ref = await readLayerRef(store, `sha256:${idOf(key)}`).catch((err: unknown) => {
      if (isObjectDamage(err)) return null
      throw err
    })
    if (ref === null || ref.recipes === undefined) continue
    const gone = Object.entries(ref.recipes).filter(([, r]) => !liveRecipes.has(r)).map(([d]) => d)
    if (gone.length === 0) continue
    const recipes = Object.fromEntries(Object.entries(ref.recipes).filter(([d]) => !gone.includes(d)))
    const record: LayerRef = {
      ...ref,
      digests: ref.digests.filter((d) => !gone.includes(d)),
      ...(Object.keys(recipes).length > 0 ? { recipes } : {}),
    }
    if (Object.keys(recipes).length === 0) delete record.recipes
    await store.put(key, Buffer.from(JSON.stringify(record) + '\n'))
    rewritten++
  }
  if (rewritten > 0) await store.flush()
  return rewritten
}
