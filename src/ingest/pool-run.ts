// One run of the ingest engine over a stream of jobs, whichever way it cuts them: worker threads or
// this thread (worker-pool.ts), or native batches (native-run.ts).
import type { ChunkerParams } from '../chunk/params.js'
import type { Store } from '../store/store.js'
import type { ChunkStats } from './chunk-sink.js'
import type { FileResult, Job } from './jobs.js'

export interface RunOptions {
  params: ChunkerParams
  /** where chunks go; null only computes IDs */
  store: Store | null
  onBytes?: (bytes: number) => void
  /** each file's result as soon as it is known, in no particular order */
  onResult?: (r: FileResult) => void
}

/** What a run did; each file's result went to RunOptions.onResult, and is not kept here (push drops each once used). */
export interface ProcessedFiles {
  stats: ChunkStats
}

/**
 * add() hands the run more jobs as they become known (push adds large files while the scan is still
 * finding the rest), finish() says there are no more, and `done` settles when every job is cut. Jobs
 * carry indexes into the results.
 */
export interface PoolRun {
  add(jobs: Job[]): void
  finish(): void
  /** rejects with the first failure; always handled, so it may be awaited late */
  readonly done: Promise<ProcessedFiles>
}

