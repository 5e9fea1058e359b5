// Blob uploads in progress (OCI distribution-spec, "Pushing blobs"): each one a file on local disk
// under the state directory, never in the store. A session is opened by POST, grows by PATCH (each
// one whole or not at all: a PATCH that fails midway is cut back to where it began, so the offset a
// client reads back is always the bytes it sent in whole requests), and ends with PUT ?digest= (the
// bytes are hashed as they arrive and checked against the digest; a mismatch removes the upload) or
// DELETE. A session nobody touched for `idleMs` is removed by sweep(), and every session at close().
import { createHash, randomUUID, type Hash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Transform } from 'node:stream'
import { formatDigest, parseDigest, type Digest } from '../oci/digest.js'
import { RegistryError } from './errors.js'

export interface UploadSession {
  id: string
  repository: string
  /** bytes received so far, in whole requests */
  size: number
  file: string
  /** sha256 of the bytes so far (a sha512 digest is checked by reading the file again) */
  hash: Hash
  /** a request is appending: another one for the same session is refused */
  busy: boolean
  touched: number
}

/** A completed upload: its file, checked against `digest`, for the caller to move or remove. */
export interface FinishedUpload {
  file: string
  digest: string
  size: number
}

export interface UploadSessionsOptions {
  /** the directory uploads are written in (made if missing; leftovers of an earlier run removed) */
  dir: string
  /** a session untouched this long is removed by sweep() */
  idleMs: number
  now?: () => number
}

export class UploadSessions {
  private readonly sessions = new Map<string, UploadSession>()
  private readonly now: () => number

  constructor(private readonly options: UploadSessionsOptions) {
    if (!(options.idleMs > 0)) throw new RangeError(`UploadSessions: idleMs must be positive, got ${options.idleMs}`)
    this.now = options.now ?? Date.now
  }

  /** Makes the directory, emptied of what an earlier process left there (its sessions died with it). */
  async open(): Promise<void> {
    await fsp.rm(this.options.dir, { recursive: true, force: true })
    await fsp.mkdir(this.options.dir, { recursive: true })
  }

  async start(repository: string): Promise<UploadSession> {
    const id = randomUUID()
    const file = path.join(this.options.dir, id)
    await fsp.writeFile(file, Buffer.alloc(0), { flag: 'wx' })
    const session: UploadSession = { id, repository, size: 0, file, hash: createHash('sha256'), busy: false, touched: this.now() }
    this.sessions.set(id, session)
    return session
  }

  /** The session `id` of `repository`; BLOB_UPLOAD_UNKNOWN when there is none (never was, finished, or swept). */
  get(repository: string, id: string): UploadSession {
    const s = this.sessions.get(id)
    if (s === undefined || s.repository !== repository) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { message: `no upload ${id} in progress for ${repository}` })
    return s
  }

  /**
   * Appends `body` to the session. `range`, when the client sent Content-Range, must start where the
   * upload ends (else 416 with nothing appended); `length` (Content-Length) must be what arrives.
   */
  async append(session: UploadSession, body: Readable, options: { range?: string; length?: number } = {}): Promise<void> {
    if (session.busy) throw new RegistryError('BLOB_UPLOAD_INVALID', { message: `upload ${session.id} is busy with another request`, status: 416 })
    if (options.range !== undefined) {
      // START-END as the spec writes it; `bytes START-END/TOTAL` as some clients send it (RFC 9110's form)
      const m = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(options.range.trim())
      if (m === null) throw new RegistryError('BLOB_UPLOAD_INVALID', { message: `Content-Range ${JSON.stringify(options.range)} is not START-END`, status: 416 })
      const start = Number(m[1])
      const end = Number(m[2])
      if (start !== session.size || end < start) {
        throw new RegistryError('BLOB_UPLOAD_INVALID', {
          message: `Content-Range ${options.range} does not continue the upload, which holds ${session.size} bytes`,
          status: 416,
          headers: uploadHeaders(session),
        })
      }
      if (options.length !== undefined && options.length !== end - start + 1) {
        throw new RegistryError('BLOB_UPLOAD_INVALID', { message: `Content-Range ${options.range} is ${end - start + 1} bytes, Content-Length ${options.length}`, status: 416 })
      }
    }
    session.busy = true
    const hash = session.hash.copy()
    let received = 0
    const count = new Transform({
      transform(piece: Buffer, _enc, done) {
        received += piece.length
        hash.update(piece)
        done(null, piece)
      },
    })
    try {
      await pipeline(body, count, createWriteStream(session.file, { flags: 'a' }))
      if (options.length !== undefined && received !== options.length) {
        throw new RegistryError('SIZE_INVALID', { message: `the request carried ${received} bytes, its Content-Length said ${options.length}` })
      }
      session.size += received
      session.hash = hash
    } catch (err) {
      // nothing of a failed request stays: the upload is as it was before it
      await fsp.truncate(session.file, session.size).catch(() => {})
      throw err
    } finally {
      session.busy = false
      session.touched = this.now()
    }
  }

  /**
   * Ends the session: its bytes must hash to `digest` (DIGEST_INVALID otherwise, and the upload is
   * removed: nothing of it is kept). The session is gone either way; its file is the caller's on success.
   */
  async finish(session: UploadSession, digest: string): Promise<FinishedUpload> {
    if (session.busy) throw new RegistryError('BLOB_UPLOAD_INVALID', { message: `upload ${session.id} is busy with another request`, status: 416 })
    this.sessions.delete(session.id)
    const parsed = parseDigest(digest)
    try {
      if (typeof parsed === 'string') throw new RegistryError('DIGEST_INVALID', { message: `digest ${JSON.stringify(digest)} ${parsed}` })
      const computed = parsed.algorithm === 'sha256' ? session.hash.digest('hex') : await hashFile(session.file, parsed)
      if (computed !== parsed.encoded) {
        throw new RegistryError('DIGEST_INVALID', { message: `the upload's ${session.size} bytes hash to ${parsed.algorithm}:${computed}, not ${formatDigest(parsed)}` })
      }
      return { file: session.file, digest: formatDigest(parsed), size: session.size }
    } catch (err) {
      await fsp.rm(session.file, { force: true })
      throw err
    }
  }

  async cancel(session: UploadSession): Promise<void> {
    this.sessions.delete(session.id)
    await fsp.rm(session.file, { force: true })
  }

  /** Removes the sessions untouched for longer than idleMs (not one a request is appending to); returns how many. */
  async sweep(): Promise<number> {
    const before = this.now() - this.options.idleMs
    const stale = [...this.sessions.values()].filter((s) => !s.busy && s.touched < before)
    for (const s of stale) await this.cancel(s)
    return stale.length
  }

  get count(): number {
    return this.sessions.size
  }

  /** Removes every session and the directory. */
  async close(): Promise<void> {
    this.sessions.clear()
    await fsp.rm(this.options.dir, { recursive: true, force: true })
  }
}

async function hashFile(file: string, digest: Digest): Promise<string> {
  const hash = createHash(digest.algorithm)
  const fh = await fsp.open(file)
  try {
    for await (const piece of fh.createReadStream()) hash.update(piece as Buffer)
  } finally {
    await fh.close()
  }
  return hash.digest('hex')
}

/** Where an upload stands, as the spec has a registry say it: Range 0-<last byte> (0-0 when empty, as docker-registry answers). */
export function uploadHeaders(session: UploadSession): Record<string, string> {
  return { range: `0-${Math.max(session.size - 1, 0)}`, 'docker-upload-uuid': session.id }
}
