// Layer expansion: one image layer blob (tar, tar+gzip or tar+zstd) becomes a snapdir tree of its
// entries, whiteouts kept as the plain files they are (layer-whiteouts.ts), with every file's content
// cut into chunks by the rules push uses for a directory (docs/FORMAT.md, "How files become chunks"):
// inline up to inlineMax, packed with its neighbours below packMax, cut on its own from packMax up.
// So the same file gives the same chunks whether it came in a directory or in any layer of any image,
// and a tar of a directory expands to the very tree (and ID) `snapdir push` gives that directory.
//
// Everything streams: the blob is read once, decompressed, parsed and cut on the fly, with backpressure
// from chunk writes up to the file read. Small files to be packed are spilled to a temporary file,
// since packing groups them in path order and a tar gives them in archive order; groups are read back
// one at a time (at most 16 MiB, pack-groups.ts). The blob's sha256 (digest) and the tar's (diff_id)
// are computed on the way, for the caller to check against the manifest and the image config.
import { createHash, type Hash } from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import zlib from 'node:zlib'
import { extract } from 'tar-stream'
import { Chunker } from '../chunk/chunker.js'
import type { ChunkerParams } from '../chunk/params.js'
import type { RecipeSegment } from '../format/recipe.js'
import type { ChunkRef, Tree } from '../format/tree.js'
import { ChunkSink } from '../ingest/chunk-sink.js'
import type { FileJob } from '../ingest/jobs.js'
import { packGroups } from '../ingest/pack-groups.js'
import type { Store } from '../store/store.js'
import { isErrno, SnapdirError, sourceError } from '../util/errors.js'
import { compressionOf, streamProblem, zstdDecompress, type Compression as LayerCompression } from './decompress.js'
import { LayerEntries, type LayerInode } from './layer-entries.js'
import { layerCompression } from './media-types.js'
import { SpillFile } from './spill-file.js'
import { StreamedCompressorMatch, type StreamedFound } from './streamed-compressor-match.js'
import { FramingCapture } from './tar-framing.js'
import { losslessPax, makedev, mtimeOf, paxNumber, xattrsOf } from './tar-pax.js'

export type { Compression as LayerCompression } from './decompress.js'
export { layerCompression }

export interface ExpandLayerOptions {
  /** path of the layer blob; with `stream`, only how data names it */
  blob: string
  /** the blob's bytes as they arrive (a registry's response), read instead of the file */
  stream?: AsyncIterable<Buffer>
  /**
   * with `stream` and `framing`: find the compressor that gives the blob back from its tar while it
   * streams (streamed-compressor-match.ts), as the blob is not kept to search afterwards; `size` is the blob's
   */
  matchCompressor?: { size: number }
  mediaType: string
  /** the store's chunker parameters (store-config.ts), so chunks match what push writes there */
  params: ChunkerParams
  /** where new chunks go; without one, only the tree is computed */
  store?: Store
  /** how messages name the blob, e.g. its digest; default: its path */
  name?: string
  /** where small files wait to be packed; default: the system's temporary directory */
  spillDir?: string
  /** also keep the tar's framing, for a recipe that gives the tar back from the tree (format/recipe.ts) */
  framing?: boolean
  signal?: AbortSignal
}

/**
 * The tar as framing over the tree's contents: the framing stream cut into chunks (stored like any
 * chunk), and the segments that put the files' contents between its pieces (format/recipe.ts).
 */
export interface LayerFraming {
  refs: ChunkRef[]
  size: number
  segments: RecipeSegment[]
  tail: number
}

export interface LayerStats {
  entries: number
  files: number
  /** bytes of file content */
  logicalBytes: number
  /** bytes of the uncompressed tar */
  tarBytes: number
  chunksWritten: number
  bytesWritten: number
}

export interface ExpandedLayer {
  tree: Tree
  /** sha256 of the blob as read, `sha256:<hex>` */
  digest: string
  /** sha256 of the uncompressed tar: the layer's diff_id in the image config */
  diffId: string
  stats: LayerStats
  /** with `framing`: the tar's framing */
  framing?: LayerFraming
  /** the compression the blob really has */
  compression: LayerCompression
  /** with `matchCompressor`, a compressed blob: what the search found */
  streamed?: StreamedFound
}

