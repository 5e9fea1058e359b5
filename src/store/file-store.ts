import { randomBytes } from 'node:crypto'
import fsSync, { constants, promises as fs } from 'node:fs'
import path from 'node:path'
import { native } from '../chunk/native.js'
import { ZSTD_LEVEL } from '../format/object.js'
import { objectDirectory } from './objects.js'
import { abortedError, isErrno, SnapdirError } from '../util/errors.js'
import { StoreLifecycle } from './lifecycle.js'
import type { ListedObject, SweepStore, ReadOptions, StoreSpec } from './store.js'

/**
 * A whole file, by the callback readFile: fs.promises.readFile makes a FileHandle and a promise per
 * step (open, stat, read, close), which cost half again as much CPU as the file's bytes for the
 * 2,000-odd chunks a layer's regeneration reads.
 */
function readWhole(file: string, signal: AbortSignal | undefined): Promise<Buffer> {
  return new Promise((resolve, reject) => fsSync.readFile(file, signal ? { signal } : {}, (err, data) => (err ? reject(err) : resolve(data))))
}

/**
 * A store in a local directory. put() writes a temporary file beside the final name and renames it,
 * so a reader (or a concurrent push) sees an object whole or not at all: the one such writer, which
 * the disk cache (disk-cache.ts) writes through too. No fsync per object: flush() syncs the whole file
 * system once, before the tree and the revision that name the objects are written (store/commit.ts).
 * has() and put() use blocking calls: they run in push's worker threads, where a page-cache write of
 * a chunk takes microseconds while an async call waits behind compression jobs in the thread pool.
 * With the native addon it is a LocalChunkStore (store.ts): push writes chunks into it directly.
 */
// temporary names unique across processes and threads without a random draw per object
const TMP_PREFIX = `${process.pid}-${randomBytes(4).toString('hex')}`
let tmpCounter = 0
const tmpName = (final: string): string => `${final}.tmp-${TMP_PREFIX}-${(tmpCounter++).toString(36)}`
/** Every writer's temporary names have this in them: put()'s, the native writers' (`<final>.tmp-<tag>-<n>`). */
const TMP_MARK = '.tmp-'

export class FileStore extends StoreLifecycle implements SweepStore {
  readonly url: string
  readonly spec: StoreSpec
  /** see LocalChunkStore (store.ts); absent without the native addon, which writes them */
  readonly localChunks: { dir: string; tmpTag: string } | undefined
  private readonly madeDirs = new Set<string>()

  /**
   * `writeback: false` leaves writing objects to disk to the kernel: for a store that is never
   * flushed (the disk cache), where starting it at once would only cost the writer's thread.
   * `durable: false` makes flush() return at once: for a scratch store deleted when the command ends
   * (snapdir id's), where syncing the whole file system would only wait on other programs' writes.
   */
  constructor(readonly root: string, url = root, private readonly options: { writeback?: boolean; durable?: boolean } = {}) {
    super()
    this.url = url
    this.spec = { url }
    this.localChunks = native ? { dir: path.join(root, objectDirectory('chunk')), tmpTag: `${TMP_PREFIX}-n` } : undefined
  }

  protected async openStore(create: boolean): Promise<void> {
    let st
    try {
      st = await fs.stat(this.root)
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw this.ioError('cannot open', err)
      if (!create) {
        throw new SnapdirError('ERR_STORE_NOT_FOUND', `store ${this.url} does not exist`, { data: { store: this.url } })
      }
      try {
        // the first directory made (a missing parent's too): what discardIfCreated removes
        this.createdTop = (await fs.mkdir(this.root, { recursive: true })) ?? null
      } catch (mkErr) {
        throw this.ioError('cannot create', mkErr)
      }
      this.createdHere = this.createdTop !== null
      return
    }
    if (!st.isDirectory()) {
      throw new SnapdirError('ERR_STORE_NOT_FOUND', `store ${this.url} is not a directory`, { data: { store: this.url } })
    }
    // an empty directory given as a new store is filled; should the command fail, it is emptied again
    if (create) this.createdHere = (await fs.readdir(this.root).catch(() => ['?'])).length === 0
  }

  /** The directory openStore made, or null when it filled one that was there (which stays, emptied). */
  private createdTop: string | null = null

  protected override async removeCreated(): Promise<void> {
    if (this.createdTop !== null) return fs.rm(this.createdTop, { recursive: true, force: true })
    for (const name of await fs.readdir(this.root)) await fs.rm(path.join(this.root, name), { recursive: true, force: true })
  }

  private file(key: string): string {
    return path.join(this.root, ...key.split('/'))
  }

  private ioError(what: string, err: unknown): SnapdirError {
    const msg = err instanceof Error ? err.message : String(err)
    return new SnapdirError('ERR_STORE_IO', `store ${this.url}: ${what}: ${msg}`, { cause: err, data: { store: this.url } })
  }

