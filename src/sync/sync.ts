import { describeClosureUsers } from '../store/chunk-users.js'
import { getChunk } from '../store/chunks.js'
import { snapshotClosure } from '../store/closure.js'
import { commitSnapshot, type CommitLayer } from '../store/commit.js'
import { formatImageName } from '../format/image-name.js'
import { hasImageName, listImageNames, writeImageName, type ImageNameRecord } from '../store/image-names.js'
import { isObjectDamage, objectKey } from '../store/objects.js'
import { warnOnStderr, type SkippedRecord } from '../store/ref-record.js'
import { checkStoreFormat, ensureStoreConfig, readStoreConfig } from '../store/store-config.js'
import type { Store } from '../store/store.js'
import { copyTraces, type TraceCopy } from '../store/traces.js'
import { WriterLease } from '../store/write-lease.js'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'

export interface SyncOptions {
  /** objects checked or copied at once */
  jobs?: number
  /** only count what would move; write nothing */
  dryRun?: boolean
  onPlan?: (objects: number) => void
  onObject?: () => void
  /**
   * the source's image names and tags that name the snapshot, to write at the destination last (as
   * the source has them: a tag there naming another snapshot moves); default: sync lists the source's
   */
  images?: ImageNameRecord[]
  /** told about each malformed trace at the source, which is not copied; by default a warning on stderr */
  onSkip?: SkippedRecord
}

export interface SyncSummary {
  id: string
  dryRun: boolean
  /** the destination already held the tree, so the snapshot was complete there */
  alreadyComplete: boolean
  objects: { checked: number; copied: number; skipped: number }
  bytes: { copied: number; skipped: number }
  /** the image names and tags written at the destination (NAME:TAG), or that a dry run would write */
  images: string[]
  /** the snapshot's access traces (refs/traces/<id>/*) copied (or that a dry run would copy), left as the destination had them, and malformed at the source */
  traces: TraceCopy
}

/**
 * Copies a snapshot from one store to another without staging it locally. Objects stream one by one
 * (at most `jobs` in memory), each re-hashed in transit and stored as the source had it (no
 * recompression); the tree and the revision are written only after every chunk is there, so a tree
 * at the destination proves the snapshot complete, and syncing a complete snapshot costs one request
 * (and one listing of the source's traces, one GET for each there). The snapshot's access traces are
 * copied last, after its image names, each only once the chunks it names are there.
 *
 * The snapshot of an OCI image layout brings its expanded layers along (the layers its revision
 * lists): their chunks with the bundle's, then the layer trees, then the layer refs (merged into the
 * destination's), then the bundle tree and the revision, each step flushed, as push orders them.
 */
export async function sync(from: Store, to: Store, id: string, options: SyncOptions = {}): Promise<SyncSummary> {
  // gc does not sweep the destination from before it is first looked at until the revision is written
  const lease = new WriterLease(to, `sync of ${id} from ${from.url}`)
  try {
    return await syncLeased(from, to, id, options, lease)
  } finally {
    await lease.release()
  }
}

