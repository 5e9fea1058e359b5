// An image inside a stored snapshot of an OCI layout, found without pulling it: index.json, the
// manifest and the config are read out of the bundle tree (each checked against its digest), and each
// layer's expanded tree is found by its diff_id under refs/layers/ (image-layers.ts).
import { createHash } from 'node:crypto'
import type { Tree, TreeEntry } from '../format/tree.js'
import { findEntry, readTreeFile } from '../snapshot/tree-file.js'
import type { Store } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import { isObject, parseDescriptor, quote, type Descriptor } from './descriptor.js'
import { formatDigest } from './digest.js'
import { blobPath } from './blob-file.js'
import { DOCKER_MANIFEST_FILE, parseDockerManifest } from './docker-archive.js'
import { readLayerRef } from './image-layers.js'
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
  /** the manifest's digest */
  manifest: string
  /** the config blob's entry in the bundle tree */
  config: TreeEntry
  /** bottom first: each layer's digest, diff_id and expanded tree */
  layers: Array<{ digest: string; diffId: string; tree: string }>
}

const REF_NAME_KEYS = ['org.opencontainers.image.ref.name', 'io.containerd.image.name']

/** Picks one image of the stored layout `bundle` (snapshot `id`), as `select` asks. */
export async function resolveStoredImage(store: Store, id: string, bundle: Tree, select: ImageSelection): Promise<StoredImage> {
  const fail = (why: string): never => {
    throw new SnapdirError('ERR_IMAGE', `snapshot ${id.slice(0, 16)}…: ${why}`, { data: { id } })
  }
  const indexEntry = findEntry(bundle, INDEX_FILE)
  if (!findEntry(bundle, LAYOUT_MARKER) || indexEntry?.type !== 'file') {
    const dockerManifest = findEntry(bundle, DOCKER_MANIFEST_FILE)
    if (dockerManifest?.type === 'file') return resolveDockerArchive(store, bundle, dockerManifest, select.image, fail)
    return fail(`not an image: neither an OCI image layout (${LAYOUT_MARKER}, ${INDEX_FILE}) nor a Docker archive (${DOCKER_MANIFEST_FILE}) at its top`)
  }
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
  const listed = (doc: Record<string, unknown>, what: string): Array<{ d: Descriptor; raw: Record<string, unknown> }> =>
    (Array.isArray(doc.manifests) ? doc.manifests : []).map((raw: unknown) => {
      const d = parseDescriptor(raw)
      if (typeof d === 'string') return fail(`an entry of ${what} ${d}`)
      return { d, raw: raw as Record<string, unknown> }
    })

  const top = listed(parseDoc(await readTreeFile(store, indexEntry, MAX_DOCUMENT_BYTES), INDEX_FILE), INDEX_FILE)
  let chosen = pickImage(top, select.image, fail)
  for (let depth = 0; INDEX_TYPES.has(chosen.d.mediaType); depth++) {
    if (depth > 8) return fail('image indexes nest too deep')
    const name = `image index ${formatDigest(chosen.d.digest)}`
    const platforms = listed(await readBlob(chosen.d, 'image index'), name)
    const want = select.platform ?? hostPlatform()
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

  const digests = layers.map((raw, i) => {
    const d = parseDescriptor(raw)
    if (typeof d === 'string') return fail(`layers[${i}] of ${manifestName} ${d}`)
    if (layerCompression(d.mediaType) === null) return fail(`layers[${i}] of ${manifestName} is a ${quote(d.mediaType)}, not a file system layer`)
    return formatDigest(d.digest)
  })
  return {
    manifest: formatDigest(chosen.d.digest),
    config: blobEntry(config, 'config'),
    layers: await expandedLayers(store, digests, diffIds, manifestName, fail),
  }
}

/** Each layer's expanded tree, found by the diff_id the config gives it. */
async function expandedLayers(store: Store, digests: string[], diffIds: unknown[], manifestName: string, fail: (why: string) => never): Promise<StoredImage['layers']> {
  const out: StoredImage['layers'] = []
  for (const [i, digest] of digests.entries()) {
    const diffId = diffIds[i]
    const ref = typeof diffId === 'string' && /^sha256:[0-9a-f]{64}$/.test(diffId) ? await readLayerRef(store, diffId) : null
    if (ref === null) {
      return fail(`layer ${digest} (layers[${i}] of ${manifestName}) has no expanded tree in ${store.url}; push the image again to expand it`)
    }
    out.push({ digest, diffId: diffId as string, tree: ref.tree })
  }
  return out
}

/** The image of a stored Docker archive that `image` names (a RepoTags entry), or its only one. */
async function resolveDockerArchive(store: Store, bundle: Tree, manifestEntry: TreeEntry, image: string | undefined, fail: (why: string) => never): Promise<StoredImage> {
  const images = parseDockerManifest(await readTreeFile(store, manifestEntry, MAX_DOCUMENT_BYTES), fail)
  const describe = (): string => images.map((m, i) => m.repoTags[0] ?? `${DOCKER_MANIFEST_FILE}[${i}]`).join(', ')
  let chosen = images[0]!
  if (image !== undefined) {
    chosen = images.find((m) => m.repoTags.includes(image)) ?? fail(`the archive has no image ${JSON.stringify(image)} (it has ${describe()})`)
  } else if (images.length > 1) {
    return fail(`the archive holds ${images.length} images (${describe()}); pick one with --image`)
  }
  const config = findEntry(bundle, chosen.config)
  if (config?.type !== 'file') return fail(`config ${chosen.config} is not in the archive`)
  const name = `the image ${chosen.repoTags[0] ?? chosen.config}`
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
  // an archive's layers are uncompressed tars: each one's digest is its diff_id
  const digests = diffIds.map((d) => String(d))
  return { manifest: chosen.config, config, layers: await expandedLayers(store, digests, diffIds, name, fail) }
}

/** The entry of index.json that `image` names, or the only one when no name is given. */
function pickImage<T extends { d: Descriptor; raw: Record<string, unknown> }>(top: T[], image: string | undefined, fail: (why: string) => never): T {
  const names = (m: T): string[] => {
    const a = isObject(m.raw.annotations) ? m.raw.annotations : {}
    return REF_NAME_KEYS.map((k) => a[k]).filter((v): v is string => typeof v === 'string')
  }
  const describe = (): string => top.map((m) => names(m)[0] ?? formatDigest(m.d.digest)).join(', ')
  if (top.length === 0) return fail(`${INDEX_FILE} lists no images`)
  if (image === undefined) {
    if (top.length === 1) return top[0]!
    return fail(`the layout holds ${top.length} images (${describe()}); pick one with --image`)
  }
  const found = top.find((m) => names(m).includes(image) || formatDigest(m.d.digest) === image)
  return found ?? fail(`the layout has no image ${JSON.stringify(image)} (it has ${describe()})`)
}
