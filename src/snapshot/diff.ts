// `snapdir diff`: what changed from snapshot `from` to snapshot `to` of one store, and what a sync of
// `to` would move to a place holding `from`. A directory snapshot is one tree diff (tree-diff.ts). An
// image snapshot (the push of an OCI layout or image archive, whose revision lists expanded layers)
// is also compared image by image: manifest and config digests, the config's fields that changed, and
// layer by layer, each layer matched by its diff_id (the same diff_id is the same tree, unchanged),
// otherwise paired by position (the layer a rebuild replaced) and diffed as trees. The bundle tree's
// own diff (the layout's files, blobs by digest) comes too: it is what the image's bytes are.
import { printablePath } from '../format/tree-paths.js'
import { resolveStoredImages, type StoredImage } from '../oci/stored-image.js'
import type { Platform } from '../oci/platform.js'
import { listRevisions } from '../store/revisions.js'
import { readTree } from '../store/objects.js'
import type { Store } from '../store/store.js'
import { readTreeFile } from '../store/tree-file.js'
import { addCounts, ChunkCache, diffTrees, emptyCounts, type DiffCounts, type TreeDiff } from './tree-diff.js'
import { syncCost, type SyncCost } from './sync-cost.js'

export interface LayerSide {
  digest: string
  diffId: string
  tree: string
}

export interface LayerDiff {
  /** the layer's position in the second image (bottom 0), or the first's for a removed layer */
  index: number
  /** unchanged: the same diff_id in both; changed: a layer of the first replaced at this position */
  status: 'unchanged' | 'changed' | 'added' | 'removed'
  from: LayerSide | null
  to: LayerSide | null
  /** changed, added, removed: the layer trees' diff (an added layer against nothing is all A) */
  diff?: TreeDiff
}

export interface ImageDiff {
  /** the ref name (tag) it is matched by, or null when matched by position */
  ref: string | null
  manifest: [string | null, string | null]
  config: [string | null, string | null]
  /** top-level fields of the config, and those under its `config`, that differ (`config.Env`, `history`) */
  configFields: string[]
  layers: LayerDiff[]
}

export interface SnapshotDiff {
  from: string
  to: string
  /** the snapshots' own trees (for an image, the bundle: the layout's files) */
  tree: TreeDiff
  /** image snapshots: one per image, matched by ref name (else position); empty for directories */
  images: ImageDiff[]
  /** all paths reported, the bundle's and every layer's (each distinct layer pair once) */
  counts: DiffCounts
  sync: SyncCost
}

export interface DiffOptions {
  jobs?: number
  /** the image of a multi-platform index to compare (default: this machine's) */
  platform?: Platform
}

export async function diffSnapshots(store: Store, from: string, to: string, options: DiffOptions = {}): Promise<SnapshotDiff> {
  await store.open()
  const jobs = options.jobs ?? 16
  const chunks = new ChunkCache(store)
  // independent: the closures' store reads overlap the tree diff's
  const syncing = syncCost(store, from, to, { jobs })
  syncing.catch(() => {}) // awaited below; a failure of the tree diff first must not leave it unhandled
  const tree = await diffTrees(store, from, to, { jobs, chunks })
  const revisions = await listRevisions(store, () => {})
  const isImage = (id: string) => revisions.some((r) => r.id === id && r.image !== undefined)
  const images = isImage(from) && isImage(to) ? await diffImages(store, from, to, { jobs, chunks, ...(options.platform ? { platform: options.platform } : {}) }) : []
  const counts = emptyCounts()
  addCounts(counts, tree.counts)
  const seen = new Set<LayerDiff['diff']>()
  for (const l of images.flatMap((i) => i.layers)) {
    if (l.diff === undefined || seen.has(l.diff)) continue
    seen.add(l.diff)
    addCounts(counts, l.diff.counts)
  }
  const sync = await syncing
  return { from, to, tree, images, counts, sync }
}

