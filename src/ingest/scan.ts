import fs from 'node:fs'
import { native, ROW, STAT_ROW, type DirListing } from '../chunk/native.js'
import type { EntryType, TreeEntry } from '../format/tree.js'
import { compareBytes } from '../format/tree.js'
import { isErrno, SnapdirError, sourceError, UsageError } from '../util/errors.js'

/** A tree entry read from disk, before its content is chunked. */
export interface ScannedEntry {
  entry: TreeEntry
  /** absolute path on disk, raw bytes */
  readonly source: Buffer
  /** allocated bytes; fewer than the size means the file has holes */
  allocated: number
}

const SLASH = Buffer.from('/')
// One empty list for every entry without xattrs, and for every file until its chunks are known (the
// results replace it): an empty array is 32 bytes, twice per entry. Frozen, so a push onto it throws.
const NO_XATTRS = Object.freeze([]) as unknown as TreeEntry['xattrs']
const NO_CHUNKS = Object.freeze([]) as unknown as TreeEntry['chunks']

/**
 * An entry of a scan, its absolute path made only when asked for (a file is opened once): a tree of
 * 200,000 small files held that many Buffers of paths beside the relative ones, for all of a push.
 */
class ScannedFromDisk implements ScannedEntry {
  constructor(readonly entry: TreeEntry, private readonly root: Buffer, readonly allocated: number) {}

  get source(): Buffer {
    return this.entry.path.length === 0 ? this.root : Buffer.concat([this.root, SLASH, this.entry.path])
  }
}

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK } = fs.constants
const TYPES = new Map<number, EntryType>([
  [S_IFREG, 'file'], [S_IFDIR, 'dir'], [S_IFLNK, 'symlink'], [S_IFCHR, 'char'],
  [S_IFBLK, 'block'], [S_IFIFO, 'fifo'], [S_IFSOCK, 'socket'],
])

/**
 * A number read from a Float64Array as a small integer when it is one. V8 gives such reads as heap
 * numbers, and an object field once given one stores every value boxed: 16 bytes more per field and
 * entry (seven fields, 22 MB for 200,000 files).
 */
function int(v: number): number {
  return (v | 0) === v ? v | 0 : v
}

function typeOf(mode: number): EntryType | null {
  return TYPES.get(mode & S_IFMT) ?? null
}

export interface ScanOptions {
  /**
   * Called with each regular file (and its link count) as it is found; the scan pauses for the event
   * loop every few hundred entries, so work handed off here (to push's workers) gets going. A file
   * with several names may still become a hardlink entry once the scan has seen them all.
   */
  onFile?: (s: ScannedEntry, nlink: number) => void
}

/** Entries between pauses for the event loop when onFile is given (a few milliseconds of scanning). */
const YIELD_EVERY = 256

/**
 * Checks that `root` is a directory this process can list, with the errors scanDirectory gives, and
 * returns its real path. Push calls it before it touches the store, then scans while it cuts.
 */
export function checkSourceDirectory(root: string): Buffer {
  const rootBuf = Buffer.from(root)
  let rootStat: fs.Stats
  try {
    rootStat = fs.lstatSync(rootBuf)
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) throw new UsageError(`directory '${root}' does not exist`, 'ERR_SOURCE')
    throw sourceError(rootBuf.toString(), err)
  }
  if (!rootStat.isDirectory()) throw new UsageError(`'${root}' is not a directory`, 'ERR_SOURCE')
  if (!native) throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', 'the native addon is not built: run npm install (xattrs and devices need it)')
  try {
    fs.opendirSync(root).closeSync()
  } catch (err) {
    throw sourceError(rootBuf.toString(), err)
  }
  return Buffer.from(fs.realpathSync(rootBuf))
}

/**
 * Walks a directory without following symlinks and returns its entries sorted by path bytes, with
 * metadata, xattrs and link targets. Names stay raw bytes throughout (they need not be UTF-8).
 * Within the tree, an inode with several names is stored once: the first path in sorted order is the
 * entry, the others are hardlinks naming it.
 * Blocking calls on purpose: the main thread has nothing else to do meanwhile but hand work to push's
 * workers at the pauses (see onFile), and an lstat from the dentry cache takes ~2 µs against ~40 µs
 * for a thread-pool round trip. Never call it from a serving path (mount, snapshotter).
 */