  async has(key: string): Promise<boolean> {
    // existsSync, not accessSync: a miss (the usual answer during a push) builds no exception
    return fsSync.existsSync(this.file(key))
  }

  async size(key: string): Promise<number | null> {
    try {
      return fsSync.statSync(this.file(key), { throwIfNoEntry: false })?.size ?? null
    } catch (err) {
      if (isErrno(err, 'ENOTDIR')) return null
      throw this.ioError(`cannot check ${key}`, err)
    }
  }

  async get(key: string, options: ReadOptions = {}): Promise<Buffer> {
    try {
      return await readWhole(this.file(key), options.signal)
    } catch (err) {
      if (options.signal?.aborted) throw abortedError(`reading ${key} from ${this.url}`, options.signal)
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) {
        throw new SnapdirError('ERR_OBJECT_MISSING', `${key} is missing from ${this.url}`, { data: { key, store: this.url } })
      }
      throw this.ioError(`cannot read ${key}`, err)
    }
  }

  /** The same steps as put(), with encoding, in one native call (native/object-write.c). */
  addObjectSync(key: string, raw: Buffer): number {
    if (!native) throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', 'the native addon is not built: run npm install')
    const final = this.file(key)
    try {
      return native.writeObject(final, tmpName(final), raw, ZSTD_LEVEL)
    } catch (err) {
      throw this.ioError(`cannot write ${key}`, err)
    }
  }

  async put(key: string, data: Buffer): Promise<void> {
    const final = this.file(key)
    const dir = path.dirname(final)
    const tmp = tmpName(final)
    try {
      if (!this.madeDirs.has(dir)) {
        fsSync.mkdirSync(dir, { recursive: true })
        this.madeDirs.add(dir)
      }
      const fd = fsSync.openSync(tmp, 'wx', 0o644)
      try {
        for (let at = 0; at < data.length; ) at += fsSync.writeSync(fd, data, at, data.length - at)
        // writeback starts now, in the background, so flush() at the end has little left to wait for
        if (this.options.writeback !== false) native?.startWriteback(fd)
      } finally {
        fsSync.closeSync(fd)
      }
      fsSync.renameSync(tmp, final)
    } catch (err) {
      try {
        fsSync.rmSync(tmp, { force: true })
      } catch {
        // the temporary file was never created (its directory is what failed)
      }
      throw this.ioError(`cannot write ${key}`, err)
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    for await (const key of this.walk(prefix, false)) yield key
  }

  async *listObjects(prefix: string, options: { temporary?: boolean } = {}): AsyncIterable<ListedObject> {
    for await (const key of this.walk(prefix, options.temporary === true)) {
      let st
      try {
        st = await fs.lstat(this.file(key))
      } catch (err) {
        if (isErrno(err, 'ENOENT')) continue // deleted since the directory was read
        throw this.ioError(`cannot check ${key}`, err)
      }
      yield { key, size: st.size, modified: st.mtimeMs }
    }
  }

  /** The files under `prefix` ('' for the whole store), depth first. */
  private async *walk(prefix: string, temporary: boolean): AsyncGenerator<string> {
    const base = prefix.replace(/\/+$/, '')
    const walk = async function* (this: FileStore, rel: string): AsyncGenerator<string> {
      let names: import('node:fs').Dirent[]
      try {
        names = await fs.readdir(rel === '' ? this.root : this.file(rel), { withFileTypes: true })
      } catch (err) {
        if (isErrno(err, 'ENOENT')) return
        throw this.ioError(`cannot list ${rel}`, err)
      }
      for (const d of names) {
        const key = rel === '' ? d.name : `${rel}/${d.name}`
        if (d.isDirectory()) yield* walk.call(this, key)
        else if (d.isFile() && (temporary || !d.name.includes(TMP_MARK))) yield key
      }
    }
    yield* walk.call(this, base)
  }

  async deleteMany(keys: string[]): Promise<void> {
    for (const key of keys) {
      try {
        await fs.unlink(this.file(key))
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw this.ioError(`cannot delete ${key}`, err)
      }
    }
  }

  async flush(): Promise<void> {
    if (this.options.durable === false) return
    if (!native) return // without the addon there is no syncfs; rename order still protects against kills
    let fd: number | null = null
    try {
      // opened in this thread, so the sync is under way before flush() returns: the caller has work
      // to do meanwhile (push encodes its tree), and would hold an async open's callback back
      fd = fsSync.openSync(this.root, constants.O_RDONLY | constants.O_DIRECTORY)
      await native.syncfsAsync(fd)
    } catch (err) {
      throw this.ioError('cannot sync', err)
    } finally {
      if (fd !== null) fsSync.closeSync(fd)
    }
  }
}
