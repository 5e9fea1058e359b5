// An image inside a stored snapshot of an OCI layout, found without pulling it: index.json, the
// manifest and the config are read out of the bundle tree by the document walker (stored-blobs.ts
// checks each against its digest), and each layer's expanded tree is found by its diff_id under
// refs/layers/ (image-layers.ts). A stored Docker archive (docker-archive.ts) is read the same way
// from its manifest.json.
import type { Tree, TreeEntry } from '../format/tree.js'
import { readLayerRef } from '../store/layer-refs.js'
import { forEachLimit } from '../util/concurrency.js'
import type { ReadStore } from '../store/store.js'
import { findEntry } from '../store/tree-file.js'
import { blobPath } from './blob-reader.js'
import { isObject, quote } from './descriptor.js'
import { formatDigest } from './digest.js'
import { dockerDiffIds, parseDockerManifest, type DockerArchiveImage } from './docker-archive.js'
import { documentName, indexEntries, manifestParts, MAX_DOCUMENT_BYTES, readDiffIds, readDocument, readIndexJson, type ListedRef } from './document-walker.js'
import { DOCKER_MANIFEST_FILE, INDEX_FILE, LAYOUT_MARKER } from './image-layout.js'
import { layerCompression } from './media-types.js'
import { fail, imageError } from './layout-problem.js'
import { descriptorPlatform, formatPlatform, hostPlatform, platformMatches, type Platform } from './platform.js'
import { StoredBlobs } from './stored-blobs.js'

export interface ImageSelection {
  /** a ref name (org.opencontainers.image.ref.name or io.containerd.image.name) or a manifest digest */
  image?: string
  /** for a multi-platform image; this machine's platform when absent */
  platform?: Platform
}

export interface StoredImage {
  /** the manifest's digest (for a Docker archive, its config's path) */
  manifest: string
  /** the config blob's entry in the bundle tree */
  config: TreeEntry
  /** bottom first: each layer's digest, blob size (as the manifest gives it), diff_id, expanded tree and its file in the bundle */
  layers: Array<{ digest: string; size: number; diffId: string; tree: string; file: string }>
}

const REF_NAME_KEYS = ['org.opencontainers.image.ref.name', 'io.containerd.image.name']

/** Picks one image of the stored layout `bundle` (snapshot `id`), as `select` asks. */
export async function resolveStoredImage(store: ReadStore, id: string, bundle: Tree, select: ImageSelection): Promise<StoredImage> {
  try {
    const docker = storedDockerArchive(store, bundle)
    if (docker) return await docker.resolve(docker.pick(await docker.images(), select.image))
    const layout = storedLayout(store, bundle)
    return await layout.resolve(pickImage(await layout.top(), select.image), select.platform)
  } catch (err) {
    throw storedImageError(err, id)
  }
}

/**
 * The entry of index.json that `image` names (a ref name or a manifest digest), or its only one, as
 * it is listed: what is sent to a registry, whole (every platform of an index).
 */
export async function storedImageEntry(store: ReadStore, id: string, bundle: Tree, select: { image?: string; tag?: string } = {}): Promise<ListedRef> {
  try {
    if (storedDockerArchive(store, bundle)) {
      fail(`a Docker archive has no manifests of its own to send to a registry; pull it with --tar --format oci-archive and push that layout`)
    }
    const top = await storedLayout(store, bundle).top()
    // a layout of several images: the one listed under the tag it is sent to, unless one is named
    return pickImage(top, select.image ?? (top.length > 1 ? select.tag : undefined))
  } catch (err) {
    throw storedImageError(err, id)
  }
}

/**
 * Every image index.json lists (each distinct manifest or index once, in its order), with its ref
 * name if it has one; a multi-platform index gives its image for `platform` (default: this machine's).
 */
