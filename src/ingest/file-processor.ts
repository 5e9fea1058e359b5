// Directory push's reader: opens and reads the source files of each job and hands their bytes to the
// one chunk sink (chunk-sink.ts), which cuts, hashes and stores them.
import fs from 'node:fs'
import { Chunker } from '../chunk/chunker.js'
import { native } from '../chunk/native.js'
import type { ChunkerParams } from '../chunk/params.js'
import type { Store } from '../store/store.js'
import { sourceError } from '../util/errors.js'
import { ChunkSink, type ChunkStats } from './chunk-sink.js'
import { jobBytes, type FileJob, type FileResult, type Job, type PackJob } from './jobs.js'

const BLOCK = 4 * 1024 * 1024

/** Cuts jobs one after another in this thread: where there are no workers, and for sparse files. */
export async function processInThisThread(
  jobs: Job[], params: ChunkerParams, store: Store | null, onBytes?: (bytes: number) => void,
): Promise<{ results: FileResult[]; stats: ChunkStats }> {
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
 * Reads files and cuts them into chunks, storing the ones the store lacks (given one). Reads are
 * synchronous on purpose: this runs in a worker thread (ingest/worker-pool.ts) whose only job is
 * this, where a blocking read(2) or compression costs less than an async round trip would.
 */
export class FileProcessor {
  private readonly sink: ChunkSink
  private readonly inlineMax: number
  /** one read buffer for every file: chunks are copied out only when they must be stored */
  private readonly readBuffer = Buffer.allocUnsafeSlow(BLOCK)
  /**
   * one buffer for every pack group, grown to the largest (at most GROUP_MAX_BYTES): a fresh one per
   * group cost a page fault and a zeroed page every 4 KiB, more than the reads themselves
   */
  private packBuffer = Buffer.allocUnsafeSlow(0)

  constructor(params: ChunkerParams, store: Store | null) {
    this.sink = new ChunkSink(new Chunker(params), store)
    this.inlineMax = params.inlineMax ?? 0
  }

  get stats(): ChunkStats {
    return this.sink.stats
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
          const fd = openSource(f)
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

  /** Waits for every chunk write; rethrows the first failure. */
  drain(): Promise<void> {
    return this.sink.drain()
  }

  /** Cuts one file, open at fd. */
  private async process(job: FileJob, fd: number): Promise<FileResult> {
    if (job.size <= this.inlineMax && job.size > 0) {
      const inline = Buffer.allocUnsafe(job.size)
      readFully(fd, job, inline, 0, job.size, 0)
      return { index: job.index, chunks: [], inline }
    }
    const file = this.sink.wholeFile()
    const buffer = this.readBuffer
    for (const piece of extents(fd, job)) {
      if (piece.hole) {
        await file.zeros(piece.length)
        continue
      }
      for (let pos = piece.start, end = piece.start + piece.length; pos < end; ) {
        const want = Math.min(BLOCK, end - pos)
        readFully(fd, job, buffer, 0, want, pos)
        pos += want
        await file.push(buffer.subarray(0, want))
      }
    }
    return { index: job.index, chunks: await file.end() }
  }

  /**
   * Cuts a group of small files as one stream (see pack-groups.ts): each file's refs are slices of the
   * group's chunks, so a few dozen files share a handful of stored objects.
   */
  private async processPack(pack: PackJob, fds: Map<FileJob, number>): Promise<FileResult[]> {
    const total = jobBytes(pack)
    if (this.packBuffer.length < total) this.packBuffer = Buffer.allocUnsafeSlow(Math.max(total, 2 * this.packBuffer.length))
    // cutGroup is done with the stream when it returns: the sink writes or copies each chunk first
    const stream = this.packBuffer.subarray(0, total)
    let at = 0
    for (const f of pack.files) {
      readFully(fds.get(f)!, f, stream, at, f.size, 0)
      at += f.size
    }
    const refs = await this.sink.cutGroup(stream, pack.files.map((f) => f.size))
    return pack.files.map((f, i) => ({ index: f.index, chunks: refs[i]! }))
  }
}

function openSource(job: FileJob): number {
  try {
    // O_NOFOLLOW: a symlink swapped in since the scan is not followed out of the tree
    return fs.openSync(job.source, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
  } catch (err) {
    throw sourceError(job.source.toString(), err)
  }
}

/** Reads `length` bytes of the file at `position` into `into` at `at`. */
function readFully(fd: number, job: FileJob, into: Buffer, at: number, length: number, position: number): void {
  let got = 0
  while (got < length) {
    let n
    try {
      n = fs.readSync(fd, into, at + got, length - got, position + got)
    } catch (err) {
      throw sourceError(job.source.toString(), err)
    }
    if (n === 0) throw sourceError(job.source.toString(), `shrank while being read (expected ${job.size} bytes)`)
    got += n
  }
}

interface Extent {
  start: number
  length: number
  hole: boolean
}

/** A file's content in order: all of it, or for a sparse file its data extents and holes. */
function* extents(fd: number, job: FileJob): Generator<Extent> {
  const size = job.size
  if (!job.sparse || !native) {
    if (size > 0) yield { start: 0, length: size, hole: false }
    return
  }
  const seek = (how: 'seekData' | 'seekHole', at: number): number => {
    try {
      const to = native![how](fd, at)
      return to < 0 || to > size ? size : to
    } catch (err) {
      throw sourceError(job.source.toString(), err)
    }
  }
  let pos = 0
  while (pos < size) {
    const data = seek('seekData', pos)
    if (data > pos) yield { start: pos, length: data - pos, hole: true }
    if (data >= size) return
    const hole = seek('seekHole', data)
    yield { start: data, length: hole - data, hole: false }
    pos = hole
  }
}
