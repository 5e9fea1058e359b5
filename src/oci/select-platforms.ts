// push --platform: keep only some platforms of multi-platform images. Every image index (index.json
// and the indexes it lists) keeps the entries whose platform matches one asked for, and entries
// without a platform (attestations and other artifacts point at a manifest by annotation and stay
// only while that manifest stays). An index that changed is written as a new blob, so its digest
// changes and the indexes above it are rewritten in turn, as `skopeo copy --multi-arch` would. The
// result is a new layout in a temporary directory with only the blobs it still references,
// hardlinked from the original where the file system allows. Call after checkImageLayout.
import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { isErrno, sourceError } from '../util/errors.js'
import { LayoutBlobs } from './blob-file.js'
import { blobPath, type BlobReader } from './blob-reader.js'
import { isObject, type Descriptor } from './descriptor.js'
import { formatDigest } from './digest.js'
import { documentName, indexEntries, manifestParts, readDocument, readIndexJson, type ListedRef } from './document-walker.js'
import { INDEX_FILE, LAYOUT_MARKER } from './image-layout.js'
import { imageError, layoutError } from './layout-problem.js'
import { descriptorPlatform, formatPlatform, platformMatches, type Platform } from './platform.js'

/** The manifest a referrer (e.g. a BuildKit attestation) describes, when the entry says so. */
const REFERENCE_ANNOTATION = 'vnd.docker.reference.digest'

export interface SelectedLayout {
  dir: string
  remove(): Promise<void>
}

export async function selectPlatforms(layout: string, platforms: Platform[], shownAs: string): Promise<SelectedLayout> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'snapdir-platforms-'))
  const dir = path.join(root, 'layout')
  const remove = (): Promise<void> => fs.rm(root, { recursive: true, force: true })
  try {
    await fs.mkdir(dir)
    const source = new LayoutBlobs(layout)
    const selected = await selectFrom(source, await readLayoutIndex(source, shownAs), platforms, `OCI image layout ${shownAs}`, { layout: shownAs })
    await fs.writeFile(path.join(dir, INDEX_FILE), selected.indexJson)
    await fs.copyFile(path.join(layout, LAYOUT_MARKER), path.join(dir, LAYOUT_MARKER))
    const written: string[] = []
    for (const [rel, bytes] of selected.written) {
      await fs.mkdir(path.dirname(path.join(dir, rel)), { recursive: true })
      await fs.writeFile(path.join(dir, rel), bytes)
      written.push(rel)
    }
    for (const d of selected.kept.values()) await copyBlob(layout, dir, d)
    // what was written here takes the time of the original index.json: the same selection of the
    // same layout gives the same snapshot ID
    const time = (await fs.stat(path.join(layout, INDEX_FILE))).mtime
    const algorithms = new Set([...[...selected.kept.values()].map((d) => d.digest.algorithm), ...written.map((w) => w.split('/')[1]!)])
    for (const p of [INDEX_FILE, LAYOUT_MARKER, ...written, 'blobs', ...[...algorithms].map((a) => `blobs/${a}`), '']) {
      await fs.utimes(path.join(dir, p), time, time)
    }
    return { dir, remove }
  } catch (err) {
    await remove()
    throw err
  }
}

async function readLayoutIndex(source: BlobReader, shownAs: string): Promise<Record<string, unknown>> {
  try {
    return await readIndexJson(source)
  } catch (err) {
    throw layoutError(err, shownAs)
  }
}

/** An image narrowed to some platforms, as a layout holds it. */
export interface SelectedImage {
  /** the new index.json's bytes */
  indexJson: Buffer
  /** indexes rewritten with fewer entries: their path in a layout (blobs/<algorithm>/<hex>) and bytes */
  written: Map<string, Buffer>
  /** every other blob the selection still references, by digest */
  kept: Map<string, Descriptor>
}

/**
 * The selection over any image source (a layout, a registry): `index` is its index.json, parsed;
 * `shownAs` names the image in messages ("OCI image layout DIR"), `data` goes with the error.
 */
