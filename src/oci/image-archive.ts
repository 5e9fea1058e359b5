// Image archives: one file holding an image, as `docker save`, `ctr image export` and
// `skopeo copy … oci-archive:/docker-archive:` write it. It is a tar (gzip or zstd compressed, or not)
// of either an OCI image layout (oci-archive, ctr export, docker save since Docker 25; these often
// carry a Docker manifest.json beside it) or the older Docker archive (manifest.json naming a config
// file and one tar file per layer, docker-archive.ts).
//
// Push unpacks the archive into a private temporary directory and snapshots that: the blobs are then
// files like those of a layout directory, checked and expanded by the same code. node-tar does the
// unpacking, in strict mode, so an entry that would land outside the directory ('..', an absolute
// name, a path through a symlink) fails the push instead of being skipped.
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import zlib from 'node:zlib'
import { abortedError, isErrno, SnapdirError, sourceError, UsageError } from '../util/errors.js'
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
  const remove = (): Promise<void> => fsp.rm(root, { recursive: true, force: true })
  let entries = 0
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
    // a directory's, and node-tar leaves a symlink's at the time of unpacking
    const times = new Map<string, Date>()
    // node-tar loads here, when an archive is unpacked, not with this module
    const { x: untar } = await import('tar')
    const unpack = untar({
      cwd: dir,
      strict: true,
      // owners only when we could set them anyway; modes as archived
      preserveOwner: process.geteuid?.() === 0,
      noMtime: false,
      onReadEntry: (entry: { type: string; path: string; mtime?: Date }) => {
        entries++
        if ((entry.type === 'Directory' || entry.type === 'SymbolicLink') && entry.mtime) times.set(path.join(dir, entry.path), entry.mtime)
      },
    } as Parameters<typeof untar>[0]) as unknown as NodeJS.WritableStream
    await pipeline(
      fs.createReadStream(file, { highWaterMark: 1024 * 1024 }),
      ...(stages as [NodeJS.ReadWriteStream]),
      unpack,
      ...(options.signal ? [{ signal: options.signal }] : []),
    )
    if (entries === 0) throw new NotAnArchive()
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
    else if (e.isSymbolicLink()) {
      const time = archived.get(p) ?? fallback
      await fsp.lutimes(p, time, time)
    }
  }
  const time = archived.get(dir) ?? archived.get(`${dir}/`) ?? fallback
  await fsp.utimes(dir, time, time)
}

class NotAnArchive extends Error {}

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
