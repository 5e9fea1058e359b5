import os from 'node:os'
import { Worker } from 'node:worker_threads'
import type { ChunkerParams } from '../chunk/params.js'
import type { Store } from '../store/store.js'
import { SnapdirError, type ErrorCode } from '../util/errors.js'
import { FileProcessor, jobBytes, type FileJob, type FileResult, type Job, type ProcessorStats } from './file-processor.js'

export type ToWorker = { type: 'jobs'; jobs: Job[] } | { type: 'finish' }
export type FromWorker =
  | { type: 'ready' }
  | { type: 'results'; results: FileResult[]; bytes: number }
  | { type: 'finished'; stats: ProcessorStats }
  | { type: 'error'; code: ErrorCode; message: string }

export interface ProcessFilesOptions {
  params: ChunkerParams
  /** where chunks go; null only computes IDs */
  store: Store | null
  /** worker threads; 0 cuts in this thread (always so when running from TypeScript sources) */
  workers?: number
  onBytes?: (bytes: number) => void
}

// A batch is a few dozen small files or one large one: few messages, and no worker left idle at the end.
const BATCH_FILES = 64
const BATCH_BYTES = 8 * 1024 * 1024

const workerUrl = new URL('./chunk-worker.js', import.meta.url)
const canUseWorkers = !import.meta.url.endsWith('.ts')

export function defaultWorkers(): number {
  return canUseWorkers ? Math.max(1, os.availableParallelism()) : 0
}

/**
 * Cuts the given jobs' files into chunks (storing new ones), spreading them over worker threads: each
 * worker reads, cuts, hashes and compresses, so push uses every core. Returns each file's result by
 * its index (0 .. fileCount-1).
 */
export interface ProcessedFiles {
  /** by job index */
  results: FileResult[]
  stats: ProcessorStats
}

export async function processFiles(jobs: Job[], fileCount: number, options: ProcessFilesOptions): Promise<ProcessedFiles> {
  const workers = Math.min(options.workers ?? defaultWorkers(), Math.max(1, Math.ceil(jobs.length / BATCH_FILES)))
  if (workers <= 0 || !canUseWorkers) return processInline(jobs, fileCount, options)

  const results: FileResult[] = new Array<FileResult>(fileCount)
  const stats: ProcessorStats = { chunksWritten: 0, bytesWritten: 0 }
  let next = 0
  const batch = (): Job[] => {
    const out: Job[] = []
    let bytes = 0
    while (next < jobs.length && out.length < BATCH_FILES && (out.length === 0 || bytes < BATCH_BYTES)) {
      const j = jobs[next++]!
      out.push(j)
      bytes += jobBytes(j)
    }
    return out
  }

  const run = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const w = new Worker(workerUrl, { workerData: { params: options.params, storeUrl: options.store?.url ?? null } })
      let settled = false
      const fail = (err: Error): void => {
        if (settled) return
        settled = true
        next = jobs.length // the other workers finish what they hold and stop
        void w.terminate()
        reject(err)
      }
      const feed = (): void => {
        const jobs = batch()
        w.postMessage(jobs.length > 0 ? ({ type: 'jobs', jobs } satisfies ToWorker) : ({ type: 'finish' } satisfies ToWorker))
      }
      w.on('message', (m: FromWorker) => {
        if (m.type === 'ready') feed()
        else if (m.type === 'results') {
          // structured clone turned Buffers into Uint8Arrays; make them Buffers again (no copy)
          for (const r of m.results) results[r.index] = revive(r)
          options.onBytes?.(m.bytes)
          feed()
        } else if (m.type === 'finished') {
          stats.chunksWritten += m.stats.chunksWritten
          stats.bytesWritten += m.stats.bytesWritten
          settled = true
          void w.terminate()
          resolve()
        } else fail(new SnapdirError(m.code, m.message))
      })
      w.on('error', (err) => fail(err))
      w.on('exit', (code) => fail(new SnapdirError('ERR_SOURCE', `chunk worker exited with code ${code}`)))
    })

  const settled = await Promise.allSettled(Array.from({ length: workers }, run))
  const failed = settled.find((r) => r.status === 'rejected')
  if (failed) throw failed.reason
  return { results, stats }
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength)
}

function revive(r: FileResult): FileResult {
  const out: FileResult = { index: r.index, chunks: r.chunks.map((c) => ({ ...c, id: asBuffer(c.id) })) }
  if (r.inline) out.inline = asBuffer(r.inline)
  return out
}

async function processInline(jobs: Job[], fileCount: number, options: ProcessFilesOptions): Promise<ProcessedFiles> {
  const processor = new FileProcessor(options.params, options.store)
  const results: FileResult[] = new Array<FileResult>(fileCount)
  for (const job of jobs) {
    for (const r of await processor.processJob(job)) results[r.index] = r
    options.onBytes?.(jobBytes(job))
  }
  await processor.drain()
  return { results, stats: processor.stats }
}
