// A tree from entries whose contents are not files on disk: bytes in memory, or a stream opened when
// the file is cut (an image read from a registry: its documents are in memory, a layer blob kept raw
// streams from the registry again). Contents are cut by the rules every push uses (docs/FORMAT.md,
// "How files become chunks": packed in path order below packMax, on their own from packMax up) through
// the one ChunkSink, so the same entries give the very tree, and ID, a push of them as a directory gives.
import { Chunker } from '../chunk/chunker.js'
import type { ChunkerParams } from '../chunk/params.js'
import { compareBytes, type Tree, type TreeEntry } from '../format/tree.js'
import type { Store } from '../store/store.js'
import { SnapdirError, sourceError } from '../util/errors.js'
import type { BuildStats } from './build-snapshot.js'
import { ChunkSink } from './chunk-sink.js'
import type { FileJob } from './jobs.js'
import { packGroups } from './pack-groups.js'

/** One entry; a file without a recipe has its content, of exactly `entry.size` bytes. */
export interface ContentEntry {
  entry: TreeEntry
  /** the bytes, or a way to stream them (opened once, when the file is cut) */
  content?: Buffer | (() => Promise<AsyncIterable<Buffer>>)
  /** how messages name the content ("layer sha256:… of docker://…") */
  shownAs?: string
}

export interface BuildFromContentOptions {
  params: ChunkerParams
  /** where new chunks go; without one, only the tree (and so the ID) is computed */
  store?: Store
  onBytes?: (bytes: number) => void
  signal?: AbortSignal
}

const BLOCK = 4 * 1024 * 1024

export async function buildFromContent(entries: ContentEntry[], options: BuildFromContentOptions): Promise<{ tree: Tree; stats: BuildStats }> {
  const { inlineMax = 0, packMax = 0 } = options.params
  const sorted = [...entries].sort((a, b) => compareBytes(a.entry.path, b.entry.path))
  const sink = new ChunkSink(new Chunker(options.params), options.store ?? null)
  const cut = sorted.filter((c) => c.entry.type === 'file' && c.entry.recipe === undefined && c.entry.size > 0)
  try {
    const packed: ContentEntry[] = []
    for (const c of cut) {
      options.signal?.throwIfAborted()
      const size = c.entry.size
      if (size <= inlineMax) c.entry.inline = await whole(c)
      else if (size < packMax) packed.push(c)
      else {
        const file = sink.wholeFile()
        let got = 0
        for await (const piece of pieces(c)) {
          got += piece.length
          if (got > size) break
          for (let at = 0; at < piece.length; at += BLOCK) await file.push(piece.subarray(at, at + BLOCK))
          options.onBytes?.(piece.length)
        }
        if (got !== size) throw sourceError(shown(c), `gave ${got > size ? 'more than' : got} bytes, not ${size}`)
        c.entry.chunks = await file.end()
      }
    }
    const jobs: FileJob[] = packed.map((c, index) => ({ index, source: c.entry.path, size: c.entry.size, sparse: false }))
    for (const group of packGroups(jobs, packed.map((c) => c.entry.path))) {
      const members = group.files.map((f) => packed[f.index]!)
      const bytes: Buffer[] = []
      for (const c of members) bytes.push(await whole(c))
      const refs = await sink.cutGroup(Buffer.concat(bytes), members.map((c) => c.entry.size))
      members.forEach((c, i) => (c.entry.chunks = refs[i]!))
      options.onBytes?.(bytes.reduce((a, b) => a + b.length, 0))
    }
    await sink.drain()
  } finally {
    await sink.drain().catch(() => undefined)
  }
  const distinct = new Set<string>()
  let chunkRefs = 0
  for (const c of cut) {
    for (const r of c.entry.chunks) {
      chunkRefs += r.count
      distinct.add(r.id.toString('hex'))
    }
  }
  const files = sorted.filter((c) => c.entry.type === 'file')
  return {
    tree: { chunker: options.params, entries: sorted.map((c) => c.entry) },
    stats: {
      entries: sorted.length, files: files.length, logicalBytes: files.reduce((a, c) => a + c.entry.size, 0),
      chunkRefs, distinctChunks: distinct.size, ...sink.stats,
    },
  }
}

function shown(c: ContentEntry): string {
  return c.shownAs ?? c.entry.path.toString()
}

async function* pieces(c: ContentEntry): AsyncGenerator<Buffer> {
  const { content } = c
  if (content === undefined) throw new SnapdirError('ERR_INTERNAL', `internal error: no content for ${shown(c)}`)
  if (Buffer.isBuffer(content)) {
    yield content
    return
  }
  yield* await content()
}

/** A small file's whole content, checked against its size. */
async function whole(c: ContentEntry): Promise<Buffer> {
  const parts: Buffer[] = []
  let got = 0
  for await (const piece of pieces(c)) {
    got += piece.length
    if (got > c.entry.size) break
    parts.push(Buffer.from(piece))
  }
  if (got !== c.entry.size) throw sourceError(shown(c), `gave ${got > c.entry.size ? 'more than' : got} bytes, not ${c.entry.size}`)
  return Buffer.concat(parts)
}