export async function resolveStoredImages(store: ReadStore, id: string, bundle: Tree, platform?: Platform): Promise<Array<{ ref: string | null; refs: string[]; image: StoredImage }>> {
  const out: Array<{ ref: string | null; refs: string[]; image: StoredImage }> = []
  try {
    const docker = storedDockerArchive(store, bundle)
    if (docker) {
      for (const image of await docker.images()) out.push({ ref: image.repoTags[0] ?? null, refs: image.repoTags, image: await docker.resolve(image) })
      return out
    }
    const layout = storedLayout(store, bundle)
    const top = await layout.top()
    if (top.length === 0) fail(`${INDEX_FILE} lists no images`)
    const seen = new Map<string, { refs: string[] }>()
    for (const entry of top) {
      const digest = formatDigest(entry.descriptor.digest)
      const names = refNames(entry.raw)
      const known = seen.get(digest)
      // an image listed once per tag: one image, with every name it was listed under
      if (known) {
        for (const n of names) if (!known.refs.includes(n)) known.refs.push(n)
        continue
      }
      const item = { ref: names[0] ?? null, refs: [...names], image: await layout.resolve(entry, platform) }
      seen.set(digest, item)
      out.push(item)
    }
    return out
  } catch (err) {
    throw storedImageError(err, id)
  }
}

/** Reads index.json, indexes, manifests and configs out of a stored layout, with the document walker. */
function storedLayout(store: ReadStore, bundle: Tree) {
  const blobs = new StoredBlobs(store, bundle)

  /** The entries of index.json; fails unless the snapshot is an image layout. */
  const top = async (): Promise<ListedRef[]> => {
    if (!findEntry(bundle, LAYOUT_MARKER) || findEntry(bundle, INDEX_FILE)?.type !== 'file') {
      return fail(`not an image: neither an OCI image layout (${LAYOUT_MARKER}, ${INDEX_FILE}) nor a Docker archive (${DOCKER_MANIFEST_FILE}) at its top`)
    }
    return indexEntries(await readIndexJson(blobs), INDEX_FILE)
  }

  /** From an entry of index.json down to the manifest (through indexes, by platform) and its layers. */
  const resolve = async (entry: ListedRef, platform: Platform | undefined): Promise<StoredImage> => {
    let chosen = entry
    for (let depth = 0; chosen.index; depth++) {
      if (depth > 8) return fail('image indexes nest too deep')
      const name = documentName(chosen.descriptor)
      const platforms = indexEntries(await readDocument(blobs, chosen), name)
      const want = platform ?? hostPlatform()
      const match = platforms.find((m) => {
        const p = descriptorPlatform(m.raw)
        return p !== null && platformMatches(p, want)
      })
      if (!match) {
        const have = platforms.map((m) => descriptorPlatform(m.raw)).filter((p): p is Platform => p !== null).map(formatPlatform)
        return fail(`${name} has no image for ${formatPlatform(want)} (it has ${have.join(', ') || 'none'}); pick one with --platform`)
      }
      chosen = match
    }
    const manifestName = documentName(chosen.descriptor)
    const parts = manifestParts(await readDocument(blobs, chosen), manifestName)
    const diffIds = (await readDiffIds(blobs, parts)) ?? fail(`${manifestName} is not an image: its config is a ${quote(parts.config.descriptor.mediaType)}`)
    for (const [i, { descriptor: d }] of parts.layers.entries()) {
      if (layerCompression(d.mediaType) === null) return fail(`layers[${i}] of ${manifestName} is a ${quote(d.mediaType)}, not a file system layer`)
    }
    // the layer refs at once: a mount waits on them, one store round trip each when read in turn
    const trees = await expandedTrees(store, diffIds.slice(0, parts.layers.length))
    const layers: StoredImage['layers'] = []
    for (const [i, { descriptor: d }] of parts.layers.entries()) {
      const digest = formatDigest(d.digest)
      const diffId = diffIds[i]!
      const tree = trees[i]
      if (tree === null || tree === undefined) {
        return fail(`layer ${digest} (layers[${i}] of ${manifestName}) has no expanded tree in ${store.url}; push the image again to expand it`)
      }
      layers.push({ digest, size: d.size, diffId, tree, file: blobPath(d.digest) })
    }
    return { manifest: formatDigest(chosen.descriptor.digest), config: blobs.blobEntry(parts.config), layers }
  }

  return { top, resolve }
}

