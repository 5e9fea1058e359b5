// An image as a registry takes it (distribution-spec "Pushing"): every blob before the manifests, and
// each manifest after everything it names (an index after its manifests), so that a registry that
// checks references accepts each one, and a transfer cut short leaves no manifest naming a missing
// piece. Indexes and manifests go byte for byte as they were read, so their digests are the source's;
// blobs are streams that check themselves. The image is read by the document walker, from a stored
// layout or from a registry alike (a TransferSource), so both go by the same rules.
import { createHash } from 'node:crypto'
import { blobKey, type BlobReader, type BlobRef } from './blob-reader.js'
import type { Descriptor } from './descriptor.js'
import { formatDigest } from './digest.js'
import { documentName, indexEntries, readDocument, walkLayout, type ListedRef } from './document-walker.js'
import { fail } from './layout-problem.js'
import { isForeignLayer } from './media-types.js'
import { descriptorPlatform, formatPlatform, platformMatches, type Platform } from './platform.js'

/** Where an image is sent from: its documents whole (BlobReader), its other blobs as streams. */
export interface TransferSource extends BlobReader {
  /** the blob's bytes; the stream fails, at its end at the latest, unless they have its size and digest */
  blobContent(ref: BlobRef): AsyncIterable<Buffer>
}

export interface PlannedBlob {
  descriptor: Descriptor
  /** `algorithm:hex` */
  digest: string
  what: string
  content: () => AsyncIterable<Buffer>
}

export interface PlannedManifest {
  digest: string
  mediaType: string
  bytes: Buffer
  what: string
}

export interface TransferPlan {
  /** each distinct blob once, in the order the manifests name them (configs and layers) */
  blobs: PlannedBlob[]
  /** each image index and manifest once, everything a document names before it; the image itself last */
  manifests: PlannedManifest[]
  /** an index cut down to the platforms asked for: a document of snapdir's, so its digest is not the source's */
  rewritten: boolean
}

export interface TransferOptions {
  /**
   * For an image index: only these platforms. One platform sends that image's manifest alone (the
   * digest the source gives it); several send an index listing only them.
   */
  platforms?: readonly Platform[]
  /** read artifacts' manifests (signatures, SBOMs), whose blobs may be of any media type */
  artifacts?: boolean
}

/** What must be sent, and in what order, to copy the image `top` of `source`. */
export async function planTransfer(source: TransferSource, top: ListedRef, options: TransferOptions = {}): Promise<TransferPlan> {
  const documents = new Map<string, Buffer>()
  // the walk reads each document through this, so that what is sent is the bytes it checked
  const recording: BlobReader = {
    readFile: (name, maxBytes) => source.readFile(name, maxBytes),
    readBlob: async (ref) => {
      const data = await source.readBlob(ref)
      documents.set(blobKey(ref.descriptor), data)
      return data
    },
  }
  let start: ListedRef[] = [top]
  let cut: PlannedManifest | null = null
  const platforms = options.platforms ?? []
  if (top.index && platforms.length > 0) {
    const name = documentName(top.descriptor)
    const document = await readDocument(recording, top)
    const entries = indexEntries(document, name)
    const matches = (e: ListedRef, want: Platform): boolean => {
      const p = descriptorPlatform(e.raw)
      return p !== null && platformMatches(p, want)
    }
    for (const want of platforms) {
      if (!entries.some((e) => matches(e, want))) {
        const have = entries.map((e) => descriptorPlatform(e.raw)).filter((p): p is Platform => p !== null).map(formatPlatform)
        fail(`${name} has no image for ${formatPlatform(want)} (it has ${have.join(', ') || 'none'})`)
      }
    }
    // one platform: the first image for it, as a runtime picks; several: every image for any of them
    const kept = platforms.length === 1 ? [entries.find((e) => matches(e, platforms[0]!))!] : entries.filter((e) => platforms.some((want) => matches(e, want)))
    // every entry kept: the index as it is
    if (kept.length < entries.length) start = kept
    if (platforms.length > 1 && kept.length < entries.length) {
      // the index as it was, its list cut down to the platforms kept, in its order
      const bytes = Buffer.from(JSON.stringify({ ...document, manifests: kept.map((e) => e.raw) }))
      const digest = `${top.descriptor.digest.algorithm}:${createHash(top.descriptor.digest.algorithm).update(bytes).digest('hex')}`
      cut = { digest, mediaType: top.descriptor.mediaType, bytes, what: `image index ${digest} (${name} for ${platforms.map(formatPlatform).join(', ')})` }
    }
  }

  const children = new Map<string, ListedRef[]>()
  const blobs = new Map<string, PlannedBlob>()
  const addBlob = (ref: BlobRef): void => {
    const { descriptor } = ref
    // a foreign or non-distributable layer stays where its urls say (the registry is not sent it)
    if (isForeignLayer(descriptor.mediaType) || blobs.has(blobKey(descriptor))) return
    blobs.set(blobKey(descriptor), { descriptor, digest: formatDigest(descriptor.digest), what: ref.what, content: () => source.blobContent(ref) })
  }
  await walkLayout(
    recording,
    {
      index: (ref, entries) => void children.set(blobKey(ref.descriptor), entries),
      manifest: (_ref, parts) => {
        addBlob(parts.config)
        for (const layer of parts.layers) addBlob(layer)
      },
    },
    start,
    { artifacts: options.artifacts === true },
  )

  // depth first, each document after its children (the walk went breadth first, which can reach a
  // document before one that names it), with a stack rather than recursion
  const manifests: PlannedManifest[] = []
  const placed = new Set<string>()
  const stack: Array<{ ref: ListedRef; expanded: boolean }> = [...start].reverse().map((ref) => ({ ref, expanded: false }))
  while (stack.length > 0) {
    const item = stack.pop()!
    const key = blobKey(item.ref.descriptor)
    if (placed.has(key)) continue
    if (!item.expanded) {
      stack.push({ ref: item.ref, expanded: true })
      for (const child of [...(children.get(key) ?? [])].reverse()) if (!placed.has(blobKey(child.descriptor))) stack.push({ ref: child, expanded: false })
      continue
    }
    placed.add(key)
    const digest = formatDigest(item.ref.descriptor.digest)
    manifests.push({ digest, mediaType: item.ref.descriptor.mediaType, bytes: documents.get(key)!, what: documentName(item.ref.descriptor) })
  }
  if (cut) manifests.push(cut)
  return { blobs: [...blobs.values()], manifests, rewritten: cut !== null }
}