export async function scanDirectory(root: string, options: ScanOptions = {}): Promise<ScannedEntry[]> {
  const rootAbs = checkSourceDirectory(root)
  const addon = native!
  // cold, the scan waits for one directory read after another: threads walking ahead overlap them
  addon.prefetchTree(rootAbs)

  const out: ScannedEntry[] = []
  const inodes = new Map<string, Buffer[]>()

  const { onFile } = options
  // directories still to list, depth first; an explicit stack so the walk can pause (see onFile)
  const pending: Array<{ rel: Buffer; abs: Buffer }> = []
  // one entry: row `o` of a listing. Its absolute path is made only where it is needed (a symlink, a
  // directory, an error): made for every entry, in the same 8 KiB pool slabs as the relative paths
  // kept for the whole push, it kept them all alive too (25 MB for 200,000 files)
  const visit = (rel: Buffer, absOf: () => Buffer, [, rows, xattrLists]: DirListing, o: number): void => {
    const mode = rows[o + ROW.mode]!
    const nlink = rows[o + ROW.nlink]!
    const type = typeOf(mode)
    if (type === null) throw sourceError(absOf().toString(), new Error('unsupported file type'))
    let target: Buffer | null = null
    if (type === 'symlink') {
      const abs = absOf()
      try {
        target = fs.readlinkSync(abs, { encoding: 'buffer' })
      } catch (err) {
        throw sourceError(abs.toString(), err)
      }
    }
    const size = int(rows[o + ROW.size]!)
    const rdev = int(rows[o + ROW.rdev]!)
    const entry: TreeEntry = {
      path: rel,
      type,
      mode: mode & 0o7777,
      uid: int(rows[o + ROW.uid]!),
      gid: int(rows[o + ROW.gid]!),
      mtimeSec: int(rows[o + ROW.mtimeSec]!),
      mtimeNsec: int(rows[o + ROW.mtimeNsec]!),
      size: type === 'file' ? size : 0,
      target,
      rdev: type === 'char' || type === 'block' ? rdev : 0,
      xattrs: xattrLists[o / STAT_ROW] ?? NO_XATTRS,
      chunks: NO_CHUNKS,
    }
    const scanned = new ScannedFromDisk(entry, rootAbs, int(rows[o + ROW.blocks]! * 512))
    out.push(scanned)
    if (type === 'file') onFile?.(scanned, nlink)
    if (type !== 'dir' && nlink > 1) {
      const key = `${rows[o + ROW.dev]}:${rows[o + ROW.inoHigh]}:${rows[o + ROW.inoLow]}`
      const names = inodes.get(key)
      if (names) names.push(rel)
      else inodes.set(key, [rel])
    }
    if (type === 'dir') pending.push({ rel, abs: absOf() })
  }
  const list = ({ rel, abs }: { rel: Buffer; abs: Buffer }): void => {
    let listing: DirListing
    try {
      listing = addon.readdirStat(abs)
    } catch (err) {
      throw sourceError(abs.toString(), err)
    }
    // reversed onto the stack, so directories are listed in the order readdir gave them
    const mark = pending.length
    const [names, rows] = listing
    for (let o = 0; o < rows.length; o += STAT_ROW) {
      const start = rows[o + ROW.nameStart]!
      const name = names.subarray(start, start + rows[o + ROW.nameLength]!)
      visit(rel.length === 0 ? name : Buffer.concat([rel, SLASH, name]), () => Buffer.concat([abs, SLASH, name]), listing, o)
    }
    pending.push(...pending.splice(mark).reverse())
  }

  let rootListing: DirListing
  try {
    rootListing = addon.lstatRow(rootAbs)
  } catch (err) {
    throw sourceError(rootAbs.toString(), err)
  }
  visit(Buffer.alloc(0), () => rootAbs, rootListing, 0)
  let sinceYield = 0
  while (pending.length > 0) {
    list(pending.pop()!)
    if (onFile && out.length - sinceYield >= YIELD_EVERY) {
      sinceYield = out.length
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  out.sort((a, b) => compareBytes(a.entry.path, b.entry.path))

  // Every name of a multiply-linked inode but the first (in path order) becomes a hardlink to it.
  const followers = new Map<string, Buffer>()
  for (const names of inodes.values()) {
    if (names.length < 2) continue
    names.sort(compareBytes)
    for (const n of names.slice(1)) followers.set(n.toString('latin1'), names[0]!)
  }
  for (const s of out) {
    const first = followers.get(s.entry.path.toString('latin1'))
    if (first) {
      s.entry.type = 'hardlink'
      s.entry.target = first
      s.entry.size = 0
      s.entry.rdev = 0
      s.entry.xattrs = NO_XATTRS
    }
  }
  return out
}
