import path from 'node:path'
import { loadObjectCodec } from '../format/object.js'
import type { ExpandedImageLayers } from '../oci/image-layers.js'
import { openSource, type PushSource } from '../oci/image-source.js'
import type { Platform } from '../oci/platform.js'
import { commitSnapshot } from '../store/commit.js'
import { encodeTreeObject } from '../store/objects.js'
import { BackgroundFlush } from '../store/background-flush.js'
import { imageNameKey, type ImageTag } from '../store/image-names.js'
import type { LayerBlobStorage } from '../store/layer-refs.js'
import type { Revision } from '../store/revisions.js'
import { ensureStoreConfig } from '../store/store-config.js'
import { WriterLease } from '../store/write-lease.js'
import type { Store } from '../store/store.js'
import { buildSnapshot, type BuildStats, type BuiltSnapshot } from '../ingest/build-snapshot.js'
import { poolFor, type WorkerPool } from '../ingest/worker-pool.js'
import { phaseTimer } from '../util/phase-timer.js'

export interface PushResult {
  id: string
  revision: Revision
  stats: BuildStats
  /** for an image layout: its layers, expanded into the store or found there already */
  layers?: ExpandedImageLayers['stats']
  /** for an image layout: how each layer blob is stored, a recipe or raw (and why) */
  layerStorage?: Array<{ digest: string } & LayerBlobStorage>
  /** seconds spent in each phase, in order */
  phases: Record<string, number>
}

export interface PushOptions {
  /** the revision's name (default: the first image name given, else the directory or archive name) */
  name?: string
  /** image names and tags to point at the snapshot, written last (store/image-names.ts) */
  images?: ImageTag[]
  onScanned?: (totalBytes: number, entries: number) => void
  onBytes?: (bytes: number) => void
  /** an image layout's layers are expanded first: their total blob bytes, then each layer's as it is done */
  onLayersPlanned?: (totalBytes: number, layers: number) => void
  onLayerBytes?: (bytes: number) => void
  /** for an image: keep only these platforms of its multi-platform indexes (select-platforms.ts) */
  platforms?: Platform[]
  /** workers started by the caller, as early as it could (push closes them); default: a new pool */
  pool?: WorkerPool
  /** `source` opened by the caller (openSource; push removes it); `platforms` is then ignored */
  opened?: PushSource
}

/**
 * Snapshots a directory, or an archive of one (oci/image-source.ts: unpacked to a temporary directory
 * first), into a store. Order matters for crash safety: every chunk is written, then
 * flushed, before the tree that names them; the tree before the revision that names it. A push
 * killed at any point leaves only unreferenced objects, which the next push reuses.
 *
 * An OCI image layout is also expanded (oci/image-layers.ts): each of its layers becomes a tree of
 * its own, named by a ref under refs/layers/. The order is then: chunks (the layers' and the
 * bundle's), layer trees, layer refs, bundle tree, revision, with a flush between steps.
 */
export async function push(store: Store, source: string, options: PushOptions = {}): Promise<PushResult> {
  for (const n of options.images ?? []) imageNameKey(n) // a malformed name fails before any work
  // gc does not sweep from before the store is first looked at until the revision is written
  const lease = new WriterLease(store, `push of ${path.resolve(source)}`)
  try {
    return await pushLeased(store, source, options, lease)
  } finally {
    await lease.release()
  }
}

async function pushLeased(store: Store, source: string, options: PushOptions, lease: WriterLease): Promise<PushResult> {
  const { phases, phase } = phaseTimer()
  // workers start loading while the source is scanned
  const pool = options.pool ?? poolFor(store)
  let built: BuiltSnapshot | null = null
  let opened: PushSource | null = null
  let expanded: ExpandedImageLayers | null = null
  try {
    // an image is checked (and scanned whole) before anything is stored: one whose blobs do not match
    // their digests is refused; a plain directory is scanned while its files are cut (buildSnapshot)
    opened = options.opened ?? (await openSource(source, { ...(options.platforms ? { platforms: options.platforms } : {}), onPhase: phase }))
    const { dir, layers, scanned } = opened
    await store.open({ create: true })
    await lease.acquire()
    const params = await ensureStoreConfig(store)
    if (layers !== null) {
      // before the bundle: a layer that does not match its diff_id fails the push early
      options.onLayersPlanned?.(layers.reduce((a, l) => a + l.descriptor.size, 0), layers.length)
      const { expandImageLayers } = await import('../oci/image-layers.js')
      expanded = await expandImageLayers(store, dir, layers, { params, shownAs: opened.shownAs, ...(options.onLayerBytes ? { onLayer: options.onLayerBytes } : {}) })
      phase('layers')
      // a blob stored as a recipe is not cut: the bundle names its recipe instead of chunks
      const recipes = new Map<string, string>()
      for (const l of expanded.layers.values()) if ('recipe' in l.storage) recipes.set(l.file, l.storage.recipe)
      for (const f of scanned ?? []) {
        const recipe = f.entry.type === 'file' ? recipes.get(f.entry.path.toString('latin1')) : undefined
        if (recipe !== undefined) f.entry.recipe = recipe
      }
    }
    const background = new BackgroundFlush(store)
    try {
      built = await buildSnapshot(scanned ?? { dir }, {
        params,
        store,
        pool,
        onScanned: (total, entries) => {
          options.onScanned?.(total, entries)
          // zstd, which the tree object is compressed with, loads while the files are cut, not after
          setImmediate(loadObjectCodec)
        },
        ...(options.onBytes ? { onBytes: options.onBytes } : {}),
      })
    } finally {
      await background.stop()
    }
  } finally {
    await pool.close()
    await opened?.remove()
  }
  phase(opened.layers === null ? 'scan+chunks' : 'chunks')
  const { stats } = built
  // the tree (its entries encoded while the files were cut) is put together while the chunks it
  // names are flushed; it is written only after
  const flushing = store.flush()
  let encoded
  try {
    encoded = encodeTreeObject(built.tree)
  } finally {
    // the entries' bytes are in the parts now: not held while they are written
    built = null
    await flushing
  }
  phase('flush')
  const imageLayers = expanded === null ? null : (await import('../oci/image-layers.js')).commitLayers(expanded)
  const revision = await commitSnapshot(store, {
    tree: encoded,
    ...(imageLayers ? { layers: imageLayers } : {}),
    revision: { name: options.name ?? options.images?.[0]?.name ?? opened.name, size: stats.logicalBytes, source: path.resolve(source) },
    ...(options.images ? { images: options.images } : {}),
    // the layer trees and refs are one phase, as before
    onStep: (step) => {
      if (step !== 'layer-trees') phase(step)
    },
  })
  const id = revision.id
  const layerStorage = expanded ? [...expanded.layers].map(([digest, l]) => ({ digest, ...l.storage })) : null
  return { id, revision, stats, ...(expanded ? { layers: expanded.stats } : {}), ...(layerStorage ? { layerStorage } : {}), phases }
}
