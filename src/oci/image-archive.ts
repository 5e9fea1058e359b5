// Image archives: one file holding an image, as `docker save`, `ctr image export` and
// `skopeo copy … oci-archive:/docker-archive:` write it. It is a tar (gzip or zstd compressed, or not)
// of either an OCI image layout (oci-archive, ctr export, docker save since Docker 25; these often
// carry a Docker manifest.json beside it) or the older Docker archive (manifest.json naming a config
// file and one tar file per layer, docker-archive.ts).
//
// Push unpacks the archive into a private temporary directory and snapshots that: the blobs are then
// files like those of a layout directory, checked and expanded by the same code. node-tar does the
// unpacking, in strict mode, so an entry that would land outside the directory ('..', an absolute
// name, a path through a symlink) fails the push instead of being skipped. Symlinks and device nodes
// are made by archive-specials.ts once the rest is in: link targets are stored as they are (absolute
// ones too, as a root file system has many) and never followed.
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import zlib from 'node:zlib'
import { native } from '../chunk/native.js'
import { abortedError, isErrno, SnapdirError, sourceError, UsageError } from '../util/errors.js'
import { createSpecials, SPECIAL_TYPES, type SpecialEntry } from './archive-specials.js'
import { compressionOf, streamProblem, zstdDecompress } from './decompress.js'

export interface UnpackedArchive {
  dir: string
  /** removes the directory and everything in it */
  remove(): Promise<void>
}

/**
 * Unpacks the archive into a new directory under `tmpRoot` (default: the system's). Any problem, a
 * corrupt or truncated stream included, is one ERR_SOURCE naming the archive, and nothing is left.
 */
export async function unpackArchive(file: string, options: { tmpRoot?: string; signal?: AbortSignal } = {}): Promise<UnpackedArchive> {
  const root = await fsp.mkdtemp(path.join(options.tmpRoot ?? os.tmpdir(), 'snapdir-archive-'))
  const dir = path.join(root, 'image')
  await fsp.mkdir(dir, { mode: 0o755 })
  await fsp.chmod(dir, 0o755) // whatever the umask: the same archive gives the same snapshot ID
  // retried: node-tar may still finish writes it had started when an error stopped the unpack,
  // which made a single attempt fail with ENOTEMPTY and leave the directory behind
  const remove = (): Promise<void> => fsp.rm(root, { recursive: true, force: true, maxRetries: 10 })
  let entries = 0
  const specials: SpecialEntry[] = []
  const owners = process.geteuid?.() === 0
  try {
    const head = Buffer.alloc(4)
    const fh = await fsp.open(file, 'r')
    try {
      await fh.read(head, 0, 4, 0)
    } finally {
      await fh.close()
    }
    const compression = compressionOf(head)
    const stages: Array<NodeJS.ReadWriteStream | ((input: AsyncIterable<Buffer>) => AsyncGenerator<Buffer>)> = []
    if (compression === 'gzip') stages.push(zlib.createGunzip({ chunkSize: 256 * 1024 }))
    if (compression === 'zstd') stages.push(zstdDecompress)
    // directory and symlink times as archived, set once everything is in: creating children changes
    // a directory's, and node-tar leaves a symlink's at the time of unpacking; and a file's whose time
    // has milliseconds: node-tar sets it through a double of seconds cut to microseconds (.123 s comes
    // back .122999 s), so it is set again here, to the millisecond node-tar read (whole seconds are exact)
    const times = new Map<string, Date>()
    // the archive's own entry for its root ('./', as `tar -C DIR -cf - .` and pull --tar write it):
    // node-tar gives the directory it unpacks into its time but not its mode or owner
    let root: { mode: number; uid: number; gid: number } | null = null
    // node-tar loads here, when an archive is unpacked, not with this module
    const { x: untar } = await import('tar')
    const unpack = untar({
      cwd: dir,
      strict: true,
      // owners only when we could set them anyway; modes as archived
      preserveOwner: owners,
      noMtime: false,
      // symlinks and device nodes are made afterwards, by createSpecials
      filter: (_: string, entry: ArchiveEntry) => {
        if (!SPECIAL_TYPES.has(entry.type)) return true
        entries++
        const { devmaj = 0, devmin = 0 } = entry.header ?? {}
        specials.push({
          type: entry.type as SpecialEntry['type'],
          path: entry.path,
          linkpath: entry.linkpath ?? '',
          mode: entry.mode ?? 0o644,
          uid: entry.uid ?? 0,
          gid: entry.gid ?? 0,
          mtime: entry.mtime,
          devmaj,
          devmin,
        })
        return false
      },
      onReadEntry: (entry: ArchiveEntry) => {
        entries++
        if (entry.type === 'Directory' && entry.mtime) times.set(path.join(dir, entry.path), entry.mtime)
        if (entry.type === 'File' && entry.mtime && entry.mtime.getTime() % 1000 !== 0) times.set(path.join(dir, entry.path), entry.mtime)
        if (entry.type === 'Directory' && path.join(dir, entry.path, '/') === `${dir}/` && entry.mode !== undefined) {
          root = { mode: entry.mode & 0o7777, uid: entry.uid ?? 0, gid: entry.gid ?? 0 }
        }
      },
    } as Parameters<typeof untar>[0]) as unknown as NodeJS.WritableStream
    await pipeline(
      fs.createReadStream(file, { highWaterMark: 1024 * 1024 }),
      ...(stages as [NodeJS.ReadWriteStream]),
      unpack,
      ...(options.signal ? [{ signal: options.signal }] : []),
    )
    if (entries === 0) throw new NotAnArchive()
    for (const [p, time] of await createSpecials(dir, specials, { archive: file, owners })) times.set(p, time)
    const top = root as { mode: number; uid: number; gid: number } | null
    if (top !== null) {
      await fsp.chmod(dir, top.mode)
      if (owners) await fsp.chown(dir, top.uid, top.gid)
    }
    await settleTimes(dir, times, new Date(0))
    return { dir, remove }
  } catch (err) {
    await remove()
    throw archiveError(file, err, entries, options.signal)
  }
}

