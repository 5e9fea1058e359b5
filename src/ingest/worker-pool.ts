// The threads push cuts with: worker threads (chunk-worker.ts), this thread where there are none, or
// the native batches (native-run.ts) where they apply; one PoolRun (pool-run.ts) whichever it is.
import os from 'node:os'
import { Worker } from 'node:worker_threads'
import type { Store } from '../store/store.js'
import { internalError, SnapdirError } from '../util/errors.js'
import type { ChunkStats } from './chunk-sink.js'
import { processInThisThread } from './file-processor.js'
import { JobQueue } from './job-queue.js'
import { plainJob, type FileResult, type Job } from './jobs.js'
import { NativeRun, nativeRunApplies } from './native-run.js'
import type { PoolRun, ProcessedFiles, RunOptions } from './pool-run.js'
import { fromWire, type FromWorker, type ToWorker } from './worker-protocol.js'

const workerUrl = new URL('./chunk-worker.js', import.meta.url)
const canUseWorkers = !import.meta.url.endsWith('.ts')

/**
 * One per core, or SNAPDIR_WORKERS; none (cut in this thread) when running from TypeScript sources,
 * as under vitest.
 */
export function defaultWorkers(): number {
  if (!canUseWorkers) return 0
  const fromEnv = Number(process.env.SNAPDIR_WORKERS)
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : Math.max(1, os.availableParallelism())
}

/**
 * The pool for a push to `store` (null: IDs only): with no worker threads when the files will be cut
 * natively (native-run.ts), so none boot for nothing.
 */
export function poolFor(store: Store | null): WorkerPool {
  return new WorkerPool(nativeRunApplies(store) ? 0 : defaultWorkers())
}

/**
 * Worker threads that read, cut, hash, compress and store files, so push uses every core. Started
 * before the source is scanned, so their start-up (loading modules) overlaps the scan; they learn the
 * chunker parameters and the store when start() is called. One run per pool; whoever makes a pool
 * closes it (close() is idempotent, and ends the workers whatever state they are in).
 */
export class WorkerPool {
  private readonly workers: Worker[] = []
  private readonly early: Array<Error | null> = []
  private started = false
  private closing: Promise<void> | null = null

  constructor(size: number = defaultWorkers()) {
    const n = canUseWorkers ? size : 0
    for (let i = 0; i < n; i++) {
      const w = new Worker(workerUrl)
      this.early.push(null)
      // a worker that fails before start() is reported by the run
      w.on('error', (err) => (this.early[i] ??= err))
      this.workers.push(w)
    }
  }

  /** Starts the workers (or native batches, or this thread) on a stream of jobs: see PoolRun. */
  start(options: RunOptions): PoolRun {
    if (this.closing) throw new SnapdirError('ERR_INTERNAL', 'internal error: the worker pool is closed')
    if (this.started) throw new SnapdirError('ERR_INTERNAL', 'internal error: the worker pool has run already')
    this.started = true
    if (nativeRunApplies(options.store)) return new NativeRun(options)
    if (this.workers.length === 0) return new InlineRun(options)
    return new WorkerRun(this.workers, this.early, options)
  }

  /** Ends the workers, whatever they are doing; the same promise however often it is called. */
  close(): Promise<void> {
    this.closing ??= Promise.all(this.workers.splice(0).map((w) => w.terminate())).then(() => undefined)
    return this.closing
  }
}

class WorkerRun implements PoolRun {
  readonly done: Promise<ProcessedFiles>
  private readonly queue = new JobQueue()
  private finished = false
  private failed = false
  /** workers waiting for jobs, with what feeds them */
  private readonly idle = new Set<() => void>()
  private readonly stats: ChunkStats = { chunksWritten: 0, bytesWritten: 0 }

  constructor(workers: Worker[], early: Array<Error | null>, private readonly options: RunOptions) {
    this.done = Promise.allSettled(workers.map((w, i) => this.drive(w, early[i] ?? null))).then((settled) => {
      const failed = settled.find((r) => r.status === 'rejected')
      if (failed) throw failed.reason
      return { stats: this.stats }
    })
    this.done.catch(() => {}) // awaited by the caller later, perhaps after a scan that failed first
  }

  add(jobs: Job[]): void {
    this.queue.push(jobs)
    this.wake()
  }

  finish(): void {
    this.finished = true
    this.wake()
  }

  private wake(): void {
    const waiting = [...this.idle]
    this.idle.clear()
    for (const feed of waiting) feed()
  }

  private drive(w: Worker, early: Error | null): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false
      const fail = (err: Error): void => {
        if (settled) return
        settled = true
        this.failed = true // the other workers finish what they hold and stop
        this.wake()
        reject(err)
      }
      if (early) return fail(internalError('a chunk worker', early))
      const post = (m: ToWorker): void => w.postMessage(m)
      const feed = (): void => {
        if (settled) return
        const b = this.failed ? [] : this.queue.take().jobs
        if (b.length > 0) post({ type: 'jobs', jobs: b.map(plainJob) })
        else if (this.finished || this.failed) post({ type: 'finish' })
        else this.idle.add(feed)
      }
      w.on('message', (m: FromWorker) => {
        if (m.type === 'ready') feed()
        else if (m.type === 'results') {
          for (const r of m.results) this.options.onResult?.(revive(r))
          this.options.onBytes?.(m.bytes)
          feed()
        } else if (m.type === 'finished') {
          this.stats.chunksWritten += m.stats.chunksWritten
          this.stats.bytesWritten += m.stats.bytesWritten
          settled = true
          resolve()
        } else fail(fromWire(m.error))
      })
      // an exception the worker did not catch, or its heap exhausted (ERR_WORKER_OUT_OF_MEMORY)
      w.on('error', (err) => fail(internalError('a chunk worker', err)))
      w.on('exit', (code) => fail(new SnapdirError('ERR_INTERNAL', `internal error: a chunk worker exited unexpectedly (code ${code})`)))
      post({ type: 'init', params: this.options.params, store: this.options.store?.spec ?? null })
    })
  }
}

/** Without workers (running from TypeScript sources): cuts in this thread once the jobs are all known. */
class InlineRun implements PoolRun {
  readonly done: Promise<ProcessedFiles>
  private readonly jobs: Job[] = []
  private release!: () => void

  constructor(options: RunOptions) {
    const allAdded = new Promise<void>((resolve) => (this.release = resolve))
    this.done = allAdded.then(async () => {
      const processed = await processInThisThread(this.jobs, options.params, options.store, options.onBytes)
      for (const r of processed.results) if (r) options.onResult?.(r)
      return { stats: processed.stats }
    })
    this.done.catch(() => {})
  }

  add(jobs: Job[]): void {
    this.jobs.push(...jobs)
  }

  finish(): void {
    this.release()
  }
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength)
}

function revive(r: FileResult): FileResult {
  const out: FileResult = { index: r.index, chunks: r.chunks.map((c) => ({ ...c, id: asBuffer(c.id) })) }
  if (r.inline) out.inline = asBuffer(r.inline)
  return out
}

