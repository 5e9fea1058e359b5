import { abortedError, SnapdirError } from '../util/errors.js'
import { StoreLifecycle } from './lifecycle.js'
import type { ListedObject, SweepStore, ReadOptions, StoreSpec } from './store.js'

/**
 * A store in this process's memory: for tests and for staging nothing. Copies on put and get so a
 * caller can never change a stored object through a buffer it kept.
 */
export class MemoryStore extends StoreLifecycle implements SweepStore {
  readonly url: string
  readonly spec: StoreSpec
  private objects: Map<string, Buffer> | null = null
  private readonly modified = new Map<string, number>()

  constructor(name = 'memory') {
    super()
    this.url = `memory:${name}`
    this.spec = { url: this.url }
  }

  protected async openStore(create: boolean): Promise<void> {
    if (this.objects) return
    if (!create) throw new SnapdirError('ERR_STORE_NOT_FOUND', `store ${this.url} does not exist`, { data: { store: this.url } })
    this.objects = new Map()
  }

  private map(): Map<string, Buffer> {
    if (!this.objects) throw new SnapdirError('ERR_STORE_NOT_FOUND', `store ${this.url} is not open`)
    return this.objects
  }

  async has(key: string): Promise<boolean> {
    return this.map().has(key)
  }

  async size(key: string): Promise<number | null> {
    return this.map().get(key)?.length ?? null
  }

  async get(key: string, options: ReadOptions = {}): Promise<Buffer> {
    if (options.signal?.aborted) throw abortedError(`reading ${key} from ${this.url}`, options.signal)
    const data = this.map().get(key)
    if (!data) throw new SnapdirError('ERR_OBJECT_MISSING', `${key} is missing from ${this.url}`, { data: { key, store: this.url } })
    return Buffer.from(data)
  }

  async put(key: string, data: Buffer): Promise<void> {
    this.map().set(key, Buffer.from(data))
    this.modified.set(key, Date.now())
  }

  async deleteMany(keys: string[]): Promise<void> {
    for (const key of keys) {
      this.map().delete(key)
      this.modified.delete(key)
    }
  }

  async *listObjects(prefix: string): AsyncIterable<ListedObject> {
    for (const [key, data] of [...this.map()]) if (key.startsWith(prefix)) yield { key, size: data.length, modified: this.modified.get(key) ?? 0 }
  }

  async *list(prefix: string): AsyncIterable<string> {
    for (const key of [...this.map().keys()]) if (key.startsWith(prefix)) yield key
  }

  async flush(): Promise<void> {}
}