/**
 * The images of a stored Docker archive, or null when the snapshot is not one (an OCI layout wins,
 * as on push). Its layers are uncompressed tars, so each one's digest is its diff_id.
 */
function storedDockerArchive(store: ReadStore, bundle: Tree) {
  if (findEntry(bundle, LAYOUT_MARKER) || findEntry(bundle, DOCKER_MANIFEST_FILE)?.type !== 'file') return null
  const blobs = new StoredBlobs(store, bundle)
  const read = (rel: string, maxBytes: number): Promise<Buffer> => blobs.readFile(rel, maxBytes)
  const images = async (): Promise<DockerArchiveImage[]> => parseDockerManifest(await read(DOCKER_MANIFEST_FILE, MAX_DOCUMENT_BYTES))
  const pick = (all: DockerArchiveImage[], image: string | undefined): DockerArchiveImage =>
    pickOne(all, image, 'archive', (m) => m.repoTags, (m, i) => m.repoTags[0] ?? `${DOCKER_MANIFEST_FILE}[${i}]`)
  const resolve = async (chosen: DockerArchiveImage): Promise<StoredImage> => {
    const diffIds = await dockerDiffIds(read, chosen)
    const trees = await expandedTrees(store, diffIds.slice(0, chosen.layers.length))
    const layers: StoredImage['layers'] = []
    for (const [i, file] of chosen.layers.entries()) {
      const diffId = diffIds[i]!
      const tree = trees[i] ?? null
      if (tree === null) return fail(`layer ${file} (Layers[${i}] of the image ${chosen.repoTags[0] ?? chosen.config}) has no expanded tree in ${store.url}; push the archive again to expand it`)
      layers.push({ digest: diffId, size: findEntry(bundle, file)?.size ?? 0, diffId, tree, file })
    }
    return { manifest: chosen.config, config: findEntry(bundle, chosen.config)!, layers }
  }
  return { images, pick, resolve }
}

/** How every problem with a stored image is reported: one line naming the snapshot. */
function storedImageError(err: unknown, id: string): unknown {
  return imageError(err, 'ERR_IMAGE', `snapshot ${id.slice(0, 16)}…`, { id })
}

/** Layer refs read at once (each one request). */
const REF_JOBS = 32

/** The expanded trees of the layers with these diff_ids (as a config gives them), each or null, in order. */
async function expandedTrees(store: ReadStore, diffIds: string[]): Promise<Array<string | null>> {
  const trees = new Array<string | null>(diffIds.length).fill(null)
  await forEachLimit(diffIds.keys(), REF_JOBS, async (i) => {
    trees[i] = (await readLayerRef(store, diffIds[i]!))?.tree ?? null
  })
  return trees
}

/** The entry of index.json that `image` names (a ref name or a manifest digest), or the only one. */
function pickImage(top: ListedRef[], image: string | undefined): ListedRef {
  if (top.length === 0) return fail(`${INDEX_FILE} lists no images`)
  const digest = (m: ListedRef): string => formatDigest(m.descriptor.digest)
  return pickOne(top, image, 'layout', (m) => [...refNames(m.raw), digest(m)], (m) => refNames(m.raw)[0] ?? digest(m))
}

/** The image of `all` that `image` names, or the only one when no name is given. */
function pickOne<T>(all: T[], image: string | undefined, holder: 'layout' | 'archive', names: (m: T) => string[], label: (m: T, i: number) => string): T {
  const describe = (): string => all.map(label).join(', ')
  if (image === undefined) {
    if (all.length === 1) return all[0]!
    return fail(`the ${holder} holds ${all.length} images (${describe()}); pick one with --ref`)
  }
  return all.find((m) => names(m).includes(image)) ?? fail(`the ${holder} has no image ${JSON.stringify(image)} (it has ${describe()})`)
}

/** The ref names an index entry's annotations give it, in the order of REF_NAME_KEYS. */
function refNames(raw: Record<string, unknown>): string[] {
  const a = isObject(raw.annotations) ? raw.annotations : {}
  return REF_NAME_KEYS.map((k) => a[k]).filter((v): v is string => typeof v === 'string')
}