/**
 * Expands a layer blob into a tree, writing its file contents to the store as chunks. Bad input is a
 * SnapdirError naming the blob: ERR_SOURCE for a blob that does not decompress or parse (corrupt gzip,
 * truncated tar, unknown media type), ERR_UNSAFE_PATH for entries that would escape the layer. Chunks
 * written before a failure stay (they are content-addressed and harmless); nothing else is written.
 */
export async function expandLayer(options: ExpandLayerOptions): Promise<ExpandedLayer> {
  const what = `layer ${options.name ?? options.blob}`
  const declared = layerCompression(options.mediaType)
  if (declared === null) {
    throw sourceError(what, `media type '${options.mediaType}' is not a tar layer snapdir can expand`, { data: { blob: options.blob } })
  }
  const expander = new Expander(options, what)
  try {
    if (options.stream) {
      const { head, rest } = await peek(options.stream, 4)
      return await expander.run(checkSniffed(compressionOf(head), declared, options.mediaType, what, options.blob), rest)
    }
    return await expander.run(await sniff(options.blob, declared, options.mediaType, what))
  } catch (err) {
    throw expander.failure(err)
  } finally {
    await expander.close()
  }
}

/**
 * The compression the blob really has. A layer typed as plain tar that is compressed is read as what it
 * is, as containerd does (its DecompressStream detects by magic); a blob that lacks the magic of the
 * compression its type names is refused.
 */
async function sniff(blob: string, declared: LayerCompression, mediaType: string, what: string): Promise<LayerCompression> {
  const head = Buffer.alloc(4)
  let got: number
  try {
    const fh = await fsp.open(blob, 'r')
    try {
      got = (await fh.read(head, 0, 4, 0)).bytesRead
    } finally {
      await fh.close()
    }
  } catch (err) {
    throw sourceError(what, `cannot read ${blob}: ${(err as Error).message}`, { cause: err, data: { blob } })
  }
  return checkSniffed(compressionOf(head.subarray(0, got)), declared, mediaType, what, blob)
}

function checkSniffed(actual: LayerCompression, declared: LayerCompression, mediaType: string, what: string, blob: string): LayerCompression {
  if (declared !== 'none' && actual !== declared) {
    throw sourceError(what, `is not ${declared} data, although its media type ${mediaType} says so`, { data: { blob } })
  }
  return actual
}

/** The stream's first `n` bytes (fewer if it is shorter), and the whole stream again, those bytes included. */
async function peek(stream: AsyncIterable<Buffer>, n: number): Promise<{ head: Buffer; rest: AsyncIterable<Buffer> }> {
  const it = stream[Symbol.asyncIterator]()
  const first: Buffer[] = []
  let got = 0
  let done = false
  while (got < n) {
    const r = await it.next()
    if (r.done) {
      done = true
      break
    }
    first.push(r.value)
    got += r.value.length
  }
  async function* rest(): AsyncGenerator<Buffer> {
    yield* first
    if (done) return
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value
  }
  return { head: Buffer.concat(first).subarray(0, n), rest: rest() }
}

/** A tar-stream header as its parser really fills it (its published types leave some fields out). */
interface TarHeader {
  name: string
  mode: number
  uid: number
  gid: number
  size: number
  mtime: Date
  type: string | null
  linkname: string | null
  devmajor: number
  devminor: number
  /** offset of the entry's data in the tar */
  byteOffset: number
  pax: Record<string, string> | null
}

const BLOCK = 4 * 1024 * 1024
const TAR_BLOCK = 512

class Expander {
  private readonly inlineMax: number
  private readonly packMax: number
  private readonly entries: LayerEntries
  private readonly sink: ChunkSink
  private readonly spill: SpillFile
  /** where each small file's content waits in the spill file, until packing */
  private readonly spilled = new Map<LayerInode, number>()
  private readonly block = Buffer.allocUnsafeSlow(BLOCK)
  private readonly capture: FramingCapture<LayerInode> | null
  private readonly stats: LayerStats = { entries: 0, files: 0, logicalBytes: 0, tarBytes: 0, chunksWritten: 0, bytesWritten: 0 }

