// The messages between the pool (worker-pool.ts) and its chunk workers (chunk-worker.ts). Structured
// clone keeps an Error's message but not a SnapdirError's code and data, so errors cross as WireError
// and are rebuilt on the other side: a source or store problem stays one, and anything else (a bug, a
// worker out of memory) is ERR_INTERNAL, never a problem with the user's files.
import type { ChunkerParams } from '../chunk/params.js'
import type { StoreSpec } from '../store/store.js'
import { internalError, SnapdirError, type ErrorCode } from '../util/errors.js'
import type { ChunkStats } from './chunk-sink.js'
import type { FileResult, Job } from './jobs.js'

export type ToWorker =
  | { type: 'init'; params: ChunkerParams; store: StoreSpec | null }
  | { type: 'jobs'; jobs: Job[] }
  | { type: 'finish' }
export type FromWorker =
  | { type: 'ready' }
  | { type: 'results'; results: FileResult[]; bytes: number }
  | { type: 'finished'; stats: ChunkStats }
  | { type: 'error'; error: WireError }

export interface WireError {
  code: ErrorCode
  message: string
  data: Record<string, unknown>
  /** where it was thrown, in the worker (shown with SNAPDIR_DEBUG) */
  stack?: string
}

/** An error thrown in a worker, as it crosses to the pool. */
export function toWire(err: unknown): WireError {
  const e = internalError('a chunk worker', err)
  const wire: WireError = { code: e.code, message: e.message, data: { ...e.data } }
  const stack = err instanceof Error ? err.stack : undefined
  if (stack !== undefined) wire.stack = stack
  return wire
}

/** The error a worker reported, as the pool rethrows it. */
export function fromWire(wire: WireError): SnapdirError {
  const e = new SnapdirError(wire.code, wire.message, { data: wire.data })
  if (wire.stack !== undefined) e.stack = wire.stack
  return e
}
