// Bytes -> chunk refs: the one place content becomes chunks and refs, for directory push
// (file-processor.ts) and layer expansion (oci/layer-expand.ts) alike, so the same bytes give the same
// chunks and refs whichever way they came (docs/FORMAT.md, "How files become chunks"). A file is cut
// on its own (WholeFile) or with its neighbours in a pack group (cutGroup); every chunk goes through
// one ChunkSink, which stores each new one once. The native batches (native-run.ts) cut in C and
// build the same refs with appendRef and groupRefs.
import { ChunkStream, type RawChunk } from '../chunk/chunk-stream.js'
import type { Chunker } from '../chunk/chunker.js'
import { hashBytes, zeroChunkId } from '../chunk/hash.js'
import { toHex } from '../format/id.js'
import { encodeObject } from '../format/object.js'
import type { ChunkRef } from '../format/tree.js'
import { objectKey } from '../store/objects.js'
import { isLocalChunkStore, type Store } from '../store/store.js'
import { TaskWindow } from '../util/concurrency.js'
import { groupRefs, type GroupChunk } from './pack-groups.js'

/** Chunk writes in flight at once on a store without addObjectSync (an S3 store's PUTs). */
const WRITES_IN_FLIGHT = 16

export interface ChunkStats {
  chunksWritten: number
  bytesWritten: number
}

/** Adds `count` whole chunks to a file's refs; a run of one chunk repeated is one ref with a count. */
export function appendRef(refs: ChunkRef[], id: Buffer, length: number, count: number): void {
  const last = refs.at(-1)
  if (last && last.length === length && last.id.equals(id)) last.count += count
  else refs.push({ id, offset: 0, length, count })
}

/**
 * Cuts content with one chunker and writes the chunks a store lacks, each once, with a bounded number
 * of writes in flight (none is left running after drain). Without a store it only names the chunks.
 */
export class ChunkSink {
  readonly stats: ChunkStats = { chunksWritten: 0, bytesWritten: 0 }
  private readonly seen = new Set<string>()
  private readonly window = new TaskWindow(WRITES_IN_FLIGHT)

  constructor(readonly chunker: Chunker, private readonly store: Store | null) {}

  /** A file cut on its own, its refs appended to `refs`. */
  wholeFile(refs: ChunkRef[] = []): WholeFile {
    return new WholeFile(this, refs)
  }

  /**
   * Cuts a pack group's bytes (its files back to back, in group order: pack-groups.ts) as one stream
   * and gives each file its refs, slices of the group's chunks. Done with `stream` when it resolves.
   */
  async cutGroup(stream: Buffer, sizes: number[]): Promise<ChunkRef[][]> {
    const { lengths, count } = this.chunker.cuts(stream, true)
    const chunks: GroupChunk[] = []
    let pos = 0
    for (let i = 0; i < count; i++) {
      const data = stream.subarray(pos, pos + lengths[i]!)
      const id = hashBytes(data)
      await this.offer(id, data, data.length)
      chunks.push({ id, start: pos, end: pos + data.length })
      pos += data.length
    }
    return groupRefs(chunks, sizes)
  }

  /** Hashes and offers a file's chunks, in order, and adds them to its refs. */
  async take(chunks: Iterable<RawChunk>, refs: ChunkRef[]): Promise<void> {
    for (const c of chunks) {
      const id = c.data === null ? zeroChunkId(c.length) : hashBytes(c.data)
      await this.offer(id, c.data, c.length)
      appendRef(refs, id, c.length, c.count)
    }
  }

  /**
   * Stores one chunk unless it was offered before. `data` (null: `length` zeros) may view a buffer the
   * caller reuses once this resolves: it is written first where the store writes synchronously, else
   * copied. Resolves once the write is under way; a slow store holds the caller back.
   */
  async offer(idBytes: Buffer, data: Buffer | null, length: number): Promise<void> {
    const store = this.store
    if (store === null) return
    const id = toHex(idBytes)
    if (this.seen.has(id)) return
    this.seen.add(id)
    const key = objectKey('chunk', id)
    if (isLocalChunkStore(store)) {
      // written before the read buffer it views is reused: no copy
      const written = store.addObjectSync(key, data ?? Buffer.alloc(length))
      if (written > 0) {
        this.stats.chunksWritten++
        this.stats.bytesWritten += written
      }
      return
    }
    // copy: the data views the read buffer, which the next read overwrites
    const raw = data === null ? Buffer.alloc(length) : Buffer.from(data)
    await this.window.add(async () => {
      if (await store.has(key)) return
      const encoded = encodeObject(raw)
      await store.put(key, encoded)
      this.stats.chunksWritten++
      this.stats.bytesWritten += encoded.length
    })
  }

  /** Waits for every chunk write; rethrows the first failure. */
  drain(): Promise<void> {
    return this.window.drain()
  }
}

/**
 * One file cut on its own, its content given in order: blocks of bytes, and runs of zeros for holes
 * (fed as lengths, never read). The cut points are those of the whole content at once (ChunkStream
 * carries the unfinished tail from one block to the next), so how the content is split into blocks
 * never changes the chunks. A block may be reused once push() resolves.
 */
export class WholeFile {
  private readonly stream: ChunkStream

  constructor(private readonly sink: ChunkSink, readonly refs: ChunkRef[]) {
    this.stream = new ChunkStream(sink.chunker)
  }

  push(block: Buffer): Promise<void> {
    return this.sink.take(this.stream.push(block), this.refs)
  }

  zeros(length: number): Promise<void> {
    return this.sink.take(this.stream.pushZeros(length), this.refs)
  }

  /** Cuts what is left; the file's refs. */
  async end(): Promise<ChunkRef[]> {
    await this.sink.take(this.stream.end(), this.refs)
    return this.refs
  }
}
