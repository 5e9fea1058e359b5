// Access traces as a store holds them (docs/FORMAT.md, "Access traces"): the record under
// refs/traces/<snapshot ID>/<view>, checked when read. What records them and reads them ahead is
// mount/trace.ts; sync copies them with their snapshot (sync/sync.ts); gc deletes them with what they
// are keyed by (gc.ts).
import { readRefRecord, type SkippedRecord } from './ref-record.js'
import type { ReadStore, Store } from './store.js'
import { SnapdirError } from '../util/errors.js'

export const TRACE_REFS = 'refs/traces/'
export const TRACE_VERSION = 1

/** A trace as stored and as `trace record --output` writes it. */
export interface AccessTrace {
  snapdirTrace: typeof TRACE_VERSION
  /** the snapshot ID (for a layer view, its diff_id's hex) */
  snapshot: string
  /** the view's name in the key: tree, rootfs, layers (with the image and platform picked), layer */
  view: string
  /** chunk IDs (hex) in the order of first access */
  chunks: string[]
}

const HEX64 = /^[0-9a-f]{64}$/
/** The most chunks a trace names: 2^20 chunks of 64 KiB on average is 64 GiB read. */
const MAX_CHUNKS = 1 << 20

export function traceKey(snapshot: string, view: string): string {
  return `${TRACE_REFS}${snapshot}/${view}`
}

/** What is wrong with a value read as a trace, or null. */
function traceProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null) return 'not a JSON object'
  const t = value as Partial<AccessTrace>
  if (t.snapdirTrace !== TRACE_VERSION) return `not an access trace of version ${TRACE_VERSION} (snapdirTrace: ${JSON.stringify(t.snapdirTrace)})`
  if (typeof t.snapshot !== 'string' || !HEX64.test(t.snapshot)) return 'its snapshot is not a 64-hex-digit ID'
  if (typeof t.view !== 'string' || t.view === '' || t.view.includes('/')) return 'its view is not a view key'
  if (!Array.isArray(t.chunks) || t.chunks.length > MAX_CHUNKS) return `its chunks are not a list of at most ${MAX_CHUNKS}`
  const bad = t.chunks.find((c) => typeof c !== 'string' || !HEX64.test(c))
  if (bad !== undefined) return `chunk ${JSON.stringify(bad)} is not a 64-hex-digit ID`
  return null
}

/** A trace file's content, checked; ERR_SOURCE naming the file and what is wrong otherwise. */
export function parseTrace(data: Buffer, what: string): AccessTrace {
  let value: unknown
  try {
    value = JSON.parse(data.toString('utf8'))
  } catch {
    throw new SnapdirError('ERR_SOURCE', `${what} is not an access trace: not JSON`)
  }
  const problem = traceProblem(value)
  if (problem !== null) throw new SnapdirError('ERR_SOURCE', `${what} is not an access trace: ${problem}`)
  return value as AccessTrace
}

export function encodeTrace(trace: AccessTrace): Buffer {
  return Buffer.from(JSON.stringify(trace) + '\n')
}

/** The stored trace of a view of a snapshot, or null when there is none (or it is malformed: reported through onSkip). */
export async function readTrace(store: ReadStore, snapshot: string, view: string, onSkip: SkippedRecord): Promise<AccessTrace | null> {
  const key = traceKey(snapshot, view)
  const value = await readRefRecord(store, key, (v) => {
    const problem = traceProblem(v)
    if (problem !== null) return problem
    const t = v as AccessTrace
    return t.snapshot === snapshot && t.view === view ? null : `it is the trace of ${t.snapshot}/${t.view}, not of its key`
  }, onSkip)
  return value as AccessTrace | null
}

/** Stores a trace under its key, replacing any there (one PUT: readers see the old or the new one whole). */
export async function writeTrace(store: Store, trace: AccessTrace): Promise<string> {
  const key = traceKey(trace.snapshot, trace.view)
  await store.put(key, encodeTrace(trace))
  return key
}

/** What copyTraces did: traces written (or a dry run would write), left as the destination had them, passed over as malformed. */
export interface TraceCopy {
  copied: number
  skipped: number
  malformed: number
}

/**
 * Copies the stored traces of `snapshot` (refs/traces/<snapshot>/*) from one store to another, byte
 * for byte, as sync does once the snapshot is complete at `to` (a trace names chunks, which must be
 * there first), then flushes. A trace `to` holds byte for byte is left alone (one GET each); another
 * one there is replaced, as the source's tags move the destination's. A trace malformed at the source
 * is reported through `onSkip` and not copied: a trace only speeds mounts up, so it never fails a sync.
 */
export async function copyTraces(from: ReadStore, to: Store, snapshot: string, options: { dryRun?: boolean; onSkip: SkippedRecord }): Promise<TraceCopy> {
  const done: TraceCopy = { copied: 0, skipped: 0, malformed: 0 }
  const prefix = `${TRACE_REFS}${snapshot}/`
  const keys: string[] = []
  for await (const key of from.list(prefix)) keys.push(key)
  for (const key of keys.sort()) {
    const view = key.slice(prefix.length)
    const source = await from.get(key).catch(gone)
    if (source === null) continue // removed since the listing
    const problem = sourceProblem(source, snapshot, view)
    if (problem !== null) {
      done.malformed++
      options.onSkip(`${from.url}/${key}`, problem)
      continue
    }
    const there = await to.get(key).catch(gone)
    if (there !== null && there.equals(source)) {
      done.skipped++
      continue
    }
    if (!options.dryRun) await to.put(key, source)
    done.copied++
  }
  if (done.copied > 0 && !options.dryRun) await to.flush()
  return done
}

/** What is wrong with the bytes at refs/traces/<snapshot>/<view> as a trace of that view, or null. */
function sourceProblem(data: Buffer, snapshot: string, view: string): string | null {
  let value: unknown
  try {
    value = JSON.parse(data.toString('utf8'))
  } catch {
    return 'not JSON'
  }
  const problem = traceProblem(value)
  if (problem !== null) return problem
  const t = value as AccessTrace
  return t.snapshot === snapshot && t.view === view ? null : `it is the trace of ${t.snapshot}/${t.view}, not of its key`
}

/** null for an object that is not there (or a store that is not there yet: a dry run's destination). */
function gone(err: unknown): null {
  if (err instanceof SnapdirError && (err.code === 'ERR_OBJECT_MISSING' || err.code === 'ERR_STORE_NOT_FOUND')) return null
  throw err
}