/**
 * Gives every directory and symlink its archived time, or time 0 for directories the archive only
 * implies (as layer expansion does), so that the same contents always give the same snapshot ID.
 */
async function settleTimes(dir: string, archived: Map<string, Date>, fallback: Date): Promise<void> {
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) await settleTimes(p, archived, fallback)
    else if (e.isSymbolicLink()) await setTime(p, archived.get(p) ?? fallback)
    else {
      // a file whose time had milliseconds, a device node, a fifo
      const time = archived.get(p)
      if (time !== undefined) await setTime(p, time)
    }
  }
  await setTime(dir, archived.get(dir) ?? archived.get(`${dir}/`) ?? fallback)
}

/**
 * Sets a path's times (a symlink's own) to `time` exactly: in nanoseconds through the native addon,
 * as Node's utimes would cut a millisecond time short (a double of seconds, to microseconds).
 */
async function setTime(p: string, time: Date): Promise<void> {
  if (native === null) return fsp.lutimes(p, time, time)
  const ms = time.getTime()
  const sec = Math.floor(ms / 1000)
  const nsec = (ms - sec * 1000) * 1_000_000
  native.setTimes(p, sec, nsec, sec, nsec)
}

class NotAnArchive extends Error {}

/** What unpackArchive reads of node-tar's entries. */
interface ArchiveEntry {
  type: string
  path: string
  linkpath?: string
  mode?: number
  uid?: number
  gid?: number
  mtime?: Date
  header?: { devmaj?: number; devmin?: number }
}

function archiveError(file: string, err: unknown, entries: number, signal?: AbortSignal): SnapdirError {
  if (signal?.aborted) return abortedError(`unpacking archive ${file}`, signal)
  if (err instanceof SnapdirError) return err
  const e = (err instanceof Error ? err : new Error(String(err))) as NodeJS.ErrnoException
  const message = e.message
  // a file that is not an archive at all was given where a directory is expected: bad usage
  if (e instanceof NotAnArchive || (entries === 0 && (e.code === 'TAR_BAD_ARCHIVE' || e.code === 'TAR_ENTRY_INVALID') && !/truncated/i.test(message))) {
    return new UsageError(`'${file}' is neither a directory nor a tar archive (plain, gzip or zstd)`, 'ERR_SOURCE')
  }
  let why: string
  const stream = streamProblem(e)
  if (stream !== null) why = stream
  else if (/unexpected end|truncated/i.test(message)) why = `the tar is truncated (${message})`
  else if (e.code === 'TAR_BAD_ARCHIVE' || e.code === 'TAR_ENTRY_INVALID') why = `it is not a tar archive, plain, gzip or zstd (${message})`
  else if (e.code === 'TAR_ENTRY_ERROR' || e.code === 'TAR_SYMLINK_ERROR' || /\.\.|absolute|symbolic link/i.test(e.message)) {
    return new SnapdirError('ERR_UNSAFE_PATH', `archive ${file}: refused: ${e.message}`, { cause: err, data: { archive: file } })
  } else if (isErrno(e, 'ENOENT', 'EACCES', 'EISDIR', 'EIO')) why = `cannot read it: ${message}`
  else if (isErrno(e, 'ENOSPC')) why = `no space left to unpack it under ${os.tmpdir()} (set TMPDIR): ${message}`
  else why = message
  return sourceError(`archive ${file}`, why, { cause: err, data: { archive: file } })
}