async function diffImages(store: Store, from: string, to: string, options: { jobs: number; chunks: ChunkCache; platform?: Platform }): Promise<ImageDiff[]> {
  type Listed = Awaited<ReturnType<typeof resolveStoredImages>>[number]
  const [a, b] = (await Promise.all(
    [from, to].map(async (id) => resolveStoredImages(store, id, await readTree(store, id), options.platform)),
  )) as [Listed[], Listed[]]
  const pairs: Array<[Listed | null, Listed | null]> = []
  const used = new Set<number>()
  b.forEach((img, k) => {
    let at = img.ref !== null ? a.findIndex((x) => x.ref === img.ref) : -1
    if (at < 0 && !used.has(k) && k < a.length && (a[k]!.ref === null || img.ref === null || !b.some((y) => y.ref === a[k]!.ref))) at = k
    if (at >= 0 && !used.has(at)) {
      used.add(at)
      pairs.push([a[at]!, img])
    } else pairs.push([null, img])
  })
  a.forEach((img, k) => {
    if (!used.has(k)) pairs.push([img, null])
  })
  // a layer pair diffed once, however many images share it
  const diffs = new Map<string, Promise<TreeDiff>>()
  const layerDiff = (x: string | null, y: string | null): Promise<TreeDiff> => {
    const key = `${x} ${y}`
    let d = diffs.get(key)
    if (d === undefined) {
      d = diffTrees(store, x, y, { jobs: options.jobs, chunks: options.chunks })
      diffs.set(key, d)
    }
    return d
  }
  const out: ImageDiff[] = []
  for (const [x, y] of pairs) {
    const layers = pairLayers(x?.image.layers ?? [], y?.image.layers ?? [])
    for (const l of layers) if (l.status !== 'unchanged') l.diff = await layerDiff(l.from?.tree ?? null, l.to?.tree ?? null)
    out.push({
      ref: y?.ref ?? x?.ref ?? null,
      manifest: [x?.image.manifest ?? null, y?.image.manifest ?? null],
      config: [configDigest(x?.image), configDigest(y?.image)],
      configFields: x && y ? await configFields(store, x.image, y.image) : [],
      layers,
    })
  }
  return out
}

/** Layers matched by diff_id; a layer of either side left over is paired with the other's at its position. */
function pairLayers(a: StoredImage['layers'], b: StoredImage['layers']): LayerDiff[] {
  const side = (l: StoredImage['layers'][number]): LayerSide => ({ digest: l.digest, diffId: l.diffId, tree: l.tree })
  const inA = new Set(a.map((l) => l.diffId))
  const inB = new Set(b.map((l) => l.diffId))
  const out: LayerDiff[] = []
  const paired = new Set<number>()
  b.forEach((l, k) => {
    if (inA.has(l.diffId)) {
      out.push({ index: k, status: 'unchanged', from: side(a.find((x) => x.diffId === l.diffId)!), to: side(l) })
      paired.add(a.findIndex((x) => x.diffId === l.diffId))
    } else if (k < a.length && !inB.has(a[k]!.diffId) && !paired.has(k)) {
      out.push({ index: k, status: 'changed', from: side(a[k]!), to: side(l) })
      paired.add(k)
    } else out.push({ index: k, status: 'added', from: null, to: side(l) })
  })
  a.forEach((l, k) => {
    if (!paired.has(k) && !inB.has(l.diffId)) out.push({ index: k, status: 'removed', from: side(l), to: null })
  })
  return out
}

function configDigest(image: StoredImage | undefined): string | null {
  if (image === undefined) return null
  const name = printablePath(image.config.path)
  const m = /(?:^|\/)blobs\/([a-z0-9]+)\/([0-9a-f]+)$/.exec(name) ?? /^([0-9a-f]{64})\.json$/.exec(name)
  if (m === null) return name
  return m.length === 3 ? `${m[1]}:${m[2]}` : `sha256:${m[1]}`
}

/** The fields of the two configs that differ: top-level keys, and the keys of their `config` object. */
async function configFields(store: Store, a: StoredImage, b: StoredImage): Promise<string[]> {
  if (configDigest(a) === configDigest(b)) return []
  const read = async (i: StoredImage): Promise<Record<string, unknown>> => {
    try {
      const v = JSON.parse((await readTreeFile(store, i.config, 16 * 1024 * 1024)).toString('utf8')) as unknown
      return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {}
    } catch {
      return {} // a config the image resolution already read and checked; unreadable here only if damaged since
    }
  }
  const [x, y] = await Promise.all([read(a), read(b)])
  const differ = (p: Record<string, unknown>, q: Record<string, unknown>, prefix: string): string[] =>
    [...new Set([...Object.keys(p), ...Object.keys(q)])].sort().filter((k) => JSON.stringify(p[k]) !== JSON.stringify(q[k])).map((k) => prefix + k)
  const inner = (v: unknown): Record<string, unknown> => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {})
  return differ(x, y, '').flatMap((k) => (k === 'config' ? differ(inner(x.config), inner(y.config), 'config.') : [k]))
}
