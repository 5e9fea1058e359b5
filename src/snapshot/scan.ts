import { promises as fs, type BigIntStats } from 'node:fs'
import { native } from '../chunk/native.js'
import type { EntryType, TreeEntry } from '../format/tree.js'
import { compareBytes } from '../format/tree.js'
import { forEachLimit } from '../util/concurrency.js'
import { isErrno, SnapdirError, UsageError } from '../util/errors.js'

/** A tree entry read from disk, before its content is chunked. */
export interface ScannedEntry {
  entry: TreeEntry
  /** absolute path on disk, raw bytes */
  source: Buffer
  /** allocated bytes; fewer than the size means holes worth skipping */
  allocated: number
}

const SLASH = Buffer.from('/')

function typeOf(st: BigIntStats): EntryType | null {
  if (st.isFile()) return 'file'
  if (st.isDirectory()) return 'dir'
  if (st.isSymbolicLink()) return 'symlink'
  if (st.isCharacterDevice()) return 'char'
  if (st.isBlockDevice()) return 'block'
  if (st.isFIFO()) return 'fifo'
  if (st.isSocket()) return 'socket'
  return null
}

function sourceError(path: Buffer, err: unknown): SnapdirError {
  const msg = err instanceof Error ? err.message : String(err)
  return new SnapdirError('ERR_SOURCE', `cannot read ${path.toString()}: ${msg}`, { cause: err })
}

/**
 * Walks a directory without following symlinks and returns its entries sorted by path bytes, with
 * metadata, xattrs and link targets. Names stay raw bytes throughout (they need not be UTF-8).
 * Within the tree, an inode with several names is stored once: the first path in sorted order is the
 * entry, the others are hardlinks naming it.
 */
export async function scanDirectory(root: string): Promise<ScannedEntry[]> {
  const rootBuf = Buffer.from(root)
  let rootStat: BigIntStats
  try {
    rootStat = await fs.lstat(rootBuf, { bigint: true })
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) throw new UsageError(`directory '${root}' does not exist`, 'ERR_SOURCE')
    throw sourceError(rootBuf, err)
  }
  if (!rootStat.isDirectory()) throw new UsageError(`'${root}' is not a directory`, 'ERR_SOURCE')
  if (!native) throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', 'the native addon is not built: run npm install (xattrs and devices need it)')

  const out: ScannedEntry[] = []
  const inodes = new Map<string, Buffer[]>()

  const visit = async (rel: Buffer, abs: Buffer, st: BigIntStats): Promise<void> => {
    const type = typeOf(st)
    if (type === null) throw sourceError(abs, new Error('unsupported file type'))
    let target: Buffer | null = null
    let xattrs: Array<[Buffer, Buffer]>
    try {
      if (type === 'symlink') target = await fs.readlink(abs, { encoding: 'buffer' })
      xattrs = native!.listXattrs(abs)
    } catch (err) {
      throw sourceError(abs, err)
    }
    const entry: TreeEntry = {
      path: rel,
      type,
      mode: Number(st.mode) & 0o7777,
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtimeSec: Number(st.mtimeNs / 1_000_000_000n) - (st.mtimeNs < 0n && st.mtimeNs % 1_000_000_000n !== 0n ? 1 : 0),
      mtimeNsec: Number(((st.mtimeNs % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n),
      size: type === 'file' ? Number(st.size) : 0,
      target,
      rdev: type === 'char' || type === 'block' ? Number(st.rdev) : 0,
      xattrs,
      chunks: [],
    }
    out.push({ entry, source: abs, allocated: Number(st.blocks) * 512 })
    if (type !== 'dir' && st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`
      const names = inodes.get(key)
      if (names) names.push(rel)
      else inodes.set(key, [rel])
    }
    if (type !== 'dir') return
    let names: Buffer[]
    try {
      names = await fs.readdir(abs, { encoding: 'buffer' })
    } catch (err) {
      throw sourceError(abs, err)
    }
    const children: Array<{ rel: Buffer; abs: Buffer; st: BigIntStats }> = []
    await forEachLimit(names, 16, async (name) => {
      const childAbs = Buffer.concat([abs, SLASH, name])
      const childRel = rel.length === 0 ? name : Buffer.concat([rel, SLASH, name])
      try {
        children.push({ rel: childRel, abs: childAbs, st: await fs.lstat(childAbs, { bigint: true }) })
      } catch (err) {
        throw sourceError(childAbs, err)
      }
    })
    for (const c of children) await visit(c.rel, c.abs, c.st)
  }

  await visit(Buffer.alloc(0), Buffer.from(await fs.realpath(rootBuf)), rootStat)
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
      s.entry.xattrs = []
    }
  }
  return out
}
