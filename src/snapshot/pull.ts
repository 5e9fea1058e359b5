import { checkStoreFormat } from '../store/store-config.js'
import { randomBytes } from 'node:crypto'
import { constants, promises as fs, type BigIntStats } from 'node:fs'
import path from 'node:path'
import { native } from '../chunk/native.js'
import { toHex } from '../format/id.js'
import { treeSize, type Tree, type TreeEntry } from '../format/tree.js'
import { printablePath } from '../format/tree-paths.js'
import { checkImageLayout } from '../oci/check-layout.js'
import { isImageLayout } from '../oci/image-layout.js'
import { readTree } from '../store/objects.js'
import type { ReadStore } from '../store/store.js'
import { forEachLimit } from '../util/concurrency.js'
import { isErrno, SnapdirError, targetWriteError, UsageError } from '../util/errors.js'
import { writeRecipeBlob } from '../oci/recipe-reader.js'
import { ChunkFetcher } from './chunk-fetcher.js'

export interface PullOptions {
  onTree?: (totalBytes: number, entries: number) => void
  onBytes?: (bytes: number) => void
}

const TYPE_BITS: Partial<Record<TreeEntry['type'], number>> = {
  char: constants.S_IFCHR,
  block: constants.S_IFBLK,
  fifo: constants.S_IFIFO,
  socket: constants.S_IFSOCK,
}

/**
 * Materialises a snapshot as `target`. Everything is written into a fresh directory and moved into
 * place at the end, so a failure (a damaged chunk, a full disk) leaves no half-written target: beside
 * a new target, renamed to it; inside an existing empty one (which may be a mount point, where a
 * rename would fail with EBUSY), its entries moved up into it, and on failure it is emptied back to
 * how it was. The tree was validated on load (format/tree-paths.ts): every parent is a directory we
 * created, so no write can go through a symlink or outside the new directory.
 */
export async function pull(store: ReadStore, id: string, target: string, options: PullOptions = {}): Promise<Tree> {
  if (!native) throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', 'the native addon is not built: run npm install')
  const dest = path.resolve(target)
  const existing = await checkTarget(dest)
  await store.open()
  await checkStoreFormat(store)
  const tree = await readTree(store, id)
  options.onTree?.(treeSize(tree), tree.entries.length)

  const tag = `snapdir-pull-${randomBytes(6).toString('hex')}`
  const tmp = existing ? path.join(dest, `.${tag}`) : path.join(path.dirname(dest), `.${path.basename(dest)}.${tag}`)
  await fs.mkdir(tmp, { mode: 0o700 }).catch((err: unknown) => {
    throw targetWriteError(dest, err)
  })
  const moved: string[] = []
  try {
    await materialise(store, tree, Buffer.from(tmp), dest, options)
    if (await isImageLayout(tmp)) await checkPulledLayout(tmp, dest, id)
    if (existing) await fillInPlace(tree, tmp, dest, existing, moved)
    else {
      await fs.rename(tmp, dest).catch((err: unknown) => {
        throw new SnapdirError('ERR_TARGET', `cannot move the pulled tree into ${dest}: ${(err as Error).message}`, { cause: err })
      })
    }
  } catch (err) {
    for (const name of moved) await fs.rm(path.join(dest, name), { recursive: true, force: true }).catch(() => {})
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => {})
    // creating and removing entries changed the directory's times: put them back
    if (existing) await restoreTimes(dest, existing).catch(() => {})
    throw err
  }
  return tree
}

/**
 * The pulled tree, built in `tmp` inside the existing empty directory `dest`, becomes its content:
 * each top-level entry renamed up (one directory, one file system), then the root's own metadata
 * applied to `dest`, times last. `moved` lists what is already in `dest`, for the caller to undo.
 */
