// A size-capped local cache of stored chunk objects, for mounts: chunks/<2 hex>/<id> as the store holds
// them (compressed, with the object header), so each one is verified again on every load and a damaged
// cache file is only ever a miss. Least recently used objects are evicted past the cap; use is recorded
// in the file's mtime, so the order survives a restart. Any number of mounts may share one directory:
// a file another mount evicted is a miss too. All I/O is async: a FUSE server must not block its thread.
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { isErrno } from '../util/errors.js'

export const DEFAULT_CACHE_BYTES = 2 * 1024 ** 3

export function defaultCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache')
  return path.join(base, 'snapdir')
}

export class DiskCache {
  /** id -> stored size, in least-recently-used-first order (Map keeps insertion order) */
  private readonly index = new Map<string, number>()
  private bytes = 0
  private tmpSeq = 0

  private constructor(
    readonly dir: string,
    readonly capBytes: number,
  ) {}

  /** Opens (creating) the cache and indexes what an earlier run left, oldest use first. */
  static async open(dir: string, capBytes = DEFAULT_CACHE_BYTES): Promise<DiskCache> {
    const cache = new DiskCache(path.resolve(dir), capBytes)
    await fs.mkdir(path.join(cache.dir, 'chunks'), { recursive: true })
    const found: Array<{ id: string; size: number; used: number }> = []
    for (const sub of await fs.readdir(path.join(cache.dir, 'chunks'))) {
      const subdir = path.join(cache.dir, 'chunks', sub)
      let names: string[]
      try {
        names = await fs.readdir(subdir)
      } catch {
        continue
      }
      for (const name of names) {
        const file = path.join(subdir, name)
        if (name.includes('.tmp-')) {
          await fs.rm(file, { force: true }) // left by a killed mount
          continue
        }
        const st = await fs.stat(file).catch(() => null)
        if (st?.isFile()) found.push({ id: name, size: st.size, used: st.mtimeMs })
      }
    }
    found.sort((a, b) => a.used - b.used)
    for (const f of found) cache.remember(f.id, f.size)
    await cache.evict()
    return cache
  }

  get usedBytes(): number {
    return this.bytes
  }

  private file(id: string): string {
    return path.join(this.dir, 'chunks', id.slice(0, 2), id)
  }

  private remember(id: string, size: number): void {
    this.forget(id)
    this.index.set(id, size)
    this.bytes += size
  }

  private forget(id: string): void {
    const size = this.index.get(id)
    if (size === undefined) return
    this.index.delete(id)
    this.bytes -= size
  }

  /** The stored object, or null on a miss. */
  async get(id: string): Promise<Buffer | null> {
    if (!this.index.has(id)) return null
    try {
      const data = await fs.readFile(this.file(id))
      this.remember(id, data.length)
      const now = new Date()
      fs.utimes(this.file(id), now, now).catch(() => {})
      return data
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err
      this.forget(id)
      return null
    }
  }

  /** Adds an object (write beside, then rename: readers never see half of one), evicting past the cap. */
  async put(id: string, stored: Buffer): Promise<void> {
    if (this.index.has(id)) return
    const final = this.file(id)
    const tmp = `${final}.tmp-${process.pid}-${this.tmpSeq++}`
    await fs.mkdir(path.dirname(final), { recursive: true })
    try {
      await fs.writeFile(tmp, stored)
      await fs.rename(tmp, final)
    } catch (err) {
      await fs.rm(tmp, { force: true })
      throw err
    }
    this.remember(id, stored.length)
    await this.evict()
  }

  /** Drops an object found damaged. */
  async drop(id: string): Promise<void> {
    this.forget(id)
    await fs.rm(this.file(id), { force: true })
  }

  private async evict(): Promise<void> {
    while (this.bytes > this.capBytes && this.index.size > 0) {
      const oldest = this.index.keys().next().value!
      this.forget(oldest)
      await fs.rm(this.file(oldest), { force: true })
    }
  }
}
