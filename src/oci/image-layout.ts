// Recognising an OCI image layout and reading its two top-level files
// (https://github.com/opencontainers/image-spec/blob/v1.1.0/image-layout.md).
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { isErrno, SnapdirError } from '../util/errors.js'
import { LayoutProblem, readLayoutFile } from './blob-file.js'
import { isObject, quote } from './descriptor.js'
import { OCI_INDEX } from './media-types.js'

export const LAYOUT_MARKER = 'oci-layout'
export const INDEX_FILE = 'index.json'

/** Manifests and indexes are small; a bound keeps a hostile "manifest" from filling memory. */
export const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

/**
 * A directory is an image layout when it has an `oci-layout` file at its top. That file is what the
 * spec makes the marker; from there on the rest must be right, so a half-written layout is reported
 * rather than pushed as an ordinary directory.
 */
export async function isImageLayout(dir: string): Promise<boolean> {
  try {
    return (await fs.lstat(path.join(dir, LAYOUT_MARKER))).isFile()
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false
    throw new SnapdirError('ERR_SOURCE', `cannot read ${path.join(dir, LAYOUT_MARKER)}: ${(err as Error).message}`, { cause: err })
  }
}

/** Checks `oci-layout` and returns the parsed `index.json`, or throws a problem naming the file. */
export async function readLayoutIndex(dir: string): Promise<Record<string, unknown>> {
  const marker = parseJson(await readLayoutFile(dir, LAYOUT_MARKER, MAX_DOCUMENT_BYTES), LAYOUT_MARKER)
  const version = isObject(marker) ? marker.imageLayoutVersion : undefined
  if (typeof version !== 'string') throw new LayoutProblem(`${LAYOUT_MARKER} has no imageLayoutVersion`)
  // 1.0.0 is the only version there is; a later 1.x keeps its layout by semver
  if (!/^1\.\d+\.\d+$/.test(version)) throw new LayoutProblem(`${LAYOUT_MARKER} has imageLayoutVersion ${quote(version)}; snapdir reads 1.x`)

  const index = parseJson(await readLayoutFile(dir, INDEX_FILE, MAX_DOCUMENT_BYTES), INDEX_FILE)
  if (!isObject(index)) throw new LayoutProblem(`${INDEX_FILE} is not a JSON object`)
  if (index.schemaVersion !== 2) throw new LayoutProblem(`${INDEX_FILE} has schemaVersion ${quote(index.schemaVersion)}, not 2`)
  if (index.mediaType !== undefined && index.mediaType !== OCI_INDEX) {
    throw new LayoutProblem(`${INDEX_FILE} has mediaType ${quote(index.mediaType)}, not ${OCI_INDEX}`)
  }
  return index
}

/** JSON.parse with the document named in the error; its message is one line already. */
export function parseJson(data: Buffer, what: string): unknown {
  try {
    return JSON.parse(data.toString('utf8')) as unknown
  } catch (err) {
    throw new LayoutProblem(`${what} is not valid JSON: ${(err as Error).message}`)
  }
}
