// A size-capped local store for chunk objects (and tree roots and parts), the local half of a cache over a store (caching-store.ts):
// chunks/<2 hex>/<id> (trees/, tree-parts/) as the store holds them (compressed, with the object header), written through
// FileStore's one temp-file + rename writer. Least recently used objects are evicted past the cap; use
// is recorded in the file's mtime, so the order survives a restart. Any number of mounts may share one
// directory: a file another mount evicted is a miss. Reads are async: a FUSE server must not block its
// thread on them.
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { abortedError, SnapdirError } from '../util/errors.js'
import { FileStore } from './file-store.js'
import { StoreLifecycle } from './lifecycle.js'
import { objectDirectory } from './objects.js'
import type { PruneStore, ReadOptions, StoreSpec } from './store.js'

export const DEFAULT_CACHE_BYTES = 2 * 1024 ** 3

/** What a cache holds: chunks, and the tree roots and parts a mount reads before it is up. */
const CACHED_KINDS = ['chunk', 'tree', 'tree-part'] as const

export function defaultCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache')
  return path.join(base, 'snapdir')
}

export class DiskCache extends StoreLifecycle implements PruneStore {
  readonly dir: string
  readonly url: string
  readonly spec: StoreSpec
  /** the directory, and the writer objects go in through */
  private readonly files: FileStore
  /** key -> stored size, in least-recently-used-first order (Map keeps insertion order) */
  private readonly index = new Map<string, number>()
  private bytes = 0

  constructor(
    dir: string,
    readonly capBytes = DEFAULT_CACHE_BYTES,
  ) {
    super()
    this.dir = path.resolve(dir)
    this.url = this.dir
    this.spec = { url: this.dir }
    this.files = new FileStore(this.dir, this.dir, { writeback: false })
  }

  /** A cache opened (created if need be) on `dir`. */
  static async open(dir: string, capBytes = DEFAULT_CACHE_BYTES): Promise<DiskCache> {
    const cache = new DiskCache(dir, capBytes)
    await cache.open({ create: true })
    return cache
  }

  /** Indexes what an earlier run left, oldest use first, and evicts past the cap. */
  protected async openStore(create: boolean): Promise<void> {
    await this.files.open(create ? { create } : {})
    const found: Array<{ key: string; size: number; used: number }> = []
    for (const top of CACHED_KINDS.map(objectDirectory)) await this.scan(top, found)
    found.sort((a, b) => a.used - b.used)
    for (const f of found) this.remember(f.key, f.size)
    await this.evict()
  }

  /** The objects an earlier run left under `top` (chunks, trees, tree-parts), into `found`. */
  private async scan(top: string, found: Array<{ key: string; size: number; used: number }>): Promise<void> {
    await fs.mkdir(path.join(this.dir, top), { recursive: true })
    for (const sub of await fs.readdir(path.join(this.dir, top))) {
      let names: string[]
      try {
        names = await fs.readdir(path.join(this.dir, top, sub))
      } catch {
        continue
      }
      for (const name of names) {
        const key = `${top}/${sub}/${name}`
        if (name.includes('.tmp-')) {
          await fs.rm(this.file(key), { force: true }) // left by a killed mount
          continue
        }
        const st = await fs.stat(this.file(key)).catch(() => null)
        if (st?.isFile()) found.push({ key, size: st.size, used: st.mtimeMs })
      }
    }
  }

  protected override async closeStore(): Promise<void> {
    await this.files.close()
  }

  get usedBytes(): number {
    return this.bytes
  }

  private file(key: string): string {
    return path.join(this.dir, ...key.split('/'))
  }

  private remember(key: string, size: number): void {
    this.forget(key)
    this.index.set(key, size)
    this.bytes += size
  }

  private forget(key: string): void {
    const size = this.index.get(key)
    if (size === undefined) return
    this.index.delete(key)
    this.bytes -= size
  }

  async has(key: string): Promise<boolean> {
    return this.index.has(key)
  }

  async size(key: string): Promise<number | null> {
    return this.index.get(key) ?? null
  }

  /** The stored object, now the most recently used; ERR_OBJECT_MISSING on a miss. */
  async get(key: string, options: ReadOptions = {}): Promise<Buffer> {
    if (options.signal?.aborted) throw abortedError(`reading ${key} from the disk cache ${this.url}`, options.signal)
    if (this.index.has(key)) {
      try {
        const data = await this.files.get(key, options)
        this.remember(key, data.length)
        const now = new Date()
        fs.utimes(this.file(key), now, now).catch(() => {})
        return data
      } catch (err) {
        if (!(err instanceof SnapdirError && err.code === 'ERR_OBJECT_MISSING')) throw err
        this.forget(key) // evicted by another mount sharing the directory
      }
    }
    throw new SnapdirError('ERR_OBJECT_MISSING', `${key} is not in the disk cache ${this.url}`, { data: { key, store: this.url } })
  }

  /** Adds an object, evicting the least recently used past the cap. */
  async put(key: string, data: Buffer): Promise<void> {
    if (this.index.has(key)) return
    await this.files.put(key, data)
    this.remember(key, data.length)
    await this.evict()
  }

  async delete(key: string): Promise<void> {
    this.forget(key)
    await fs.rm(this.file(key), { force: true })
  }

  async *list(prefix: string): AsyncIterable<string> {
    for (const key of [...this.index.keys()]) if (key.startsWith(prefix)) yield key
  }

  /** A cache need not outlive a crash: every object in it is verified again when it is read. */
  async flush(): Promise<void> {}

  private async evict(): Promise<void> {
    while (this.bytes > this.capBytes && this.index.size > 0) {
      const oldest = this.index.keys().next().value!
      this.forget(oldest)
      await fs.rm(this.file(oldest), { force: true })
    }
  }
}
