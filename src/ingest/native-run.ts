import os from 'node:os'
import { Chunker, defaultImplementation } from '../chunk/chunker.js'
import { CUT_JOB, CUT_WHERE, native, type CutFilesError } from '../chunk/native.js'
import { ZSTD_LEVEL } from '../format/object.js'
import type { ChunkRef } from '../format/tree.js'
import { isLocalChunkStore, type Store } from '../store/store.js'
import { internalError, SnapdirError, sourceError } from '../util/errors.js'
import { appendRef, type ChunkStats } from './chunk-sink.js'
import { processInThisThread } from './file-processor.js'
import { JobQueue } from './job-queue.js'
import type { FileJob, Job } from './jobs.js'
import { groupRefs, type GroupChunk } from './pack-groups.js'
import type { PoolRun, ProcessedFiles, RunOptions } from './pool-run.js'

const { whole: KIND_WHOLE, inline: KIND_INLINE, group: KIND_GROUP } = CUT_JOB

/** Whether push's files can be cut natively for this store: the native chunker, and a local store or none. */
export function nativeRunApplies(store: Store | null): boolean {
  return native !== null && defaultImplementation() === 'native' && (store === null || isLocalChunkStore(store))
}

/**
 * How many batches run at once: one per core and one more (or SNAPDIR_WORKERS), so a core whose batch
 * just ended, or waits on the disk, finds the next one already queued rather than waiting for this
 * thread to hand it out. The CLI sizes libuv's pool to match (cli/thread-pool.ts).
 */
function defaultConcurrency(): number {
  const fromEnv = Number(process.env.SNAPDIR_WORKERS)
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : os.availableParallelism() + 1
}

/**
 * Cuts, hashes and stores files with no JS thread in the loop: batches of jobs go to native.cutFiles
 * (native/file-batch.c), which works through each on a libuv pool thread, a few batches at a time.
 * Files with large holes (skipped, not read) are left to the JS path, in this thread, which takes them
 * once the scan is done, while the batches run.
 */
export class NativeRun implements PoolRun {
  readonly done: Promise<ProcessedFiles>
  private readonly chunker: Chunker
  private readonly queue = new JobQueue()
  private readonly sparse: FileJob[] = []
  private inFlight = 0
  private sparseRun: Promise<void> | null = null
  private failure: unknown = null
  private readonly stats: ChunkStats = { chunksWritten: 0, bytesWritten: 0 }
  private settle!: { resolve: (p: ProcessedFiles) => void; reject: (err: unknown) => void }

  constructor(private readonly options: RunOptions, private readonly concurrency = defaultConcurrency()) {
    this.chunker = new Chunker(options.params, 'native')
    this.done = new Promise<ProcessedFiles>((resolve, reject) => (this.settle = { resolve, reject }))
    this.done.catch(() => {}) // awaited by the caller later, perhaps after a scan that failed first
  }

  add(jobs: Job[]): void {
    for (const j of jobs) {
      if (!('files' in j) && j.sparse) this.sparse.push(j)
      else this.queue.push([j])
    }
    this.pump()
  }

  finish(): void {
    this.sparseRun = this.cutSparse().catch((err: unknown) => void (this.failure ??= err))
    this.pump()
  }

  private pump(): void {
    while (this.failure === null && this.inFlight < this.concurrency && !this.queue.empty) {
      const { jobs: batch, bytes } = this.queue.take()
      this.inFlight++
      this.cut(batch)
        .then(() => this.options.onBytes?.(bytes), (err: unknown) => void (this.failure ??= err))
        .finally(() => {
          this.inFlight--
          this.pump()
        })
    }
    if (this.inFlight > 0) return
    if (this.sparseRun && (this.queue.empty || this.failure !== null)) {
      // settles once the sparse files are done too: nothing is left writing after it
      void this.sparseRun.then(() => {
        if (this.failure !== null) this.settle.reject(this.failure)
        else this.settle.resolve({ stats: this.stats })
      })
    } else if (this.failure !== null) this.settle.reject(this.failure)
  }

  private async cut(batch: Job[]): Promise<void> {
    const files: FileJob[] = []
    const triples: number[] = []
    const inlineMax = this.options.params.inlineMax ?? 0
    for (const job of batch) {
      if ('files' in job) {
        triples.push(KIND_GROUP, files.length, job.files.length)
        files.push(...job.files)
      } else {
        triples.push(job.size > 0 && job.size <= inlineMax ? KIND_INLINE : KIND_WHOLE, files.length, 1)
        files.push(job)
      }
    }
    const store = this.options.store
    const sink = isLocalChunkStore(store) ? store.localChunks : null
    let r
    try {
      r = await native!.cutFiles({
        chunker: this.chunker.handle!, paths: files.map((f) => f.source), sizes: Float64Array.from(files, (f) => f.size),
        jobs: Uint32Array.from(triples), chunkDir: sink?.dir ?? null, tmpTag: sink?.tmpTag ?? '', level: ZSTD_LEVEL,
      })
    } catch (err) {
      throw this.describe(err)
    }
    this.stats.chunksWritten += r.written[0]!
    this.stats.bytesWritten += r.written[1]!
    let c = 0 // chunk cursor over the batch's lengths and IDs
    let inlineAt = 0
    const chunk = (i: number): { id: Buffer; length: number } => ({ id: r.ids.subarray(32 * i, 32 * i + 32), length: r.lengths[i]! })
    batch.forEach((job, j) => {
      const count = r.counts[j]!
      if ('files' in job) {
        const chunks: GroupChunk[] = []
        for (let i = 0, pos = 0; i < count; i++) {
          const { id, length } = chunk(c + i)
          chunks.push({ id, start: pos, end: pos + length })
          pos += length
        }
        const refs = groupRefs(chunks, job.files.map((f) => f.size))
        job.files.forEach((f, k) => this.options.onResult?.({ index: f.index, chunks: refs[k]! }))
      } else if (triples[3 * j] === KIND_INLINE) {
        this.options.onResult?.({ index: job.index, chunks: [], inline: r.inline.subarray(inlineAt, inlineAt + job.size) })
        inlineAt += job.size
      } else {
        const refs: ChunkRef[] = []
        for (let i = 0; i < count; i++) {
          const { id, length } = chunk(c + i)
          appendRef(refs, id, length, 1)
        }
        this.options.onResult?.({ index: job.index, chunks: refs })
      }
      c += count
    })
  }

  /** The native error as snapdir reports it: the source file or the store, named. */
  private describe(err: unknown): SnapdirError {
    const e = err as CutFilesError
    // out of memory is this process's trouble, whichever side the allocation was for
    if (e.syscall === 'malloc') return internalError('a native batch', err)
    if (e.where === CUT_WHERE.store || e.where === CUT_WHERE.compress) {
      return new SnapdirError('ERR_STORE_IO', `store ${this.options.store?.url}: cannot write a chunk: ${e.message}`, { cause: err })
    }
    const what = e.path ?? 'a source file'
    if (e.where === CUT_WHERE.shrank) return sourceError(what, e.message, { cause: err })
    return sourceError(what, err)
  }

  private async cutSparse(): Promise<void> {
    if (this.sparse.length === 0) return
    await Promise.resolve() // lets finish() hand out the batches first: the sparse files then hold this thread
    const { results, stats } = await processInThisThread(this.sparse, this.options.params, this.options.store, this.options.onBytes)
    for (const r of results) if (r) this.options.onResult?.(r)
    this.stats.chunksWritten += stats.chunksWritten
    this.stats.bytesWritten += stats.bytesWritten
  }
}