  constructor(private readonly options: ExpandLayerOptions, private readonly what: string) {
    this.inlineMax = options.params.inlineMax ?? 0
    this.packMax = options.params.packMax ?? 0
    this.entries = new LayerEntries(what)
    this.sink = new ChunkSink(new Chunker(options.params), options.store ?? null)
    this.spill = new SpillFile(options.spillDir ?? os.tmpdir())
    this.capture = options.framing ? new FramingCapture(what) : null
  }

  async run(compression: LayerCompression, stream?: AsyncIterable<Buffer>): Promise<ExpandedLayer> {
    const { blob, signal } = this.options
    const tarHash = createHash('sha256')
    // an uncompressed blob is the tar: one hash serves as both digest and diff_id
    const blobHash = compression === 'none' ? null : createHash('sha256')
    const source = stream ? Readable.from(stream, { objectMode: false }) : fs.createReadStream(blob, { highWaterMark: 1024 * 1024 })
    const match = compression !== 'none' && this.options.matchCompressor && this.capture
      ? new StreamedCompressorMatch(compression, this.options.matchCompressor.size)
      : null
    // latin1: names as bytes, one char per byte (tar-stream passes this to its header decoder)
    const ex = extract({ filenameEncoding: 'latin1' } as Parameters<typeof extract>[0])
    const paxGlobal = losslessPax(ex)
    const stages: Array<NodeJS.ReadWriteStream | ((input: AsyncIterable<Buffer>) => AsyncGenerator<Buffer>)> = blobHash ? [tap(blobHash, match ? (chunk) => match.blob(chunk) : undefined)] : []
    if (compression === 'gzip') stages.push(zlib.createGunzip({ chunkSize: 256 * 1024 }))
    if (compression === 'zstd') stages.push(zstdDecompress)
    const capture = this.capture
    const seeTar = (chunk: Buffer): void => {
      this.stats.tarBytes += chunk.length
      capture?.feed(chunk)
    }
    if (match) {
      // the candidates take each piece of tar before it goes on: their encoders hold the pipeline back
      stages.push(async function* (input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
        for await (const chunk of input) {
          tarHash.update(chunk)
          seeTar(chunk)
          await match.tar(chunk)
          yield chunk
        }
      })
    } else stages.push(tap(tarHash, seeTar))
    // node's pipeline takes the streamx Writable tar-stream is built on; errors of any stage land here
    const streams = [source, ...stages, ex] as unknown as NodeJS.ReadWriteStream[]
    const piped = pipeline(streams, signal ? { signal } : {})
      .then(() => null, (err: unknown) => err)
    let tarEnd = 0
    try {
      for await (const entry of ex) {
        signal?.throwIfAborted()
        const h = entry.header as unknown as TarHeader
        tarEnd = h.byteOffset + Math.ceil(h.size / TAR_BLOCK) * TAR_BLOCK
        await this.entry(h, { ...paxGlobal(), ...(h.pax ?? {}) }, entry as AsyncIterable<Buffer>)
      }
    } catch (err) {
      source.destroy()
      await piped
      throw err
    }
    const pipeError = await piped
    if (pipeError !== null) throw pipeError as Error
    // A tar ends with zero blocks; without them the blob was cut at an entry boundary.
    if (this.stats.tarBytes < tarEnd + TAR_BLOCK) {
      throw sourceError(this.what, `the tar is truncated (it ends after ${this.stats.tarBytes} bytes, without its end-of-archive blocks)`, { data: { blob } })
    }
    const { tree, inodes } = this.entries.tree(this.options.params)
    // before packing: content the tree does not keep is read from the spill file into the framing
    const framing = this.capture ? await this.framing(this.capture, tree, inodes) : null
    await this.pack(tree, inodes)
    await this.sink.drain()
    this.stats.entries = tree.entries.length
    this.stats.chunksWritten = this.sink.stats.chunksWritten
    this.stats.bytesWritten = this.sink.stats.bytesWritten
    const diffId = `sha256:${tarHash.digest('hex')}`
    const streamed = match ? await match.end() : null
    return {
      tree, digest: blobHash ? `sha256:${blobHash.digest('hex')}` : diffId, diffId, stats: this.stats, compression,
      ...(framing ? { framing } : {}), ...(streamed ? { streamed } : {}),
    }
  }