async function fillInPlace(tree: Tree, tmp: string, dest: string, before: BigIntStats, moved: string[]): Promise<void> {
  for (const name of await fs.readdir(tmp)) {
    await fs.rename(path.join(tmp, name), path.join(dest, name)).catch((err: unknown) => {
      throw targetWriteError(path.join(dest, name), err)
    })
    moved.push(name)
  }
  await fs.rmdir(tmp)
  const root = tree.entries.find((e) => e.path.length === 0)
  await (root ? applyMetadata(root, Buffer.from(dest)) : restoreTimes(dest, before)).catch((err: unknown) => {
    throw targetWriteError(dest, err)
  })
}
/** Puts a directory's times back to what `before` saw, to the nanosecond. */
async function restoreTimes(dir: string, before: BigIntStats): Promise<void> {
  const [s, ns] = [(t: bigint) => Number(t / 1_000_000_000n), (t: bigint) => Number(t % 1_000_000_000n)]
  native!.setTimes(dir, s(before.atimeNs), ns(before.atimeNs), s(before.mtimeNs), ns(before.mtimeNs))
}

/**
 * Chunks are verified, but an image layout also promises that each blob matches its digest; a
 * snapshot that breaks that promise is not put in place for a runtime to trip over later.
 */
async function checkPulledLayout(tmp: string, dest: string, id: string): Promise<void> {
  try {
    await checkImageLayout(tmp, { shownAs: dest })
  } catch (err) {
    if (!(err instanceof SnapdirError) || err.code !== 'ERR_SOURCE') throw err
    throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `snapshot ${id}: ${err.message}`, { cause: err, data: err.data })
  }
}

// A target the user named wrongly (not empty, a file, no parent) is bad input, exit 2 (UsageError);
// one that cannot be read is a failure, exit 1. Returns an existing (empty) target's stat, else null.
async function checkTarget(dest: string): Promise<BigIntStats | null> {
  try {
    await fs.access(path.dirname(dest))
  } catch {
    throw new UsageError(`cannot pull into ${dest}: its parent directory does not exist`, 'ERR_TARGET')
  }
  let names: string[]
  try {
    names = await fs.readdir(dest)
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null
    if (isErrno(err, 'ENOTDIR')) throw new UsageError(`cannot pull into ${dest}: it is a file, not a directory`, 'ERR_TARGET')
    throw new SnapdirError('ERR_TARGET', `cannot pull into ${dest}: ${(err as Error).message}`, { cause: err })
  }
  if (names.length > 0) throw new UsageError(`cannot pull into ${dest}: it exists and is not empty`, 'ERR_TARGET')
  return fs.stat(dest, { bigint: true })
}

/**
 * Writes the tree under `root`; a system call that fails (a full disk) names the entry's path as
 * the user will see it, under `shownAs`.
 */
async function materialise(store: ReadStore, tree: Tree, root: Buffer, shownAs: string, options: PullOptions): Promise<void> {
  const abs = (p: Buffer): Buffer => (p.length === 0 ? root : Buffer.concat([root, Buffer.from('/'), p]))
  const onEntry = async (e: TreeEntry, op: () => Promise<unknown>): Promise<void> => {
    try {
      await op()
    } catch (err) {
      throw targetWriteError(e.path.length === 0 ? shownAs : path.join(shownAs, printablePath(e.path)), err)
    }
  }

  // 1. directories, owner-writable until their final mode is applied last
  for (const e of tree.entries) if (e.type === 'dir' && e.path.length > 0) await onEntry(e, () => fs.mkdir(abs(e.path), { mode: 0o700 }))

  // 2. files (content verified chunk by chunk), symlinks and special files
  const fetcher = new ChunkFetcher(store, tree)
  const files = tree.entries.filter((e) => e.type === 'file')
  await forEachLimit(files, 8, (e) => onEntry(e, () => writeFile(fetcher, e, abs(e.path), options)))
  for (const e of tree.entries) {
    if (e.type === 'symlink') await onEntry(e, () => fs.symlink(e.target!, abs(e.path)))
    const bits = TYPE_BITS[e.type]
    if (bits !== undefined) await onEntry(e, async () => native!.mknod(abs(e.path), bits | 0o600, e.rdev))
  }

  // 3. hardlinks, now that what they name exists
  for (const e of tree.entries) if (e.type === 'hardlink') await onEntry(e, () => fs.link(abs(e.target!), abs(e.path)))

  // 4. metadata, children before parents so directory times stick
  for (let i = tree.entries.length - 1; i >= 0; i--) {
    const e = tree.entries[i]!
    if (e.type !== 'hardlink') await onEntry(e, () => applyMetadata(e, abs(e.path)))
  }
}

