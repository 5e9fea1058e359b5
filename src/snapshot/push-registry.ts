// push of docker://HOST/REPO:TAG: an image streamed from a registry into the store, with no local
// copy. The snapshot is the one a push of the OCI layout `skopeo copy docker://… oci:DIR:TAG` writes
// would make (registry-image.ts: its index.json and oci-layout, every document byte for byte; files
// 0644 and directories 0755, owned by 0:0, time 0, as a layout normalised so would give): its layers
// expanded as they stream (oci/image-layers.ts with openBlob; from a local file when the registry has
// one, as serve has for what was uploaded to it) and kept as recipes, the bundle's tree
// built from the documents in memory (ingest/build-from-content.ts).
//
// What is fetched: the manifest the reference names, always; the other documents (indexes, manifests,
// configs) unless an earlier push of the same reference left them in the store; each layer blob once,
// unless the store holds that layer already (its ref lists the digest, with its recipe or why it is
// raw); a layer that cannot be a recipe (or a non-layer blob) once more, when the bundle is cut, as
// its bytes are needed and none were kept: from the earlier push's chunks when it has them, else from
// the registry again. Order as every push: chunks, flush, layer trees and refs, bundle tree, revision.
import { formatDigest } from '../oci/digest.js'
import { blobPath } from '../oci/blob-reader.js'
import { readDiffIds, readIndexJson, walkLayout } from '../oci/document-walker.js'
import type { ExpandedImageLayers } from '../oci/image-layers.js'
import { imageError } from '../oci/layout-problem.js'
import type { Descriptor } from '../oci/descriptor.js'
import type { Platform } from '../oci/platform.js'
import { StoredBlobs } from '../oci/stored-blobs.js'
import { buildFromContent, type ContentEntry } from '../ingest/build-from-content.js'
import type { TreeEntry, Tree } from '../format/tree.js'
import { treeSize } from '../format/tree.js'
import { commitSnapshot } from '../store/commit.js'
import type { ImageTag } from '../store/image-names.js'
import { encodeTreeObject, readTree } from '../store/objects.js'
import { listRevisions } from '../store/revisions.js'
import { ensureStoreConfig } from '../store/store-config.js'
import type { Store } from '../store/store.js'
import { findEntry, readTreeFile } from '../store/tree-file.js'
import { WriterLease } from '../store/write-lease.js'
import type { PushResult } from './push.js'
import { RegistryImage, type ImageRegistry } from './registry-image.js'
import { phaseTimer } from '../util/phase-timer.js'

export interface RegistryPushSource {
  registry: ImageRegistry
  repository: string
  /** what to ask for: a digest, else the tag */
  reference: string
  /** the tag index.json names the image by (none for a reference by digest alone) */
  tag?: string
  /** `docker://HOST/REPO:TAG`, as revisions and messages name it */
  shownAs: string
}

export interface RegistryPushOptions {
  name?: string
  /** image names and tags to point at the snapshot, written last (store/image-names.ts) */
  images?: ImageTag[]
  platforms?: Platform[]
  /**
   * take artifacts (image-spec v1.1: a manifest with an artifactType or a subject, as signatures and
   * SBOMs are), whose config and layers may be of any media type: kept as blobs, none expanded
   */
  artifacts?: boolean
  /** layers expanded at once (oci/image-layers.ts concurrency; default 1) */
  layerConcurrency?: number
  onLayersPlanned?: (totalBytes: number, layers: number) => void
  onLayerBytes?: (bytes: number) => void
  onScanned?: (totalBytes: number, entries: number) => void
  onBytes?: (bytes: number) => void
  signal?: AbortSignal
}

const DIR_MODE = 0o755
const FILE_MODE = 0o644

export async function pushFromRegistry(store: Store, source: RegistryPushSource, options: RegistryPushOptions = {}): Promise<PushResult> {
  const lease = new WriterLease(store, `push of ${source.shownAs}`)
  try {
    return await pushLeased(store, source, options, lease)
  } finally {
    await lease.release()
  }
}