  /** Maps whatever stopped the expansion to one SnapdirError naming the layer. */
  failure(err: unknown): SnapdirError {
    const { blob, signal } = this.options
    if (signal?.aborted) return new SnapdirError('ERR_ABORTED', `${this.what}: expansion aborted`, { cause: err })
    if (err instanceof SnapdirError) return err
    const e = (err instanceof Error ? err : new Error(String(err))) as NodeJS.ErrnoException
    const message = e.message
    let why: string
    const stream = streamProblem(e)
    if (stream !== null) why = stream
    else if (isErrno(e, 'ENOENT', 'EACCES', 'EISDIR', 'EIO')) why = `cannot read ${blob}: ${message}`
    else if (/unexpected end of data/i.test(message)) why = 'the tar is truncated (unexpected end of data)'
    else why = `the tar is corrupt: ${message}`
    return sourceError(this.what, why, { cause: err, data: { blob } })
  }

  /** After success or failure: no chunk write is left running behind the caller's back, no spill file left. */
  async close(): Promise<void> {
    await this.sink.drain().catch(() => undefined)
    await this.spill.close()
  }

  private async entry(h: TarHeader, pax: Record<string, string>, data: AsyncIterable<Buffer>): Promise<void> {
    const entryPath = this.entries.memberPath(Buffer.from(h.name, 'latin1'))
    if (pax['GNU.sparse.major'] !== undefined || pax['GNU.sparse.size'] !== undefined || pax['GNU.sparse.numblocks'] !== undefined) {
      throw sourceError(this.what, `entry '${h.name}' is a GNU sparse file, which layers must not use (image-spec layer.md)`)
    }
    const base: LayerInode = {
      type: 'file', mode: h.mode & 0o7777, uid: paxNumber(pax.uid) ?? h.uid, gid: paxNumber(pax.gid) ?? h.gid,
      ...mtimeOf(h.mtime, pax), size: 0, target: null, rdev: 0, xattrs: xattrsOf(pax), chunks: [],
    }
    switch (h.type) {
      case 'file':
      case 'contiguous-file': {
        base.size = h.size
        this.entries.add(entryPath, base)
        if (h.size > 0) this.capture?.content(h.byteOffset, h.size, base)
        this.stats.files++
        this.stats.logicalBytes += h.size
        await this.content(base, data)
        return
      }
      case 'directory':
        this.entries.add(entryPath, { ...base, type: 'dir' })
        break
      case 'symlink':
        this.entries.add(entryPath, { ...base, type: 'symlink', target: Buffer.from(h.linkname ?? '', 'latin1') })
        break
      case 'link':
        this.entries.link(entryPath, this.entries.memberPath(Buffer.from(h.linkname ?? '', 'latin1'), `hardlink '${h.name}' target`))
        break
      case 'character-device':
      case 'block-device':
        this.entries.add(entryPath, { ...base, type: h.type === 'block-device' ? 'block' : 'char', rdev: makedev(h.devmajor, h.devminor) })
        break
      case 'fifo':
        this.entries.add(entryPath, { ...base, type: 'fifo' })
        break
      default:
        throw sourceError(this.what, `entry '${h.name}' has a tar entry type snapdir does not know (${h.type ?? 'unknown'})`)
    }
    // a hardlink or device with data: skipped, as tar does
    await drain(data)
  }

