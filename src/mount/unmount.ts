// Unmounting a snapdir mount, from the process that serves it (on a signal) or from any other
// (`snapdir umount`). umount2(2) when root; fusermount3 -u otherwise, as libfuse itself does.
import { execFile } from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import { promisify } from 'node:util'
import { SnapdirError, UsageError, isErrno } from '../util/errors.js'
import { errnoName } from './errno.js'
import { fuseAddon } from './fuse.js'
import { mountAt, type MountInfo } from './mountinfo.js'

export const FSTYPE = 'fuse.snapdir'
const { EBUSY, EPERM, EINVAL } = os.constants.errno

/** The snapdir mount at `dir`, or a usage error saying what is (not) there. */
export async function findSnapdirMount(dir: string): Promise<{ path: string; info: MountInfo }> {
  let real: string
  try {
    real = await fs.realpath(dir)
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) throw new UsageError(`mountpoint '${dir}' does not exist`, 'ERR_TARGET')
    if (isErrno(err, 'ENOTCONN')) return { path: dir, info: { mountpoint: dir, fstype: FSTYPE, source: '', dev: '' } } // dead FUSE server
    throw err
  }
  const info = await mountAt(real)
  if (!info) throw new UsageError(`'${dir}' is not a mount point`, 'ERR_TARGET')
  if (info.fstype !== FSTYPE) throw new UsageError(`'${dir}' is a ${info.fstype} mount, not a snapdir one`, 'ERR_TARGET')
  return { path: real, info }
}

/** Asks the kernel to end the FUSE connection: every pending and later request fails at once. */
export async function abortConnection(info: MountInfo): Promise<void> {
  const minor = info.dev.split(':')[1]
  if (minor) await fs.writeFile(`/sys/fs/fuse/connections/${minor}/abort`, '1').catch(() => {})
}

export async function unmount(dir: string, options: { lazy?: boolean } = {}): Promise<void> {
  const rc = fuseAddon().umount(dir, options.lazy ?? false)
  if (rc === 0 || rc === EINVAL) return // EINVAL: already gone
  if (rc === EBUSY) {
    throw new SnapdirError('ERR_TARGET', `'${dir}' is busy: a process has a file or its working directory there (close it, or unmount with --lazy)`)
  }
  if (rc === EPERM) {
    try {
      await promisify(execFile)('fusermount3', ['-u', ...(options.lazy ? ['-z'] : []), dir])
      return
    } catch (err) {
      const why = (err as { stderr?: string }).stderr?.trim() || (err as Error).message
      throw new SnapdirError('ERR_TARGET', `cannot unmount '${dir}': ${why}`, { cause: err })
    }
  }
  throw new SnapdirError('ERR_TARGET', `cannot unmount '${dir}': ${errnoName(rc)}`)
}
