// One small JSON record under refs/ (a revision, an image name), read as every listing of refs reads
// them: a record removed since it was listed is no record, and one that is not JSON or not what its
// kind requires is skipped and reported, so that one stray or truncated file never fails a whole store.
import { SnapdirError } from '../util/errors.js'
import type { ReadStore } from './store.js'

/** Told about each malformed record a listing of refs skips (its key, why); by default a line on stderr. */
export type SkippedRecord = (key: string, reason: string) => void

export const warnOnStderr: SkippedRecord = (key, reason) => {
  process.stderr.write(`snapdir: warning: skipping ${key}: ${reason}\n`)
}

/**
 * The record at `key`, parsed, once `problemOf` finds nothing wrong with it; null when it is gone or
 * malformed (reported through `onSkip`).
 */
export async function readRefRecord(store: ReadStore, key: string, problemOf: (value: unknown) => string | null, onSkip: SkippedRecord): Promise<unknown> {
  let raw: Buffer
  try {
    raw = await store.get(key)
  } catch (err) {
    // removed (rm, gc --keep-last, a tag moved away) since the listing
    if (err instanceof SnapdirError && err.code === 'ERR_OBJECT_MISSING') return null
    throw err
  }
  let value: unknown
  try {
    value = JSON.parse(raw.toString('utf8'))
  } catch {
    onSkip(`${store.url}/${key}`, 'not JSON')
    return null
  }
  const problem = problemOf(value)
  if (problem !== null) {
    onSkip(`${store.url}/${key}`, problem)
    return null
  }
  return value
}
