// An image inside a stored snapshot of an OCI layout, found without pulling it: index.json, the
// manifest and the config are read out of the bundle tree (each checked against its digest), and each
// layer's expanded tree is found by its diff_id under refs/layers/ (image-layers.ts). A stored Docker
// archive (docker-archive.ts) is read the same way from its manifest.json.
import { createHash } from 'node:crypto'
import type { Tree, TreeEntry } from '../format/tree.js'
import { findEntry, readTreeFile } from '../store/tree-file.js'
import type { Store } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import { isObject, parseDescriptor, quote, type Descriptor } from './descriptor.js'
import { formatDigest } from './digest.js'
import { blobPath } from './blob-file.js'
import { DOCKER_MANIFEST_FILE, parseDockerManifest, type DockerArchiveImage } from './docker-archive.js'
import { readLayerRef } from '../store/layer-refs.js'
import { INDEX_FILE, LAYOUT_MARKER, MAX_DOCUMENT_BYTES } from './image-layout.js'
import { layerCompression } from './layer-expand.js'
import { INDEX_TYPES, MANIFEST_TYPES } from './media-types.js'
import { descriptorPlatform, formatPlatform, hostPlatform, platformMatches, type Platform } from './platform.js'

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
  /** bottom first: each layer's digest, blob size (as the manifest gives it), diff_id and expanded tree */
  layers: Array<{ digest: string; size: number; diffId: string; tree: string }>
}

const REF_NAME_KEYS = ['org.opencontainers.image.ref.name', 'io.containerd.image.name']

/** Picks one image of the stored layout `bundle` (snapshot `id`), as `select` asks. */
export async function resolveStoredImage(store: Store, id: string, bundle: Tree, select: ImageSelection): Promise<StoredImage> {
  const docker = storedDockerArchive(store, id, bundle)
  if (docker) return docker.resolve(docker.pick(await docker.images(), select.image))
  const layout = storedLayout(store, id, bundle)
  return layout.resolve(pickImage(await layout.top(), select.image, layout.fail), select.platform)
}

/**
 * Every image index.json lists (each distinct manifest or index once, in its order), with its ref
 * name if it has one; a multi-platform index gives its image for `platform` (default: this machine's).
 */
export async function resolveStoredImages(store: Store, id: string, bundle: Tree, platform?: Platform): Promise<Array<{ ref: string | null; image: StoredImage }>> {
  const docker = storedDockerArchive(store, id, bundle)
  if (docker) {
    const out: Array<{ ref: string | null; image: StoredImage }> = []
    for (const image of await docker.images()) out.push({ ref: image.repoTags[0] ?? null, image: await docker.resolve(image) })
    return out
  }
  const layout = storedLayout(store, id, bundle)
  const top = await layout.top()
  if (top.length === 0) return layout.fail(`${INDEX_FILE} lists no images`)
  const out: Array<{ ref: string | null; image: StoredImage }> = []
  const seen = new Set<string>()
  for (const entry of top) {
    const digest = formatDigest(entry.d.digest)
    if (seen.has(digest)) continue
    seen.add(digest)
    out.push({ ref: refNames(entry.raw)[0] ?? null, image: await layout.resolve(entry, platform) })
  }
  return out
}

interface Listed {
  d: Descriptor
  raw: Record<string, unknown>
}

