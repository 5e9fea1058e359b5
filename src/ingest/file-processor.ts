import fs from 'node:fs'
import { ChunkStream, type RawChunk } from '../chunk/chunk-stream.js'
import { Chunker } from '../chunk/chunker.js'
import { hashBytes, zeroChunkId } from '../chunk/hash.js'
import { native } from '../chunk/native.js'
import type { ChunkerParams } from '../chunk/params.js'
import { encodeObject } from '../format/object.js'
import { toHex } from '../format/id.js'
import type { ChunkRef } from '../format/tree.js'
import { objectKey } from '../store/objects.js'
import { isLocalChunkStore, type Store } from '../store/store.js'
import { TaskWindow } from '../util/concurrency.js'
import { cutGroup, type PackJob } from './pack-groups.js'
import { SnapdirError } from '../util/errors.js'

/** One regular file to cut: where it is and what the scan saw. */
export interface FileJob {
  index: number
  source: Buffer
  size: number
  /** holes worth skipping (see worthSkippingHoles): walk data extents, never read the holes */
  sparse: boolean
}

/**
 * Below this many bytes of holes a file is read straight through, holes as zeros: that costs less than
 * walking its extents, and lets the native batches (native-run.ts) take it. Binaries unpacked by dpkg
 * often have a few KiB of holes; an image file or a preallocated database has gigabytes.
 */
const SKIP_HOLES_FROM = 1024 * 1024

/** Whether a file's holes are worth skipping rather than reading; the chunks come out the same either way. */
export function worthSkippingHoles(size: number, allocated: number): boolean {
  return size - allocated >= SKIP_HOLES_FROM
}

export interface FileResult {
  index: number
  chunks: ChunkRef[]
  /** the whole content of a file small enough to live in the tree */
  inline?: Buffer
}

/** What a worker is handed: one file cut on its own, or a group of small files cut together. */
export type Job = FileJob | PackJob

export function jobBytes(job: Job): number {
  return 'files' in job ? job.files.reduce((a, f) => a + f.size, 0) : job.size
}

export interface ProcessorStats {
  chunksWritten: number
  bytesWritten: number
}

const BLOCK = 4 * 1024 * 1024

/** Adds `count` whole chunks to a file's refs; a run of one chunk repeated is one ref with a count. */
export function appendRef(refs: ChunkRef[], id: Buffer, length: number, count: number): void {
  const last = refs.at(-1)
  if (last && last.length === length && last.id.equals(id)) last.count += count
  else refs.push({ id, offset: 0, length, count })
}

/** Cuts jobs one after another in this thread: where there are no workers, and for sparse files. */
export async function processInThisThread(
  jobs: Job[], params: ChunkerParams, store: Store | null, onBytes?: (bytes: number) => void,
): Promise<{ results: FileResult[]; stats: ProcessorStats }> {
  const processor = new FileProcessor(params, store)
  const results: FileResult[] = []
  for (const job of jobs) {
    for (const r of await processor.processJobs([job])) results[r.index] = r
    onBytes?.(jobBytes(job))
  }
  await processor.drain()
  return { results, stats: processor.stats }
}

/**
 * Cuts files into chunks, hashes them and, given a store, writes the ones it lacks. Reads are
 * synchronous on purpose: this runs in a worker thread (ingest/worker-pool.ts) whose only job is
 * this, where a blocking read(2) or compression costs less than an async round trip would.
 */
export class FileProcessor {
  readonly stats: ProcessorStats = { chunksWritten: 0, bytesWritten: 0 }
  private readonly chunker: Chunker
  private readonly seen = new Set<string>()
  private readonly window = new TaskWindow(16)
  private readonly inlineMax: number
  /** one read buffer for every file: chunks are copied out only when they must be stored */
  private readonly readBuffer = Buffer.allocUnsafeSlow(BLOCK)
  /**
   * one buffer for every pack group, grown to the largest (at most GROUP_MAX_BYTES): a fresh one per
   * group cost a page fault and a zeroed page every 4 KiB, more than the reads themselves
   */
  private packBuffer = Buffer.allocUnsafeSlow(0)

  constructor(params: ChunkerParams, private readonly store: Store | null) {
    this.chunker = new Chunker(params)
    this.inlineMax = params.inlineMax ?? 0
  }

  /**
   * Cuts a batch of jobs; chunk writes may still be in flight when it returns (see drain). Every file
   * of the batch is opened and announced to the kernel (willNeed) before the first is read, so a
   * cold disk reads them all at once while they are cut one by one.
   */
  async processJobs(jobs: Job[]): Promise<FileResult[]> {
    const fds = new Map<FileJob, number>()
    try {
      for (const job of jobs) {
        for (const f of 'files' in job ? job.files : [job]) {
          const fd = openSource(f, f.source.toString())
          fds.set(f, fd)
          native?.willNeed(fd)
        }
      }
      const results: FileResult[] = []
      for (const job of jobs) {
        if ('files' in job) results.push(...(await this.processPack(job, fds)))
        else results.push(await this.process(job, fds.get(job)!))
      }
      return results
    } finally {
      for (const fd of fds.values()) fs.closeSync(fd)
    }
  }

