import os from 'node:os'
import { Worker } from 'node:worker_threads'
import type { ChunkerParams } from '../chunk/params.js'
import type { Store, StoreSpec } from '../store/store.js'
import { SnapdirError, type ErrorCode } from '../util/errors.js'
import { FileProcessor, jobBytes, type FileResult, type Job, type ProcessorStats } from './file-processor.js'

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
}

export interface ProcessedFiles {
  /** by file index */
  results: FileResult[]
  stats: ProcessorStats
}

// A batch is a few dozen small jobs or one large one: few messages, and no worker left idle at the end.
const BATCH_JOBS = 64
const BATCH_BYTES = 8 * 1024 * 1024

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

  async run(jobs: Job[], fileCount: number, options: RunOptions): Promise<ProcessedFiles> {
    if (this.workers.length === 0) return processInline(jobs, fileCount, options)
    const results: FileResult[] = new Array<FileResult>(fileCount)
    const stats: ProcessorStats = { chunksWritten: 0, bytesWritten: 0 }
    let next = 0
    const batch = (): Job[] => {
      const out: Job[] = []
      let bytes = 0
      while (next < jobs.length && out.length < BATCH_JOBS && (out.length === 0 || bytes < BATCH_BYTES)) {
        const j = jobs[next++]!
        out.push(j)
        bytes += jobBytes(j)
      }
      return out
    }

    const drive = (w: Worker, i: number): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        let settled = false
        const fail = (err: Error): void => {
          if (settled) return
          settled = true
          next = jobs.length // the other workers finish what they hold and stop
          reject(err)
        }
        const early = this.early[i]
        if (early) return fail(early)
        const post = (m: ToWorker): void => w.postMessage(m)
        const feed = (): void => {
          const b = batch()
          post(b.length > 0 ? { type: 'jobs', jobs: b } : { type: 'finish' })
        }
        w.on('message', (m: FromWorker) => {
          if (m.type === 'ready') feed()
          else if (m.type === 'results') {
            for (const r of m.results) results[r.index] = revive(r)
            options.onBytes?.(m.bytes)
            feed()
          } else if (m.type === 'finished') {
            stats.chunksWritten += m.stats.chunksWritten
            stats.bytesWritten += m.stats.bytesWritten
            settled = true
            resolve()
          } else fail(new SnapdirError(m.code, m.message))
        })
        w.on('error', (err) => fail(err))
        w.on('exit', (code) => fail(new SnapdirError('ERR_SOURCE', `chunk worker exited with code ${code}`)))
        post({ type: 'init', params: options.params, store: options.store?.spec ?? null })
      })

    const settled = await Promise.allSettled(this.workers.map(drive))
    const failed = settled.find((r) => r.status === 'rejected')
    if (failed) throw failed.reason
    return { results, stats }
  }

  async close(): Promise<void> {
    const ws = this.workers.splice(0)
    await Promise.all(ws.map((w) => w.terminate()))
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

async function processInline(jobs: Job[], fileCount: number, options: RunOptions): Promise<ProcessedFiles> {
  const processor = new FileProcessor(options.params, options.store)
  const results: FileResult[] = new Array<FileResult>(fileCount)
  for (const job of jobs) {
    for (const r of await processor.processJob(job)) results[r.index] = r
    options.onBytes?.(jobBytes(job))
  }
  await processor.drain()
  return { results, stats: processor.stats }
}