/** Reads index.json, indexes, manifests and configs out of a stored layout, each checked against its digest. */
function storedLayout(store: Store, id: string, bundle: Tree) {
  const fail = imageFailure(id)
  const parseDoc = (data: Buffer, what: string): Record<string, unknown> => {
    let doc: unknown
    try {
      doc = JSON.parse(data.toString('utf8'))
    } catch (err) {
      return fail(`${what} is not valid JSON: ${(err as Error).message}`)
    }
    if (!isObject(doc)) return fail(`${what} is not a JSON object`)
    return doc
  }
  const blobEntry = (d: Descriptor, what: string): TreeEntry => {
    const entry = findEntry(bundle, blobPath(d.digest))
    if (entry?.type !== 'file') return fail(`${what} ${formatDigest(d.digest)} is not in the layout`)
    return entry
  }
  const readBlob = async (d: Descriptor, what: string): Promise<Record<string, unknown>> => {
    const entry = blobEntry(d, what)
    const data = await readTreeFile(store, entry, MAX_DOCUMENT_BYTES)
    if (createHash(d.digest.algorithm).update(data).digest('hex') !== d.digest.encoded) return fail(`${what} ${formatDigest(d.digest)} does not match its digest`)
    return parseDoc(data, `${what} ${formatDigest(d.digest)}`)
  }
  const listed = (doc: Record<string, unknown>, what: string): Listed[] =>
    (Array.isArray(doc.manifests) ? doc.manifests : []).map((raw: unknown) => {
      const d = parseDescriptor(raw)
      if (typeof d === 'string') return fail(`an entry of ${what} ${d}`)
      return { d, raw: raw as Record<string, unknown> }
    })

  /** The entries of index.json; fails unless the snapshot is an image layout. */
  const top = async (): Promise<Listed[]> => {
    const indexEntry = findEntry(bundle, INDEX_FILE)
    if (!findEntry(bundle, LAYOUT_MARKER) || indexEntry?.type !== 'file') {
      return fail(`not an image: neither an OCI image layout (${LAYOUT_MARKER}, ${INDEX_FILE}) nor a Docker archive (${DOCKER_MANIFEST_FILE}) at its top`)
    }
    return listed(parseDoc(await readTreeFile(store, indexEntry, MAX_DOCUMENT_BYTES), INDEX_FILE), INDEX_FILE)
  }

  /** From an entry of index.json down to the manifest (through indexes, by platform) and its layers. */
  const resolve = async (entry: Listed, platform: Platform | undefined): Promise<StoredImage> => {
    let chosen = entry
    for (let depth = 0; INDEX_TYPES.has(chosen.d.mediaType); depth++) {
      if (depth > 8) return fail('image indexes nest too deep')
      const name = `image index ${formatDigest(chosen.d.digest)}`
      const platforms = listed(await readBlob(chosen.d, 'image index'), name)
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
    if (!MANIFEST_TYPES.has(chosen.d.mediaType)) return fail(`${formatDigest(chosen.d.digest)} is a ${quote(chosen.d.mediaType)}, not an image manifest`)
    const manifestName = `manifest ${formatDigest(chosen.d.digest)}`
    const manifest = await readBlob(chosen.d, 'manifest')
    const config = parseDescriptor(manifest.config)
    if (typeof config === 'string') return fail(`the config of ${manifestName} ${config}`)
    const configDoc = await readBlob(config, 'config')
    const rootfs = configDoc.rootfs
    const diffIds = isObject(rootfs) && Array.isArray(rootfs.diff_ids) ? (rootfs.diff_ids as unknown[]) : []
    const layers = Array.isArray(manifest.layers) ? (manifest.layers as unknown[]) : []
    if (diffIds.length !== layers.length) return fail(`the config of ${manifestName} lists ${diffIds.length} diff_ids for ${layers.length} layers`)

    const out: StoredImage['layers'] = []
    for (const [i, raw] of layers.entries()) {
      const d = parseDescriptor(raw)
      if (typeof d === 'string') return fail(`layers[${i}] of ${manifestName} ${d}`)
      const digest = formatDigest(d.digest)
      if (layerCompression(d.mediaType) === null) return fail(`layers[${i}] of ${manifestName} is a ${quote(d.mediaType)}, not a file system layer`)
      const diffId = diffIds[i]
      const tree = await expandedTree(store, diffId)
      if (tree === null) {
        return fail(`layer ${digest} (layers[${i}] of ${manifestName}) has no expanded tree in ${store.url}; push the image again to expand it`)
      }
      out.push({ digest, size: d.size, diffId: diffId as string, tree })
    }
    return { manifest: formatDigest(chosen.d.digest), config: blobEntry(config, 'config'), layers: out }
  }

  return { fail, top, resolve }
}

/**
 * The images of a stored Docker archive, or null when the snapshot is not one (an OCI layout wins,
 * as on push). Its layers are uncompressed tars, so each one's digest is its diff_id.
 */
function storedDockerArchive(store: Store, id: string, bundle: Tree) {
  const manifestEntry = findEntry(bundle, DOCKER_MANIFEST_FILE)
  if (findEntry(bundle, LAYOUT_MARKER) || manifestEntry?.type !== 'file') return null
  const fail = imageFailure(id)
  const images = async (): Promise<DockerArchiveImage[]> => parseDockerManifest(await readTreeFile(store, manifestEntry, MAX_DOCUMENT_BYTES), fail)
  const pick = (all: DockerArchiveImage[], image: string | undefined): DockerArchiveImage => {
    const describe = (): string => all.map((m, i) => m.repoTags[0] ?? `${DOCKER_MANIFEST_FILE}[${i}]`).join(', ')
    if (image !== undefined) return all.find((m) => m.repoTags.includes(image)) ?? fail(`the archive has no image ${JSON.stringify(image)} (it has ${describe()})`)
    if (all.length > 1) return fail(`the archive holds ${all.length} images (${describe()}); pick one with --image`)
    return all[0]!
  }
  const resolve = async (chosen: DockerArchiveImage): Promise<StoredImage> => {
    const config = findEntry(bundle, chosen.config)
    if (config?.type !== 'file') return fail(`config ${chosen.config} is not in the archive`)
    let doc: unknown
    try {
      doc = JSON.parse((await readTreeFile(store, config, MAX_DOCUMENT_BYTES)).toString('utf8'))
    } catch (err) {
      if (err instanceof SnapdirError) throw err
      return fail(`config ${chosen.config} is not valid JSON`)
    }
    const rootfs = isObject(doc) ? doc.rootfs : undefined
    const diffIds = isObject(rootfs) && Array.isArray(rootfs.diff_ids) ? (rootfs.diff_ids as unknown[]) : []
    if (diffIds.length !== chosen.layers.length) return fail(`config ${chosen.config} lists ${diffIds.length} diff_ids for ${chosen.layers.length} layers`)
    const layers: StoredImage['layers'] = []
    for (const [i, file] of chosen.layers.entries()) {
      const diffId = diffIds[i]
      const tree = await expandedTree(store, diffId)
      if (tree === null) return fail(`layer ${file} (Layers[${i}] of the image ${chosen.repoTags[0] ?? chosen.config}) has no expanded tree in ${store.url}; push the archive again to expand it`)
      layers.push({ digest: diffId as string, size: findEntry(bundle, file)?.size ?? 0, diffId: diffId as string, tree })
    }
    return { manifest: chosen.config, config, layers }
  }
  return { images, pick, resolve }
}

/** How every problem with a stored image is reported: one line naming the snapshot. */
function imageFailure(id: string): (why: string) => never {
  return (why) => {
    throw new SnapdirError('ERR_IMAGE', `snapshot ${id.slice(0, 16)}…: ${why}`, { data: { id } })
  }
}

/** The expanded tree of the layer with this diff_id (as a config gives it, unchecked), or null. */
async function expandedTree(store: Store, diffId: unknown): Promise<string | null> {
  if (typeof diffId !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(diffId)) return null
  return (await readLayerRef(store, diffId))?.tree ?? null
}

/** The entry of index.json that `image` names, or the only one when no name is given. */
function pickImage<T extends { d: Descriptor; raw: Record<string, unknown> }>(top: T[], image: string | undefined, fail: (why: string) => never): T {
  const names = (m: T): string[] => refNames(m.raw)
  const describe = (): string => top.map((m) => names(m)[0] ?? formatDigest(m.d.digest)).join(', ')
  if (top.length === 0) return fail(`${INDEX_FILE} lists no images`)
  if (image === undefined) {
    if (top.length === 1) return top[0]!
    return fail(`the layout holds ${top.length} images (${describe()}); pick one with --image`)
  }
  const found = top.find((m) => names(m).includes(image) || formatDigest(m.d.digest) === image)
  return found ?? fail(`the layout has no image ${JSON.stringify(image)} (it has ${describe()})`)
}

/** The ref names an index entry's annotations give it, in the order of REF_NAME_KEYS. */
function refNames(raw: Record<string, unknown>): string[] {
  const a = isObject(raw.annotations) ? raw.annotations : {}
  return REF_NAME_KEYS.map((k) => a[k]).filter((v): v is string => typeof v === 'string')
}
