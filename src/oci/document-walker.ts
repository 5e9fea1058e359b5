// The one walk through an OCI image's documents (image-spec image-layout.md, image-index.md,
// manifest.md): index.json -> image indexes and manifests -> configs and layers, over a BlobReader
// (a layout on disk or a pushed layout in a store). Every document is bounded in size, checked
// against its descriptor, parsed and checked for its role here, and every descriptor is parsed here,
// so the layout check, the layer listing, platform selection and stored-image resolution read an image
// by the same rules and word its problems the same way (LayoutProblem, named by its `what`).
import { blobKey, type BlobReader, type BlobRef } from './blob-reader.js'
import { isObject, parseDescriptor, quote, type Descriptor } from './descriptor.js'
import { formatDigest } from './digest.js'
import { configDiffIds } from './image-config.js'
import { INDEX_FILE, LAYOUT_MARKER } from './image-layout.js'
import { LayoutProblem, parseJson } from './layout-problem.js'
import { CONFIG_TYPES, IMAGE_CONFIG_TYPES, INDEX_TYPES, LAYER_TYPES, MANIFEST_TYPES, OCI_INDEX } from './media-types.js'

/** Manifests, indexes and configs are small; a bound keeps a hostile "manifest" from filling memory. */
export const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

/** An entry of an index's manifests list: an image index or an image manifest. */
export interface ListedRef extends BlobRef {
  /** an image index rather than an image manifest */
  index: boolean
  /** the entry as written, with its platform and annotations */
  raw: Record<string, unknown>
}

/** What an image manifest names. */
export interface ManifestParts {
  config: BlobRef
  layers: BlobRef[]
}

/** How messages name a document of its own: "image index sha256:…" or "manifest sha256:…". */
export function documentName(d: Descriptor): string {
  return `${INDEX_TYPES.has(d.mediaType) ? 'image index' : 'manifest'} ${formatDigest(d.digest)}`
}

/** Checks `oci-layout` and returns the parsed `index.json`. */
export async function readIndexJson(blobs: BlobReader): Promise<Record<string, unknown>> {
  const marker = parseJson(await blobs.readFile(LAYOUT_MARKER, MAX_DOCUMENT_BYTES), LAYOUT_MARKER)
  const version = isObject(marker) ? marker.imageLayoutVersion : undefined
  if (typeof version !== 'string') throw new LayoutProblem(`${LAYOUT_MARKER} has no imageLayoutVersion`)
  // 1.0.0 is the only version there is; a later 1.x keeps its layout by semver
  if (!/^1\.\d+\.\d+$/.test(version)) throw new LayoutProblem(`${LAYOUT_MARKER} has imageLayoutVersion ${quote(version)}; snapdir reads 1.x`)

  const index = parseJson(await blobs.readFile(INDEX_FILE, MAX_DOCUMENT_BYTES), INDEX_FILE)
  if (!isObject(index)) throw new LayoutProblem(`${INDEX_FILE} is not a JSON object`)
  if (index.schemaVersion !== 2) throw new LayoutProblem(`${INDEX_FILE} has schemaVersion ${quote(index.schemaVersion)}, not 2`)
  if (index.mediaType !== undefined && index.mediaType !== OCI_INDEX) {
    throw new LayoutProblem(`${INDEX_FILE} has mediaType ${quote(index.mediaType)}, not ${OCI_INDEX}`)
  }
  return index
}

/** The manifests an index (or index.json, by `name`) lists, each an image index or an image manifest. */
export function indexEntries(index: Record<string, unknown>, name: string): ListedRef[] {
  if (!Array.isArray(index.manifests)) throw new LayoutProblem(`${name} has no manifests list`)
  return index.manifests.map((value: unknown, i) => {
    const descriptor = descriptorAt(value, `manifests[${i}] of ${name}`)
    const isIndex = INDEX_TYPES.has(descriptor.mediaType)
    const what = `${isIndex ? 'image index' : 'manifest'} ${formatDigest(descriptor.digest)} listed in ${name}`
    if (!isIndex && !MANIFEST_TYPES.has(descriptor.mediaType)) {
      throw new LayoutProblem(`${what} has media type ${quote(descriptor.mediaType)}, which is not a known image index or manifest media type`)
    }
    return { descriptor, what, index: isIndex, raw: value as Record<string, unknown> }
  })
}

/** How a walk reads manifests. */
export interface WalkOptions {
  /**
   * An artifact (image-spec v1.1: a manifest with an artifactType or a subject, as signatures and
   * SBOMs are) may have a config and layers of any media type; they are blobs to copy, not a file
   * system. Only a copy between registries reads them so.
   */
  artifacts?: boolean
}