async function syncLeased(from: Store, to: Store, id: string, options: SyncOptions, lease: WriterLease): Promise<SyncSummary> {
  const dryRun = options.dryRun ?? false
  const summary: SyncSummary = { id, dryRun, alreadyComplete: false, objects: { checked: 0, copied: 0, skipped: 0 }, bytes: { copied: 0, skipped: 0 }, images: [], traces: { copied: 0, skipped: 0, malformed: 0 } }
  await from.open()
  const traces = async (): Promise<TraceCopy> => copyTraces(from, to, id, { dryRun, onSkip: options.onSkip ?? warnOnStderr })
  const names = options.images ?? (await listImageNames(from)).filter((n) => n.id === id)
  // First, and alone: a tree at the destination proves the snapshot complete there, so a re-sync of
  // a complete snapshot costs this one request.
  const treeKey = objectKey('tree', id)
  const treeThere = await to.size(treeKey)
  if (treeThere !== null) {
    summary.alreadyComplete = true
    summary.objects.checked = 1
    summary.objects.skipped = 1
    summary.bytes.skipped = treeThere
    // names the destination lacks (or has naming another snapshot) are all that may be left to write
    const missing: ImageNameRecord[] = []
    for (const n of names) if (!(await hasImageName(to, n))) missing.push(n)
    summary.images = missing.map(formatImageName)
    if (missing.length > 0 && !dryRun) {
      await lease.acquire()
      // an rm that ran before the lease may have taken the snapshot: a name must not outlive it
      if (!(await to.has(treeKey))) return syncLeased(from, to, id, options, lease)
      for (const n of missing) await writeImageName(to, n)
      await to.flush()
    }
    // a trace recorded at the source since the snapshot was synced comes with the next sync
    summary.traces = await traces()
    return summary
  }
  await checkStoreFormat(from)
  const destinationMissing = (err: unknown): undefined => {
    // a dry run against a destination that does not exist yet: everything would move
    if (!(dryRun && err instanceof SnapdirError && err.code === 'ERR_STORE_NOT_FOUND')) throw err
    return undefined
  }
  await to.open({ create: !dryRun }).catch(destinationMissing)
  if (!dryRun) await lease.acquire()
  // a destination a newer snapdir wrote (config version > STORE_FORMAT) is refused before anything is copied into it
  await readStoreConfig(to).catch(destinationMissing)

  const destinationHas = async (tree: string): Promise<boolean> =>
    to.has(objectKey('tree', tree)).catch((err: unknown) => {
      if (err instanceof SnapdirError && err.code === 'ERR_STORE_NOT_FOUND') return false
      throw err
    })
  // a layer tree at the destination is complete, as a snapshot tree is: it is not read, nor its chunks listed
  const destinationHasRecipe = async (recipe: string): Promise<boolean> =>
    to.has(objectKey('recipe', recipe)).catch((err: unknown) => {
      if (err instanceof SnapdirError && err.code === 'ERR_STORE_NOT_FOUND') return false
      throw err
    })
  // likewise a recipe there: written after its framing chunks and its layer tree
  // and a tree part there: written after the chunks its entries name (an edit shares all but a few
  // parts with the tree before it, so it checks only the chunks of those few)
  const destinationHasPart = async (part: string): Promise<boolean> => {
    const there = await to.size(objectKey('tree-part', part)).catch((err: unknown) => {
      if (err instanceof SnapdirError && err.code === 'ERR_STORE_NOT_FOUND') return null
      throw err
    })
    summary.objects.checked++
    if (there === null) return false
    summary.objects.skipped++
    summary.bytes.skipped += there
    return true
  }
  const closure = await snapshotClosure(from, id, { keepTreeObjects: true, skipTree: destinationHas, skipRecipe: destinationHasRecipe, skipPart: destinationHasPart })
  for (const d of closure.damage) {
    // a layer ref the source lacks, or one naming another tree, is not copied; the snapshot still syncs
    if (d.object === 'ref' && d.problem !== 'corrupt') continue
    throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${d.detail} (the expanded layer ${d.layer.digest}); nothing naming it was written to ${to.url}`, {
      data: { key: d.key },
    })
  }
  const origin = closure.revisions.at(-1)
  const [own, ...layerTrees] = closure.trees
  const copied = layerTrees.filter((t) => t.state === 'read')
  const partCount = new Set([own!, ...copied].flatMap((t) => (t.parts ?? []).map((p) => p.id))).size
  const recipes = closure.recipes.filter((r) => r.state === 'read')
  options.onPlan?.(closure.chunks.size + partCount + 1 + copied.length + recipes.length)

  await forEachLimit(closure.chunks.values(), options.jobs ?? 16, async (chunk) => {
    const key = objectKey('chunk', chunk.id)
    summary.objects.checked++
    const there = await to.size(key)
    if (there !== null) {
      summary.objects.skipped++
      summary.bytes.skipped += there
      options.onObject?.()
      return
    }
    let stored: Buffer
    try {
      ;({ stored } = await getChunk(from, chunk.id)) // re-hashed in transit, copied as stored
    } catch (err) {
      if (isObjectDamage(err)) {
        throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${err.message}${describeClosureUsers(chunk.users)}; nothing naming it was written to ${to.url}`, {
          cause: err,
          data: { chunk: chunk.id },
        })
      }
      throw err
    }
    if (!dryRun) await to.put(key, stored)
    summary.objects.copied++
    summary.bytes.copied += stored.length
    options.onObject?.()
  })

  // the chunks durable before any part names them: a part at the destination proves its chunks are
  if (!dryRun && summary.objects.copied > 0) await to.flush()
  // format 2 trees' parts the destination lacks (the closure asked it of each, and left out those it
  // has), each re-hashed when read; before any root names them
  const parts = new Map([own!, ...copied].flatMap((t) => (t.parts ?? []).map((p) => [p.id, p.object] as const)))
  await forEachLimit(parts, options.jobs ?? 16, async ([partId, object]) => {
    if (!dryRun) await to.put(objectKey('tree-part', partId), object)
    summary.objects.copied++
    summary.bytes.copied += object.length
    options.onObject?.()
  })

  for (const tree of [own!, ...copied, ...recipes]) {
    summary.objects.checked++
    summary.objects.copied++
    summary.bytes.copied += tree.object!.length
  }
  summary.images = names.map(formatImageName)
  if (dryRun) {
    summary.traces = await traces()
    return summary
  }

  // the destination cuts future pushes as the source does, if it has no config of its own yet
  const params = await readStoreConfig(from)
  if (params) await ensureStoreConfig(to, params)
  await to.flush()
  const objects = new Map(copied.map((t) => [t.id, t.object!]))
  const listed = new Set(closure.layers.map((l) => l.tree))
  // roots only: their parts are copied above
  const recipeTrees = copied.filter((t) => !listed.has(t.id)).map((t) => ({ id: t.id, object: t.object! }))
  await commitSnapshot(to, {
    tree: { id, object: own!.object! }, // its parts are copied above
    ...(origin?.image || closure.layers.length > 0
      ? {
          layers: closure.layers.map((l): CommitLayer => {
            // each tree copied once, with the first layer naming it
            const object = objects.get(l.tree)
            objects.delete(l.tree)
            return {
              digest: l.digest,
              diffId: l.diffId,
              tree: object ? { id: l.tree, object } : l.tree,
              // the source's ref with the revision's digest in it, when it names this tree (a tree there
              // is complete, but a sync killed before its refs may have left the ref out)
              ref: l.ref !== null && l.ref.tree === l.tree
                ? { digests: [...new Set([...l.ref.digests, l.digest])].sort(), mediaType: l.ref.mediaType, ...(l.ref.recipes ? { recipes: l.ref.recipes } : {}), ...(l.ref.raw ? { raw: l.ref.raw } : {}) }
                : null,
              ...(l.recipe !== undefined ? { storage: { recipe: l.recipe } } : l.raw !== undefined ? { storage: { raw: l.raw } } : {}),
            }
          }),
        }
      : {}),
    recipes: recipes.map((r) => ({ id: r.id, object: r.object! })),
    recipeTrees,
    revision: { name: origin?.name ?? id.slice(0, 12), size: closure.size, source: origin?.source ?? from.url },
    images: names,
    onStep: (step) => {
      if (step === 'layer-trees') for (let i = 0; i < copied.length + recipes.length; i++) options.onObject?.()
    },
  })
  options.onObject?.()
  // last: the snapshot is complete here now, so every chunk a trace of it names is
  summary.traces = await traces()
  return summary
}