export async function selectFrom(source: BlobReader, index: Record<string, unknown>, platforms: Platform[], shownAs: string, data: Record<string, unknown>): Promise<SelectedImage> {
  const selector = new Selector(source, platforms)
  let kept
  try {
    kept = await selector.filter(index, INDEX_FILE)
  } catch (err) {
    throw imageError(err, 'ERR_SOURCE', shownAs, data)
  }
  if (!selector.matched) {
    const have = [...selector.seen].join(', ') || 'none'
    throw sourceError(shownAs, `no image for ${platforms.map(formatPlatform).join(', ')} (it has ${have})`)
  }
  return { indexJson: Buffer.from(JSON.stringify(kept)), written: selector.written, kept: selector.kept }
}

/** Hardlinks (or copies, across file systems) a kept blob; foreign layers left out stay out. */
async function copyBlob(from: string, to: string, d: Descriptor): Promise<void> {
  const rel = blobPath(d.digest)
  const target = path.join(to, rel)
  await fs.mkdir(path.dirname(target), { recursive: true })
  try {
    await fs.link(path.join(from, rel), target)
  } catch (err) {
    if (isErrno(err, 'ENOENT') && d.urls.length > 0) return
    if (isErrno(err, 'EEXIST')) return
    if (!isErrno(err, 'EXDEV', 'EPERM')) throw err
    await fs.copyFile(path.join(from, rel), target, fs.constants.COPYFILE_FICLONE)
  }
}

class Selector {
  /** every blob the filtered layout references, by digest */
  readonly kept = new Map<string, Descriptor>()
  /** platforms met, for the message when none matched */
  readonly seen = new Set<string>()
  matched = false
  /** indexes rewritten: path in a layout -> bytes */
  readonly written = new Map<string, Buffer>()

  constructor(
    private readonly source: BlobReader,
    private readonly platforms: Platform[],
  ) {}

  /** An index document (`name` in messages) with only the wanted entries; the entries' blobs are recorded. */
  async filter(index: Record<string, unknown>, name: string): Promise<Record<string, unknown>> {
    const keep: ListedRef[] = []
    for (const entry of indexEntries(index, name)) {
      const platform = descriptorPlatform(entry.raw)
      if (platform !== null) {
        this.seen.add(formatPlatform(platform))
        if (!this.platforms.some((want) => platformMatches(platform, want))) continue
        this.matched = true
      }
      keep.push(entry)
    }
    // a referrer stays only with the manifest it refers to
    const digests = new Set(keep.map((e) => formatDigest(e.descriptor.digest)))
    const kept = keep.filter((e) => {
      const refers = isObject(e.raw.annotations) ? e.raw.annotations[REFERENCE_ANNOTATION] : undefined
      return typeof refers !== 'string' || digests.has(refers)
    })
    const out: Array<Record<string, unknown>> = []
    for (const entry of kept) out.push(await this.keepEntry(entry))
    return { ...index, manifests: out }
  }

  /** Keeps the blob an entry names (a nested index filtered and rewritten); returns the entry to list. */
  private async keepEntry(entry: ListedRef): Promise<Record<string, unknown>> {
    const d = entry.descriptor
    const document = await readDocument(this.source, entry)
    if (!entry.index) {
      // a manifest and everything it names
      const { config, layers } = manifestParts(document, documentName(d))
      for (const part of [entry, config, ...layers]) this.kept.set(formatDigest(part.descriptor.digest), part.descriptor)
      return entry.raw
    }
    const nested = await this.filter(document, documentName(d))
    const bytes = Buffer.from(JSON.stringify(nested))
    const digest = { algorithm: d.digest.algorithm, encoded: createHash(d.digest.algorithm).update(bytes).digest('hex') }
    if (digest.encoded === d.digest.encoded) {
      this.kept.set(formatDigest(d.digest), d)
      return entry.raw
    }
    this.written.set(blobPath(digest), bytes)
    return { ...entry.raw, digest: formatDigest(digest), size: bytes.length }
  }
}

