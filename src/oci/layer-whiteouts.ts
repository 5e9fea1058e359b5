// OCI whiteouts (image-spec layer.md, "Whiteouts"): an empty file named `.wh.NAME` says that NAME of a
// lower layer is deleted; `.wh..wh..opq` says that every child of its directory in lower layers is.
// An expanded layer keeps them as the plain files they are in the tar; views and flattening read them
// through whiteoutOf.
import { parentPath } from '../format/tree-paths.js'

export const WHITEOUT_PREFIX = '.wh.'
export const OPAQUE_MARKER = '.wh..wh..opq'
/** names under this prefix are reserved by AUFS (`.wh..wh.plnk`, `.wh..wh.aufs`); runtimes skip them */
const META_PREFIX = '.wh..wh.'

export type Whiteout =
  /** `dir/.wh.NAME`: hides `dir/NAME` (and everything under it) in lower layers */
  | { kind: 'whiteout'; hides: Buffer }
  /** `dir/.wh..wh..opq`: hides every child of `dir` in lower layers; `dir` is empty for the root */
  | { kind: 'opaque'; dir: Buffer }
  /** another `.wh..wh.` name: AUFS bookkeeping that hides nothing and is never shown */
  | { kind: 'meta' }

/** What a layer path marks, or null for an ordinary path. `path` is '/'-separated bytes, as in a tree. */
export function whiteoutOf(path: Buffer): Whiteout | null {
  const slash = path.lastIndexOf(0x2f)
  // every entry of every layer comes through here, and almost none is a whiteout: no copies until it is
  if (!hasPrefixAt(path, slash + 1, WHITEOUT_BYTES)) return null
  const base = path.subarray(slash + 1)
  const dir = parentPath(path)
  if (base.equals(Buffer.from(OPAQUE_MARKER))) return { kind: 'opaque', dir }
  if (startsWith(base, META_PREFIX)) return { kind: 'meta' }
  const name = base.subarray(WHITEOUT_PREFIX.length)
  // `.wh.` alone, `.wh..` or `.wh...` would hide the directory itself or its parent: nothing to hide
  if (name.length === 0 || name.equals(Buffer.from('.')) || name.equals(Buffer.from('..'))) return { kind: 'meta' }
  return { kind: 'whiteout', hides: dir.length === 0 ? Buffer.from(name) : Buffer.concat([dir, Buffer.from('/'), name]) }
}

const WHITEOUT_BYTES = Buffer.from(WHITEOUT_PREFIX, 'latin1')

function hasPrefixAt(b: Buffer, at: number, prefix: Buffer): boolean {
  if (b.length - at < prefix.length) return false
  for (let i = 0; i < prefix.length; i++) if (b[at + i] !== prefix[i]) return false
  return true
}

function startsWith(b: Buffer, prefix: string): boolean {
  return b.length >= prefix.length && b.subarray(0, prefix.length).equals(Buffer.from(prefix, 'latin1'))
}
