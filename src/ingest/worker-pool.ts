import os from 'node:os'
import { Worker } from 'node:worker_threads'
import type { ChunkerParams } from '../chunk/params.js'
import type { Store, StoreSpec } from '../store/store.js'
import { SnapdirError, type ErrorCode } from '../util/errors.js'
import { processInThisThread, type FileResult, type Job, type ProcessorStats } from './file-processor.js'
import { JobQueue } from './job-queue.js'
import { NativeRun, nativeRunApplies } from './native-run.js'

export type ToWorker =
  | { type: 'init'; params: ChunkerParams; store: StoreSpec | null }
  | { type: 'jobs'; jobs: Job[] }
  | { type: 'finish' }
export type FromWorker =
  | { type: 'ready' }
  | { type: 'results'; results: FileResult[]; bytes: number }
  | { type: 'finished'; stats: ProcessorStats }
  | { type: 'error'; code: ErrorCode; message: string }

export interface RunOptions {
  params: ChunkerParams
  /** where chunks go; null only computes IDs */
  store: Store | null
  onBytes?: (bytes: number) => void
  /** each file's result as soon as it is known, in no particular order */
  onResult?: (r: FileResult) => void
}

export interface ProcessedFiles {
  /** by file index */
  results: FileResult[]
  stats: ProcessorStats
}


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
 * chunker parameters and the store when run() is called. Used once; close() always.
 */
export class WorkerPool {
  private readonly workers: Worker[] = []
  private readonly early: Array<Error | null> = []

  constructor(size: number = defaultWorkers()) {
    const n = canUseWorkers ? size : 0
    for (let i = 0; i < n; i++) {
      const w = new Worker(workerUrl)
      this.early.push(null)
      // a worker that fails before run() is reported by run()
      w.on('error', (err) => (this.early[i] ??= err))
      this.workers.push(w)
    }
  }

  /**
   * Starts the workers on a stream of jobs: add() hands them more as they become known (push adds
   * large files while the scan is still finding the rest), finish() says there are no more, and
   * `done` settles when every job is cut. Jobs carry indexes into the results.
   */
  start(options: RunOptions): PoolRun {
    if (nativeRunApplies(options.store)) return new NativeRun(options)
    if (this.workers.length === 0) return new InlineRun(options)
    return new WorkerRun(this.workers, this.early, options)
  }

  /** Cuts a known list of jobs. */
  async run(jobs: Job[], options: RunOptions): Promise<ProcessedFiles> {
    const run = this.start(options)
    run.add(jobs)
    run.finish()
    return run.done
  }

  async close(): Promise<void> {
    const ws = this.workers.splice(0)
    await Promise.all(ws.map((w) => w.terminate()))
  }
}

export interface PoolRun {
  add(jobs: Job[]): void
  finish(): void
  /** rejects with the first failure; always handled, so it may be awaited late */
  readonly done: Promise<ProcessedFiles>
}

class WorkerRun implements PoolRun {
  readonly done: Promise<ProcessedFiles>
  private readonly queue = new JobQueue()
  private finished = false
  private failed = false
  /** workers waiting for jobs, with what feeds them */
  private readonly idle = new Set<() => void>()
  private readonly results: FileResult[] = []
  private readonly stats: ProcessorStats = { chunksWritten: 0, bytesWritten: 0 }

  constructor(workers: Worker[], early: Array<Error | null>, private readonly options: RunOptions) {
    this.done = Promise.allSettled(workers.map((w, i) => this.drive(w, early[i] ?? null))).then((settled) => {
      const failed = settled.find((r) => r.status === 'rejected')
      if (failed) throw failed.reason
      return { results: this.results, stats: this.stats }
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
      if (early) return fail(early)
      const post = (m: ToWorker): void => w.postMessage(m)
      const feed = (): void => {
        if (settled) return
        const b = this.failed ? [] : this.queue.take().jobs
        if (b.length > 0) post({ type: 'jobs', jobs: b })
        else if (this.finished || this.failed) post({ type: 'finish' })
        else this.idle.add(feed)
      }
      w.on('message', (m: FromWorker) => {
        if (m.type === 'ready') feed()
        else if (m.type === 'results') {
          for (const r of m.results) record(this.results, revive(r), this.options)
          this.options.onBytes?.(m.bytes)
          feed()
        } else if (m.type === 'finished') {
          this.stats.chunksWritten += m.stats.chunksWritten
          this.stats.bytesWritten += m.stats.bytesWritten
          settled = true
          resolve()
        } else fail(new SnapdirError(m.code, m.message))
      })
      w.on('error', (err) => fail(err))
      w.on('exit', (code) => fail(new SnapdirError('ERR_SOURCE', `chunk worker exited with code ${code}`)))
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
      return processed
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

/** Keeps a file's result, and tells the run's caller (RunOptions.onResult). */
export function record(results: FileResult[], r: FileResult, options: RunOptions): void {
  results[r.index] = r
  options.onResult?.(r)
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength)
}

function revive(r: FileResult): FileResult {
  const out: FileResult = { index: r.index, chunks: r.chunks.map((c) => ({ ...c, id: asBuffer(c.id) })) }
  if (r.inline) out.inline = asBuffer(r.inline)
  return out
}

