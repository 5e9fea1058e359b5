// Regenerated blobs kept on local disk, so that a layer stored as a recipe is compressed again once,
// not once per pull: the first request for a blob starts one fill (the blob's checked stream written
// to DIR/<algorithm>-<hex>, at the store's pace, whatever the clients' pace), and every request for it
// meanwhile, the first one too, reads the file as it grows. The last byte a reader asks for is held
// back until the fill has ended with the blob hashed to its digest: a fill that fails (a chunk
// damaged or missing, the store down) fails every reader before its response is whole, and leaves
// nothing cached, so the next request tries the store again. A request for a blob filled before it
// reads the file as it was when its fill ended, checked then: the file's identity (inode, size,
// modification and change times, taken from the open file when the fill ended) must be the same when
// the request opens it and again before its last byte goes, else the file is hashed as it is read and
// dropped unless it still matches the digest. So a file the disk or anyone changed is never served
// whole, and an unchanged one is not hashed once per pull. Filled blobs are evicted least recently
// used first beyond the size cap, except those a response is reading: those wait for their readers
// to end (the cap is exceeded meanwhile), so a reader never finds its file gone between finding the
// blob cached and opening it. The directory is emptied at open and removed at close when it was made
// for this server.
import { createHash, randomBytes } from 'node:crypto'
import type { BigIntStats } from 'node:fs'
import { mkdir, open, readdir, rm, unlink, type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import { parseDigest } from '../oci/digest.js'
import type { ServedBlob } from './repository-images.js'

interface Fill {
  file: string
  size: number
  written: number
  state: 'filling' | 'done' | 'failed'
  error?: unknown
  /** resolved once the file exists (or the fill failed before) */
  created: Promise<void>
  /** resolved (and replaced) whenever written or state change */
  changed: Promise<void>
  bump: () => void
  lastUsed: number
  /** responses reading it now: it is not evicted while there are any */
  readers: number
  /** once done: the file as the fill left it (see fileIdentity) */
  identity?: string
}

/** What changes when a file's bytes do: which file it is, its size, its modification and change times (ns). */
function fileIdentity(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`
}

export interface BlobCacheOptions {
  dir: string
  /** bytes of filled blobs kept; a blob larger than this is still served through the cache, then evicted */
  maxBytes: number
  /** remove `dir` at close (it was made for this server) */
  removeDir?: boolean
}

/** Bytes read from the file per piece sent. */
const READ_SIZE = 1 << 20

export class BlobCache {
  private readonly fills = new Map<string, Fill>()
  private kept = 0

  constructor(private readonly options: BlobCacheOptions) {}

  async open(): Promise<void> {
    await mkdir(this.options.dir, { recursive: true })
    for (const name of await readdir(this.options.dir)) await rm(path.join(this.options.dir, name), { recursive: true, force: true })
  }

  async close(): Promise<void> {
    if (this.options.removeDir) await rm(this.options.dir, { recursive: true, force: true })
  }

  /**
   * The bytes [start, end) of `blob`, read from its file in the cache as it fills; fails when the fill
   * does, and never gives the range's last byte before the blob checked whole.
   */
  async *read(blob: ServedBlob, start: number, end: number): AsyncGenerator<Buffer> {
    const fill = this.fillFor(blob)
    fill.lastUsed = Date.now()
    fill.readers++
    try {
      yield* this.readFill(blob, fill, start, end)
    } finally {
      fill.readers--
      // what waited for this reader to end goes now
      if (fill.readers === 0) this.evict()
    }
  }

  private async *readFill(blob: ServedBlob, fill: Fill, start: number, end: number): AsyncGenerator<Buffer> {
    // read afresh each time: the fill moves on while this reader waits
    const state = (): Fill['state'] => fill.state
    await fill.created
    if (state() === 'failed') throw fill.error
    // a file filled before this request: served as it is while it is the file the fill left, else
    // hashed again
    if (state() === 'done') {
      yield* this.readDone(blob, fill, start, end)
      return
    }
    const fh = await open(fill.file, 'r')
    try {
      let at = start
      for (;;) {
        if (state() === 'failed') throw fill.error
        if (at >= end && state() === 'done') return
        const limit = state() === 'done' ? end : Math.min(end - 1, fill.written)
        if (at >= limit) {
          await fill.changed
          continue
        }
        const buf = Buffer.allocUnsafe(Math.min(limit - at, READ_SIZE))
        const { bytesRead } = await fh.read(buf, 0, buf.length, at)
        if (bytesRead === 0) throw new Error(`the cached file of blob ${blob.digest} ends at ${at} bytes`)
        at += bytesRead
        yield buf.subarray(0, bytesRead)
      }
    } finally {
      await fh.close()
    }
  }

  /**
   * [start, end) of a filled blob's file, unhashed when the file is the one its fill checked (its
   * identity the same at open and once every byte was read, the last piece held back until then);
   * else as readChecked.
   */
  private async *readDone(blob: ServedBlob, fill: Fill, start: number, end: number): AsyncGenerator<Buffer> {
    const fh = await open(fill.file, 'r')
    try {
      const same = async (): Promise<boolean> => fill.identity !== undefined && fileIdentity(await fh.stat({ bigint: true })) === fill.identity
      if (!(await same())) {
        yield* this.readChecked(blob, fill, start, end, fh)
        return
      }
      let held: Buffer | null = null
      for (let at = start; at < end; ) {
        const buf = Buffer.allocUnsafe(Math.min(end - at, READ_SIZE))
        const { bytesRead } = await fh.read(buf, 0, buf.length, at)
        if (bytesRead === 0) break
        at += bytesRead
        if (held !== null) yield held
        held = buf.subarray(0, bytesRead)
      }
      if (!(await same())) {
        this.drop(blob, fill)
        throw new Error(`the cached copy of blob ${blob.digest} changed on disk while it was read: removed, the next request reads the store`)
      }
      if (held !== null) yield held
      else if (end > start) throw new Error(`the cached file of blob ${blob.digest} ends before byte ${end}`)
    } finally {
      await fh.close()
    }
  }

  /**
   * [start, end) of a filled blob's file, the whole file hashed as it is read (a range too: the
   * digest is of the whole), the last piece held back until the hash matches. A file that does not
   * match (the disk changed it) is dropped, so the next request fills it from the store again. `fh`
   * is the caller's to close.
   */
  private async *readChecked(blob: ServedBlob, fill: Fill, start: number, end: number, fh: FileHandle): AsyncGenerator<Buffer> {
    const digest = parseDigest(blob.digest)
    // served blobs passed the route's digest check
    if (typeof digest === 'string') throw new Error(`blob ${blob.digest} ${digest}`)
    const { algorithm, encoded } = digest
    const hash = createHash(algorithm)
    let held: Buffer | null = null
    for (let at = 0; at < fill.size; ) {
      const buf = Buffer.allocUnsafe(Math.min(fill.size - at, READ_SIZE))
      const { bytesRead } = await fh.read(buf, 0, buf.length, at)
      if (bytesRead === 0) break
      const piece = buf.subarray(0, bytesRead)
      hash.update(piece)
      const from = Math.max(start, at) - at
      const to = Math.min(end, at + bytesRead) - at
      at += bytesRead
      if (to <= from) continue
      if (held !== null) yield held
      held = piece.subarray(from, to)
    }
    if (hash.digest('hex') !== encoded) {
      this.drop(blob, fill)
      throw new Error(`the cached copy of blob ${blob.digest} does not match its digest (changed on disk): removed, the next request reads the store`)
    }
    if (held !== null) yield held
  }

  /** Forgets a filled blob whose file is bad; readers that have it open keep it until they end. */
  private drop(blob: ServedBlob, fill: Fill): void {
    if (this.fills.get(blob.digest) !== fill) return
    this.fills.delete(blob.digest)
    this.kept -= fill.size
    void unlink(fill.file).catch(() => {})
  }

  /** The fill of `blob`: the one there is (done, or going on), else a new one, started now. */
  private fillFor(blob: ServedBlob): Fill {
    const there = this.fills.get(blob.digest)
    if (there !== undefined) return there
    const file = path.join(this.options.dir, `${blob.digest.replace(':', '-')}-${randomBytes(4).toString('hex')}`)
    let bump = (): void => {}
    const fill: Fill = { file, size: blob.size, written: 0, state: 'filling', created: Promise.resolve(), changed: Promise.resolve(), bump: () => bump(), lastUsed: Date.now(), readers: 0 }
    const renew = (): void => {
      fill.changed = new Promise<void>((resolve) => (bump = () => {
        renew()
        resolve()
      }))
    }
    renew()
    this.fills.set(blob.digest, fill)
    // the file exists before any reader opens it
    const created = open(fill.file, 'w')
    fill.created = created.then(
      () => {},
      () => {},
    )
    void this.run(blob, fill, created)
    return fill
  }

  private async run(blob: ServedBlob, fill: Fill, created: Promise<FileHandle>): Promise<void> {
    let fh: FileHandle
    try {
      fh = await created
    } catch (err) {
      this.fail(blob, fill, err)
      return
    }
    try {
      for await (const piece of blob.content()) {
        // every byte: a short write (a full disk) must not leave a hole in a file taken as checked
        for (let at = 0; at < piece.length; ) {
          const { bytesWritten } = await fh.write(piece, at, piece.length - at, fill.written + at)
          if (bytesWritten === 0) throw new Error(`writing the cached copy of blob ${blob.digest} made no progress`)
          at += bytesWritten
        }
        fill.written += piece.length
        fill.bump()
      }
      // the stream ended, so the blob checked: the file as it is now is what later requests trust
      fill.identity = fileIdentity(await fh.stat({ bigint: true }))
      await fh.close()
      fill.state = 'done'
      fill.bump()
      this.kept += fill.size
      this.evict(blob.digest)
    } catch (err) {
      await fh.close().catch(() => {})
      this.fail(blob, fill, err)
    }
  }

  private fail(blob: ServedBlob, fill: Fill, err: unknown): void {
    fill.state = 'failed'
    fill.error = err
    fill.bump()
    // the next request goes to the store again; readers that have the file open keep it until they end
    if (this.fills.get(blob.digest) === fill) this.fills.delete(blob.digest)
    void unlink(fill.file).catch(() => {})
  }

  /**
   * Least recently used filled blobs go until what is kept fits (`keep` last of all); one a response
   * is reading stays, and goes when its last reader ends if it still does not fit then.
   */
  private evict(keep?: string): void {
    const done = [...this.fills.entries()].filter(([, f]) => f.state === 'done' && f.readers === 0).sort(([, a], [, b]) => a.lastUsed - b.lastUsed)
    const order = [...done.filter(([d]) => d !== keep), ...done.filter(([d]) => d === keep)]
    for (const [digest, f] of order) {
      if (this.kept <= this.options.maxBytes) break
      this.fills.delete(digest)
      this.kept -= f.size
      void unlink(f.file).catch(() => {})
    }
  }
}