/** Owner before mode because chown clears setuid/setgid, xattrs after chown because it drops security.capability, times last. */
async function applyMetadata(e: TreeEntry, p: Buffer): Promise<void> {
  await fs.lchown(p, e.uid, e.gid)
  if (e.type !== 'symlink') await fs.chmod(p, e.mode)
  for (const [name, value] of e.xattrs) native!.setXattr(p, name, value)
  native!.setTimes(p, e.mtimeSec, e.mtimeNsec, e.mtimeSec, e.mtimeNsec)
}

async function writeFile(fetcher: ChunkFetcher, e: TreeEntry, dest: Buffer, options: PullOptions): Promise<void> {
  const fh = await fs.open(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
  try {
    if (e.recipe !== undefined) {
      // a layer blob given back from its recipe, hashed as it comes; the pull's directory goes if it fails
      // the pieces (framing, small files) are gathered into large writes
      let at = 0
      const block = Buffer.allocUnsafe(1 << 20)
      let fill = 0
      const flush = async (): Promise<void> => {
        await fh.write(block, 0, fill, at)
        at += fill
        options.onBytes?.(fill)
        fill = 0
      }
      await writeRecipeBlob(fetcher.store, e.recipe, async (piece) => {
        for (let p = 0; p < piece.length; ) {
          const n = Math.min(block.length - fill, piece.length - p)
          piece.copy(block, fill, p, p + n)
          fill += n
          p += n
          if (fill === block.length) await flush()
        }
      }, { shownAs: printablePath(e.path) })
      if (fill > 0) await flush()
      if (at !== e.size) throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${printablePath(e.path)}: its recipe gave ${at} bytes, the tree says ${e.size}`)
      return
    }
    if (e.inline) {
      await fh.write(e.inline, 0, e.inline.length, 0)
      options.onBytes?.(e.size)
      return
    }
    // fetch a few chunks ahead while writing in order
    const refs = e.chunks
    const ahead = 8
    const pending: Array<Promise<Buffer | null>> = []
    const fetch = (i: number): Promise<Buffer | null> => {
      const p = fetcher.get(toHex(refs[i]!.id))
      p.catch(() => {}) // a read-ahead may fail before it is awaited; the await below reports it
      return p
    }
    for (let i = 0; i < Math.min(ahead, refs.length); i++) pending.push(fetch(i))
    let offset = 0
    for (let i = 0; i < refs.length; i++) {
      const data = await pending[i]!
      if (i + ahead < refs.length) pending.push(fetch(i + ahead))
      const ref = refs[i]!
      if (data !== null && ref.offset + ref.length > data.length) {
        throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `chunk ${toHex(ref.id)} has ${data.length} bytes, ${printablePath(e.path)} needs ${ref.offset + ref.length}`)
      }
      for (let k = 0; k < ref.count; k++) {
        // zero chunks stay holes: a sparse file comes back sparse
        if (data !== null) await fh.write(data, ref.offset, ref.length, offset)
        offset += ref.length
      }
      options.onBytes?.(ref.length * ref.count)
      pending[i] = Promise.resolve(null) // let the buffer go
    }
    await Promise.allSettled(pending)
    if (offset !== e.size) throw new SnapdirError('ERR_TREE_MALFORMED', `${printablePath(e.path)}: chunks cover ${offset} of ${e.size} bytes`)
    await fh.truncate(e.size)
  } finally {
    await fh.close()
  }
}
