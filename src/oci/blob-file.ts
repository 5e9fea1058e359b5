// Reading the files of an image layout. Every file is opened without following a symlink and must be
// a regular file: a layout that came out of a snapshot could otherwise make the check read (and
// approve) bytes from outside it. Blobs are hashed as they stream, so a layer of any size is checked
// in constant memory.
import { createHash } from 'node:crypto'
import { constants, promises as fs } from 'node:fs'
import path from 'node:path'
import { abortedError, isErrno, SnapdirError } from '../util/errors.js'
import { blobPath, checkDigest, missingFile, notRegularFile, sizeMismatch, tooLarge, type BlobReader, type BlobRef } from './blob-reader.js'
import type { Descriptor } from './descriptor.js'
import type { DigestAlgorithm } from './digest.js'
import { LayoutProblem } from './layout-problem.js'

const READ_SIZE = 1 << 20

/**
 * Opens `rel` under `root` as a regular file, never through a symlink at its last component. `what`
 * is how messages name it (a blob by its role and digest, a top-level file by its name).
 */
async function openRegular(root: string, rel: string, what: string): Promise<{ fh: fs.FileHandle; size: number }> {
  const where = what === rel ? '' : ` (${rel})`
  let fh: fs.FileHandle
  try {
    fh = await fs.open(path.join(root, rel), constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) throw missingFile(what, rel)
    if (isErrno(err, 'ELOOP')) throw new LayoutProblem(`${what} is a symbolic link${where}, not a file`)
    throw new LayoutProblem(`${what} cannot be opened${where}: ${(err as Error).message}`)
  }
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw notRegularFile(what, rel)
    return { fh, size: st.size }
  } catch (err) {
    await fh.close()
    throw err
  }
}

/** A small top-level file whole (oci-layout, index.json), refusing one larger than `maxBytes`. */
async function readLayoutFile(root: string, rel: string, maxBytes: number): Promise<Buffer> {
  const { fh, size } = await openRegular(root, rel, rel)
  try {
    if (size > maxBytes) throw tooLarge(rel, size, maxBytes)
    const data = Buffer.alloc(size)
    const { bytesRead } = await fh.read(data, 0, size, 0)
    if (bytesRead !== size) throw new LayoutProblem(`${rel} changed while being read`)
    return data
  } catch (err) {
    if (err instanceof LayoutProblem) throw err
    throw new LayoutProblem(`${rel} cannot be read: ${(err as Error).message}`)
  } finally {
    await fh.close()
  }
}

/**
 * O_NOFOLLOW guards only a path's last component: `blobs` and `blobs/<algorithm>` must be real
 * directories too, or the blobs read would not be the layout's.
 */
async function checkBlobDirectory(root: string, algorithm: DigestAlgorithm): Promise<void> {
  for (const rel of ['blobs', path.posix.join('blobs', algorithm)]) {
    let st
    try {
      st = await fs.lstat(path.join(root, rel))
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return // each blob is then reported missing, by name
      throw new LayoutProblem(`${rel} cannot be examined: ${(err as Error).message}`)
    }
    if (st.isSymbolicLink()) throw new LayoutProblem(`${rel} is a symbolic link; a layout's blobs must be inside it`)
    if (!st.isDirectory()) throw new LayoutProblem(`${rel} is not a directory`)
  }
}

/**
 * Checks that the blob `ref` names exists, has the descriptor's size and hashes to its digest. With
 * `keep`, returns its bytes (for documents, which are then parsed; the caller bounds their size);
 * otherwise streams it and returns null.
 */
async function verifyBlob(root: string, ref: BlobRef, options: { keep: boolean; signal?: AbortSignal | undefined }): Promise<Buffer | null> {
  const { digest, size } = ref.descriptor
  const { what } = ref
  const rel = blobPath(digest)
  const { fh, size: actual } = await openRegular(root, rel, what)
  try {
    if (actual !== size) throw sizeMismatch(ref, actual)
    const hash = createHash(digest.algorithm)
    const kept = options.keep ? Buffer.alloc(size) : null
    const buf = kept ?? Buffer.allocUnsafe(Math.min(READ_SIZE, size))
    let offset = 0
    while (offset < size) {
      if (options.signal?.aborted) throw abortedError(`checking ${what}`, options.signal)
      const at = kept ? offset : 0
      const { bytesRead } = await fh.read(buf, at, Math.min(buf.length - at, size - offset), offset)
      if (bytesRead === 0) throw new LayoutProblem(`${what} changed while being read`)
      hash.update(buf.subarray(at, at + bytesRead))
      offset += bytesRead
    }
    // a blob that grew since it was measured is not the blob that was hashed
    if ((await fh.read(Buffer.alloc(1), 0, 1, size)).bytesRead !== 0) throw new LayoutProblem(`${what} changed while being read`)
    checkDigest(ref, hash.digest('hex'))
    return kept
  } catch (err) {
    if (err instanceof LayoutProblem || err instanceof SnapdirError) throw err
    throw new LayoutProblem(`${what} cannot be read (${rel}): ${(err as Error).message}`)
  } finally {
    await fh.close()
  }
}

/** The blobs of an image layout directory, each checked as it is read. */
export class LayoutBlobs implements BlobReader {
  /** blob directories found to be real directories (checkBlobDirectory) */
  private readonly directories = new Set<DigestAlgorithm>()

  constructor(
    readonly root: string,
    private readonly signal?: AbortSignal,
  ) {}

  readFile(name: string, maxBytes: number): Promise<Buffer> {
    return readLayoutFile(this.root, name, maxBytes)
  }

  async readBlob(ref: BlobRef): Promise<Buffer> {
    return (await this.verify(ref, true))!
  }

  /** Checks a blob as readBlob does, streaming it: a layer of any size is checked in constant memory. */
  async checkBlob(ref: BlobRef): Promise<void> {
    await this.verify(ref, false)
  }

  /** Whether the layout has a file for the blob (a foreign layer may be left out); unchecked. */
  async hasBlob(d: Descriptor): Promise<boolean> {
    try {
      await fs.lstat(path.join(this.root, blobPath(d.digest)))
      return true
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false
      throw err
    }
  }

  private async verify(ref: BlobRef, keep: boolean): Promise<Buffer | null> {
    const { algorithm } = ref.descriptor.digest
    if (!this.directories.has(algorithm)) {
      await checkBlobDirectory(this.root, algorithm)
      this.directories.add(algorithm)
    }
    return verifyBlob(this.root, ref, { keep, signal: this.signal })
  }
}