/** The config and layers of an image manifest (`name` as documentName gives it). */
export function manifestParts(manifest: Record<string, unknown>, name: string, options: WalkOptions = {}): ManifestParts {
  const artifact = options.artifacts === true && (manifest.artifactType !== undefined || manifest.subject !== undefined)
  const configDescriptor = descriptorAt(manifest.config, `config of ${name}`)
  const config = { descriptor: configDescriptor, what: `config ${formatDigest(configDescriptor.digest)} of ${name}` }
  if (!artifact && !CONFIG_TYPES.has(configDescriptor.mediaType)) {
    throw new LayoutProblem(`${config.what} has media type ${quote(configDescriptor.mediaType)}, which is not a known config media type`)
  }
  if (!Array.isArray(manifest.layers)) throw new LayoutProblem(`${name} has no layers list`)
  const layers = manifest.layers.map((value: unknown, i) => {
    const descriptor = descriptorAt(value, `layers[${i}] of ${name}`)
    const what = `layer ${formatDigest(descriptor.digest)} of ${name}`
    if (!artifact && !LAYER_TYPES.has(descriptor.mediaType)) {
      throw new LayoutProblem(`${what} has media type ${quote(descriptor.mediaType)}, which is not a known layer media type`)
    }
    return { descriptor, what }
  })
  return { config, layers }
}

/** Reads, checks and parses an image index or manifest. */
export async function readDocument(blobs: BlobReader, ref: BlobRef): Promise<Record<string, unknown>> {
  const { descriptor, what } = ref
  const document = await readJson(blobs, ref)
  if (document.schemaVersion !== 2) throw new LayoutProblem(`${what} has schemaVersion ${quote(document.schemaVersion)}, not 2`)
  // image-spec: a document's own mediaType, when set, must be the one it is referenced as; a
  // mismatch would have tools read the same bytes as different things
  if (document.mediaType !== undefined && document.mediaType !== descriptor.mediaType) {
    throw new LayoutProblem(`${what} says it is ${quote(document.mediaType)} but is referenced as ${quote(descriptor.mediaType)}`)
  }
  return document
}

/**
 * The diff_ids of a manifest's layers, read from its config; null when the config is not an image's
 * (an artifact's), which gives its layers none.
 */
export async function readDiffIds(blobs: BlobReader, parts: ManifestParts): Promise<string[] | null> {
  if (!IMAGE_CONFIG_TYPES.has(parts.config.descriptor.mediaType)) return null
  const diffIds = configDiffIds(await readJson(blobs, parts.config), parts.layers.length)
  if (typeof diffIds === 'string') throw new LayoutProblem(`${parts.config.what} ${diffIds}`)
  return diffIds
}

export interface LayoutVisitor {
  /** an image index reached, with its entries (which the walk reads next) */
  index?(ref: ListedRef, entries: ListedRef[]): void | Promise<void>
  /** an image manifest reached, with what it names (which the walk leaves to the visitor) */
  manifest?(ref: ListedRef, parts: ManifestParts): void | Promise<void>
}

/**
 * Reads every index and manifest reachable from index.json (or from the entries `from`: one image of
 * a layout, or a manifest a registry gave), each distinct blob once, breadth first (a queue rather
 * than recursion, so nesting depth costs no stack), and hands each to `visitor`.
 */
export async function walkLayout(blobs: BlobReader, visitor: LayoutVisitor, from?: readonly ListedRef[], options: WalkOptions = {}): Promise<void> {
  const seen = new Set<string>()
  const pending = from ? [...from] : indexEntries(await readIndexJson(blobs), INDEX_FILE)
  for (let next = pending.shift(); next; next = pending.shift()) {
    const key = blobKey(next.descriptor)
    if (seen.has(key)) continue
    const document = await readDocument(blobs, next)
    seen.add(key)
    const name = documentName(next.descriptor)
    if (next.index) {
      const entries = indexEntries(document, name)
      await visitor.index?.(next, entries)
      pending.push(...entries)
    } else {
      await visitor.manifest?.(next, manifestParts(document, name, options))
    }
  }
}

/** A JSON object blob, bounded in size and checked against its descriptor. */
async function readJson(blobs: BlobReader, ref: BlobRef): Promise<Record<string, unknown>> {
  const { descriptor, what } = ref
  if (descriptor.size > MAX_DOCUMENT_BYTES) throw new LayoutProblem(`${what} is ${descriptor.size} bytes; snapdir reads manifests of at most ${MAX_DOCUMENT_BYTES}`)
  const document = parseJson(await blobs.readBlob(ref), what)
  if (!isObject(document)) throw new LayoutProblem(`${what} is not a JSON object`)
  return document
}

function descriptorAt(value: unknown, where: string): Descriptor {
  const parsed = parseDescriptor(value)
  if (typeof parsed === 'string') throw new LayoutProblem(`${where}: the descriptor ${parsed}`)
  return parsed
}
