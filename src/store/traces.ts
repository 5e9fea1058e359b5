// Access traces as a store holds them (docs/FORMAT.md, "Access traces"): the record under
// refs/traces/<snapshot ID>/<view>, checked when read. What records them and reads them ahead is
// mount/trace.ts.
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