  /** Cuts one file, open at fd. */
  private async process(job: FileJob, fd: number): Promise<FileResult> {
    const what = job.source.toString()
    const refs: ChunkRef[] = []
    const add = (id: Buffer, length: number, count: number): void => appendRef(refs, id, length, count)
    try {
      if (job.size <= this.inlineMax && job.size > 0) {
        const inline = Buffer.allocUnsafe(job.size)
        readInto(fd, job, inline, 0, what)
        return { index: job.index, chunks: [], inline }
      }
      for (const c of cutFile(fd, job, this.chunker, this.readBuffer, what)) {
        if (c.data === null) {
          const id = zeroChunkId(c.length)
          await this.offer(id, () => Buffer.alloc(c.length))
          add(id, c.length, c.count)
        } else {
          const id = hashBytes(c.data)
          const data = c.data
          await this.offer(id, () => data)
          add(id, c.length, 1)
        }
      }
    } catch (err) {
      if (err instanceof SnapdirError) throw err
      throw new SnapdirError('ERR_SOURCE', `cannot read ${what}: ${(err as Error).message}`, { cause: err })
    }
    return { index: job.index, chunks: refs }
  }

  /**
   * Cuts a group of small files as one stream (see pack-groups.ts): each file's refs are slices of the
   * group's chunks, so a few dozen files share a handful of stored objects.
   */
  private async processPack(pack: PackJob, fds: Map<FileJob, number>): Promise<FileResult[]> {
    const total = pack.files.reduce((a, f) => a + f.size, 0)
    if (this.packBuffer.length < total) this.packBuffer = Buffer.allocUnsafeSlow(Math.max(total, 2 * this.packBuffer.length))
    // cutGroup is done with the stream when it returns: offer() writes or copies each chunk first
    const stream = this.packBuffer.subarray(0, total)
    let at = 0
    for (const f of pack.files) {
      const what = f.source.toString()
      try {
        readInto(fds.get(f)!, f, stream, at, what)
      } catch (err) {
        if (err instanceof SnapdirError) throw err
        throw new SnapdirError('ERR_SOURCE', `cannot read ${what}: ${(err as Error).message}`, { cause: err })
      }
      at += f.size
    }
    const refs = await cutGroup(this.chunker, stream, pack.files.map((f) => f.size), (id, data) => this.offer(id, () => data))
    return pack.files.map((f, i) => ({ index: f.index, chunks: refs[i]! }))
  }

  /** Waits for every chunk write; rethrows the first failure. */
  drain(): Promise<void> {
    return this.window.drain()
  }

  private async offer(idBytes: Buffer, data: () => Buffer): Promise<void> {
    const store = this.store
    if (store === null) return
    const id = toHex(idBytes)
    if (this.seen.has(id)) return
    this.seen.add(id)
    const key = objectKey('chunk', id)
    if (isLocalChunkStore(store)) {
      // written before the read buffer it views is reused: no copy
      const written = store.addObjectSync(key, data())
      if (written > 0) {
        this.stats.chunksWritten++
        this.stats.bytesWritten += written
      }
      return
    }
    // copy: the data views the read buffer, which the next read overwrites
    const raw = Buffer.from(data())
    await this.window.add(async () => {
      if (await store.has(key)) return
      const encoded = encodeObject(raw)
      await store.put(key, encoded)
      this.stats.chunksWritten++
      this.stats.bytesWritten += encoded.length
    })
  }
}

function openSource(job: FileJob, what: string): number {
  try {
    // O_NOFOLLOW: a symlink swapped in since the scan is not followed out of the tree
    return fs.openSync(job.source, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
  } catch (err) {
    throw new SnapdirError('ERR_SOURCE', `cannot read ${what}: ${(err as Error).message}`, { cause: err })
  }
}

/** Reads a whole (small) file into `into` at `at`. */
function readInto(fd: number, job: FileJob, into: Buffer, at: number, what: string): void {
  let got = 0
  while (got < job.size) {
    const n = fs.readSync(fd, into, at + got, job.size - got, got)
    if (n === 0) throw new SnapdirError('ERR_SOURCE', `${what} shrank while being read (expected ${job.size} bytes)`)
    got += n
  }
}

/** Reads and cuts one file; holes (sparse files) are fed as lengths, never read. */
/** Yielded chunks view `buffer` and are valid only until the generator resumes. */
function* cutFile(fd: number, job: FileJob, chunker: Chunker, buffer: Buffer, what: string): Generator<RawChunk> {
  const stream = new ChunkStream(chunker)
  for (const piece of extents(fd, job.size, job.sparse)) {
    if (piece.hole) {
      yield* stream.pushZeros(piece.length)
      continue
    }
    let pos = piece.start
    const end = piece.start + piece.length
    while (pos < end) {
      const want = Math.min(BLOCK, end - pos)
      const buf = buffer.subarray(0, want)
      let got = 0
      while (got < want) {
        const n = fs.readSync(fd, buf, got, want - got, pos + got)
        if (n === 0) throw new SnapdirError('ERR_SOURCE', `${what} shrank while being read (expected ${job.size} bytes)`)
        got += n
      }
      pos += want
      yield* stream.push(buf)
    }
  }
  yield* stream.end()
}

interface Extent {
  start: number
  length: number
  hole: boolean
}

function* extents(fd: number, size: number, sparse: boolean): Generator<Extent> {
  if (!sparse || !native) {
    if (size > 0) yield { start: 0, length: size, hole: false }
    return
  }
  let pos = 0
  while (pos < size) {
    let data = native.seekData(fd, pos)
    if (data < 0 || data > size) data = size
    if (data > pos) yield { start: pos, length: data - pos, hole: true }
    if (data >= size) return
    let hole = native.seekHole(fd, data)
    if (hole < 0 || hole > size) hole = size
    yield { start: data, length: hole - data, hole: false }
    pos = hole
  }
}
