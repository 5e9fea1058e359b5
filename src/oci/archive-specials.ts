// The entries of an archive that push creates itself rather than through node-tar: symbolic links
// and device, fifo nodes. node-tar rewrites an absolute link target (it strips the '/', or in strict
// mode refuses the archive) and refuses targets that lead out of the directory, because it treats a
// target as a path it may later write through. To snapdir a target is only text, stored as it is, and
// nothing is ever written through a link: the links are made after every other entry is in place,
// each checked to be in a real directory inside the unpacked tree. node-tar does not create device
// nodes at all; a push of the directory would store them, so the archive's push does too.
import { constants, promises as fs } from 'node:fs'
import path from 'node:path'
import { native } from '../chunk/native.js'
import { SnapdirError } from '../util/errors.js'

export interface SpecialEntry {
  type: 'SymbolicLink' | 'CharacterDevice' | 'BlockDevice' | 'FIFO'
  /** as in the archive, relative to its root */
  path: string
  linkpath: string
  mode: number
  uid: number
  gid: number
  mtime: Date | undefined
  devmaj: number
  devmin: number
}

export const SPECIAL_TYPES: ReadonlySet<string> = new Set(['SymbolicLink', 'CharacterDevice', 'BlockDevice', 'FIFO'])

const NODE_BITS: Record<string, number> = {
  CharacterDevice: constants.S_IFCHR,
  BlockDevice: constants.S_IFBLK,
  FIFO: constants.S_IFIFO,
}

/** Linux's makedev, as st_rdev reports it: the form native mknod takes. */
function makedev(major: number, minor: number): number {
  return (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) * 0x1000) | ((major & ~0xfff) * 0x100000000)
}

/**
 * Creates `entries` (devices first, then links, each group in archive order) under `dir`; returns
 * their paths with their archived times, for the caller to set with the directories' (exactly: Node's
 * utimes would cut a millisecond time to a double of seconds, image-archive.ts setTime).
 */
export async function createSpecials(dir: string, entries: SpecialEntry[], options: { archive: string; owners: boolean }): Promise<Map<string, Date>> {
  const times = new Map<string, Date>()
  const refuse = (e: SpecialEntry, why: string) =>
    new SnapdirError('ERR_UNSAFE_PATH', `archive ${options.archive}: refused: ${e.path}: ${why}`, { data: { archive: options.archive, entry: e.path } })
  const ordered = [...entries.filter((e) => e.type !== 'SymbolicLink'), ...entries.filter((e) => e.type === 'SymbolicLink')]
  for (const e of ordered) {
    const parts = e.path.split('/').filter((p) => p !== '' && p !== '.')
    if (path.isAbsolute(e.path) || parts.includes('..') || parts.length === 0) throw refuse(e, 'the name is absolute, empty or contains ..')
    // every directory on the way is a real one inside dir: made if the archive only implies it,
    // never a link (one made earlier from this archive could point anywhere)
    let at = dir
    for (const part of parts.slice(0, -1)) {
      at = path.join(at, part)
      const st = await fs.lstat(at).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
        throw err
      })
      if (st === null) await fs.mkdir(at, { mode: 0o755 })
      else if (!st.isDirectory()) throw refuse(e, `${path.relative(dir, at)} on its way is not a directory`)
    }
    const target = path.join(at, parts.at(-1)!)
    try {
      if (e.type === 'SymbolicLink') {
        await fs.symlink(e.linkpath, target)
        if (options.owners) await fs.lchown(target, e.uid, e.gid)
        if (e.mtime) times.set(target, e.mtime)
      } else {
        if (!native) throw new SnapdirError('ERR_SOURCE', `archive ${options.archive}: ${e.path}: creating a device or fifo needs the native addon`)
        native.mknod(target, NODE_BITS[e.type]! | 0o600, e.type === 'FIFO' ? 0 : makedev(e.devmaj, e.devmin))
        if (options.owners) await fs.lchown(target, e.uid, e.gid)
        await fs.chmod(target, e.mode & 0o7777)
        if (e.mtime) times.set(target, e.mtime)
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'EEXIST') throw refuse(e, 'the archive holds another entry of that name')
      if (code === 'EPERM') {
        throw new SnapdirError('ERR_SOURCE', `archive ${options.archive}: ${e.path}: creating a device node needs root (${(err as Error).message})`, { cause: err })
      }
      throw err
    }
  }
  return times
}