async function pushLeased(store: Store, source: RegistryPushSource, options: RegistryPushOptions, lease: WriterLease): Promise<PushResult> {
  const { phases, phase } = phaseTimer()
  const { registry, repository, shownAs } = source
  const signal = options.signal
  const image = `image ${shownAs}`
  const problem = (err: unknown): unknown => imageError(err, 'ERR_SOURCE', image, { image: shownAs })
  await store.open({ create: true })
  await lease.acquire()
  const params = await ensureStoreConfig(store)
  const earlier = await earlierBundle(store, shownAs)
  const reader = new RegistryImage(registry, repository, earlier ? new StoredBlobs(store, earlier) : null, signal)

  // the documents: the top manifest, then (narrowed to --platform) everything it reaches
  const blobs = new Map<string, Descriptor>()
  const walk = { artifacts: options.artifacts === true }
  let layers
  try {
    await reader.open(source.reference, source.tag)
    if (options.platforms) {
      const { selectFrom } = await import('../oci/select-platforms.js')
      reader.select(await selectFrom(reader, await readIndexJson(reader), options.platforms, image, { image: shownAs }))
    }
    await walkLayout(reader, {
      index: (ref) => void blobs.set(formatDigest(ref.descriptor.digest), ref.descriptor),
      manifest: async (ref, parts) => {
        for (const d of [ref.descriptor, parts.config.descriptor, ...parts.layers.map((l) => l.descriptor)]) blobs.set(formatDigest(d.digest), d)
        // an image's config is a document too: read now, so the layers know their diff_ids
        await readDiffIds(reader, parts)
      },
    }, undefined, walk)
    const { imageLayers } = await import('../oci/layout-layers.js')
    // a foreign layer (urls) is left out, as skopeo leaves it out of a layout
    layers = await imageLayers(reader, async () => false, shownAs, walk)
  } catch (err) {
    throw problem(err)
  }
  phase('manifests')

  options.onLayersPlanned?.(layers.reduce((a, l) => a + l.descriptor.size, 0), layers.length)
  const { expandImageLayers, commitLayers } = await import('../oci/image-layers.js')
  const expanded: ExpandedImageLayers = await expandImageLayers(store, '', layers, {
    params,
    shownAs: image,
    ...(signal ? { signal } : {}),
    ...(options.onLayerBytes ? { onLayer: options.onLayerBytes } : {}),
    openBlob: (l) => registry.getBlob(repository, formatDigest(l.descriptor.digest), { size: l.descriptor.size, ...(signal ? { signal } : {}) }),
    ...(options.layerConcurrency !== undefined ? { concurrency: options.layerConcurrency } : {}),
    ...(registry.blobFile ? { blobFile: (l) => registry.blobFile!(repository, formatDigest(l.descriptor.digest)) } : {}),
  })
  phase('layers')

  // the bundle: the layout's files, the layers as their recipes, the rest from memory or fetched again
  const entries: ContentEntry[] = []
  const dirs = new Set(['', 'blobs'])
  const meta = (path: string, type: 'dir' | 'file', size = 0): TreeEntry => ({
    path: Buffer.from(path), type, mode: type === 'dir' ? DIR_MODE : FILE_MODE, uid: 0, gid: 0, mtimeSec: 0, mtimeNsec: 0,
    size, target: null, rdev: 0, xattrs: [], chunks: [],
  })
  for (const [name, bytes] of reader.topFiles()) entries.push({ entry: meta(name, 'file', bytes.length), content: bytes })
  for (const [digest, d] of blobs) {
    if (d.urls.length > 0 && !expanded.layers.has(digest)) continue // foreign: left out
    const rel = blobPath(d.digest)
    dirs.add(`blobs/${d.digest.algorithm}`)
    const entry = meta(rel, 'file', d.size)
    const document = reader.document(rel, digest)
    const layer = expanded.layers.get(digest)
    if (layer && 'recipe' in layer.storage) entry.recipe = layer.storage.recipe
    else if (document !== undefined) {
      entries.push({ entry, content: document })
      continue
    } else {
      const before = earlier ? findEntry(earlier, rel) : null
      const what = `blob ${digest} of ${shownAs}`
      if (before !== null && before.type === 'file' && before.size === d.size && before.recipe === undefined && before.size >= (params.packMax ?? 0)) {
        // cut on its own before: the same bytes give the same chunks
        entry.chunks = before.chunks
      } else if (before !== null && before.type === 'file' && before.size === d.size && before.recipe === undefined) {
        entries.push({ entry, shownAs: what, content: async () => (async function* () { yield await readTreeFile(store, before, d.size) })() })
        continue
      } else {
        entries.push({ entry, shownAs: what, content: () => registry.getBlob(repository, digest, { size: d.size, ...(signal ? { signal } : {}) }) })
        continue
      }
    }
    entries.push({ entry })
  }
  for (const d of dirs) entries.push({ entry: meta(d, 'dir') })
  options.onScanned?.(entries.reduce((a, e) => a + (e.entry.type === 'file' && e.entry.recipe === undefined ? e.entry.size : 0), 0), entries.length)
  const built = await buildFromContent(entries, { params, store, ...(signal ? { signal } : {}), ...(options.onBytes ? { onBytes: options.onBytes } : {}) })
  phase('chunks')
  await store.flush()
  phase('flush')
  const { tree, stats } = built
  const revision = await commitSnapshot(store, {
    tree: encodeTreeObject(tree),
    layers: commitLayers(expanded),
    revision: { name: options.name ?? shownAs.replace(/^docker:\/\//, ''), size: treeSize(tree), source: shownAs },
    ...(options.images ? { images: options.images } : {}),
    onStep: (step) => {
      if (step !== 'layer-trees') phase(step)
    },
  })
  const layerStorage = [...expanded.layers].map(([digest, l]) => ({ digest, ...l.storage }))
  return { id: revision.id, revision, stats, layers: expanded.stats, layerStorage, phases }
}

/** The bundle of the latest earlier push of this reference, if the store has one it can read. */
async function earlierBundle(store: Store, shownAs: string): Promise<Tree | null> {
  const revisions = (await listRevisions(store, () => {})).filter((r) => r.source === shownAs)
  const last = revisions.at(-1)
  if (last === undefined) return null
  try {
    return await readTree(store, last.id)
  } catch {
    return null
  }
}