  /** Cuts (or inlines, or spills for packing) one regular file's content as the tar gives it. */
  private async content(inode: LayerInode, data: AsyncIterable<Buffer>): Promise<void> {
    const size = inode.size
    if (size === 0) return drain(data)
    if (size <= this.inlineMax) {
      const parts: Buffer[] = []
      for await (const piece of data) parts.push(piece)
      inode.inline = Buffer.concat(parts)
      return
    }
    if (size < this.packMax) {
      this.spilled.set(inode, await this.spill.append(data))
      return
    }
    // Cut on its own, as push cuts it; the tar's pieces are gathered into blocks so the chunker sees
    // few, large buffers (the cut points do not depend on how the content is split).
    const file = this.sink.wholeFile(inode.chunks)
    let fill = 0
    for await (const piece of data) {
      for (let p = 0; p < piece.length; ) {
        const n = Math.min(BLOCK - fill, piece.length - p)
        piece.copy(this.block, fill, p, p + n)
        fill += n
        p += n
        if (fill === BLOCK) {
          await file.push(this.block)
          fill = 0
        }
      }
    }
    if (fill > 0) await file.push(this.block.subarray(0, fill))
    await file.end()
  }

  /**
   * The framing captured, as a recipe keeps it: each file's content named by the index of the tree
   * entry that carries its inode; content no entry carries (a path the tar writes twice keeps only
   * the last) goes into the framing when small, or is named by its chunk refs when it was cut on its own.
   */
  private async framing(capture: FramingCapture<LayerInode>, tree: Tree, inodes: LayerInode[]): Promise<LayerFraming> {
    const carrier = new Map<LayerInode, number>()
    tree.entries.forEach((e, i) => {
      if (e.type === 'file') carrier.set(inodes[i]!, i)
    })
    const parts: Buffer[] = []
    const segments: RecipeSegment[] = []
    let run = 0
    const add = (b: Buffer): void => {
      parts.push(b)
      run += b.length
    }
    for (const ev of capture.events) {
      add(ev.framing)
      const index = carrier.get(ev.owner)
      if (index !== undefined) {
        segments.push({ framing: run, source: index })
        run = 0
      } else if (ev.owner.inline) add(ev.owner.inline)
      else if (this.spilled.has(ev.owner)) {
        const bytes = Buffer.allocUnsafe(ev.size)
        await this.spill.read(bytes, 0, ev.size, this.spilled.get(ev.owner)!)
        add(bytes)
      } else {
        segments.push({ framing: run, source: ev.owner.chunks })
        run = 0
      }
    }
    add(capture.finish(this.stats.tarBytes))
    const stream = Buffer.concat(parts)
    const file = this.sink.wholeFile()
    for (let at = 0; at < stream.length; at += BLOCK) await file.push(stream.subarray(at, at + BLOCK))
    return { refs: await file.end(), size: stream.length, segments, tail: run }
  }

  /** Packs the spilled small files exactly as push packs them (ingest/pack-groups.ts). */
  private async pack(tree: Tree, inodes: LayerInode[]): Promise<void> {
    const members: Array<{ refs: ChunkRef[]; at: number; size: number }> = []
    const jobs: FileJob[] = []
    const paths: Buffer[] = []
    tree.entries.forEach((e, i) => {
      const at = e.type === 'file' ? this.spilled.get(inodes[i]!) : undefined
      if (at === undefined) return
      jobs.push({ index: members.length, source: e.path, size: e.size, sparse: false })
      members.push({ refs: e.chunks, at, size: e.size })
      paths.push(e.path)
    })
    for (const group of packGroups(jobs, paths)) {
      const total = group.files.reduce((a, f) => a + f.size, 0)
      const stream = Buffer.allocUnsafe(total)
      let at = 0
      for (const f of group.files) {
        await this.spill.read(stream, at, f.size, members[f.index]!.at)
        at += f.size
      }
      const refs = await this.sink.cutGroup(stream, group.files.map((f) => f.size))
      group.files.forEach((f, i) => members[f.index]!.refs.push(...refs[i]!))
    }
  }
}

async function drain(data: AsyncIterable<Buffer>): Promise<void> {
  const it = data[Symbol.asyncIterator]()
  while (!(await it.next()).done) {
    // discard
  }
}

/** Passes bytes through, hashing (and counting) them. */
function tap(hash: Hash, seen?: (chunk: Buffer) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk)
      seen?.(chunk)
      cb(null, chunk)
    },
  })
}

