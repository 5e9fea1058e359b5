// A store is a flat namespace of immutable, content-addressed objects plus a few small mutable refs.
// Keys are '/'-separated ('chunks/3f/3fa1…', 'trees/…', 'refs/revisions/…', 'config'). Every backend
// (file, s3, memory) passes the same conformance suite (test/store/conformance.ts).
//
// What a store can do is split into capabilities, as desync splits Store / WriteStore / PruneStore, so
// a caller asks for what it needs: ReadStore to read (pull, mount, verify, a sync's source), Store to
// write as well (push, a sync's destination; every backend), LocalChunkStore for push's native path
// (a store in a local directory), PruneStore to delete (the disk cache drops a damaged copy),
// SweepStore to delete in batches and to list with times (gc, rm, writers' leases).

/** Enough to open the same store again, e.g. in a worker thread (see open-store.ts). */
export interface StoreSpec {
  url: string
  s3Endpoint?: string
  /** s3:// and gs://: the profile of the AWS shared config and credentials files to sign with */
  profile?: string
  /** what a command calls this store besides its URL ('source', 'destination'), named in its errors */
  role?: string
}

export interface ReadOptions {
  signal?: AbortSignal
}

export interface OpenOptions {
  /** make an empty store if there is none (push, a sync's destination) */
  create?: boolean
}

/**
 * Reading, and the lifecycle every store has (hypercore's ready/close): open() is memoised (callers
 * share one open; a failed one is not remembered, so open({ create: true }) after a failed open()
 * creates), close() is idempotent and releases what the store holds. Whoever opens a store closes it.
 */
export interface ReadStore {
  /** how the user named it, for messages */
  readonly url: string
  readonly spec: StoreSpec
  /** Checks the store is there (ERR_STORE_NOT_FOUND if not); with `create`, makes an empty one. */
  open(options?: OpenOptions): Promise<void>
  close(): Promise<void>
  has(key: string): Promise<boolean>
  /** The stored size of an object, or null when the store does not have it (one request). */
  size(key: string): Promise<number | null>
  /**
   * The stored bytes; throws SnapdirError ERR_OBJECT_MISSING (data.key) when absent, ERR_ABORTED when
   * `signal` aborts first (the request is cancelled where the backend can). Chunks are read through
   * getChunk (chunks.ts), which verifies them.
   */
  get(key: string, options?: ReadOptions): Promise<Buffer>
  /** Keys under a prefix ending in '/', in no particular order. */
  list(prefix: string): AsyncIterable<string>
}

/** A store that takes new objects: what every backend is. */
export interface Store extends ReadStore {
  /** Atomic and idempotent: readers see the whole object or none of it. */
  put(key: string, data: Buffer): Promise<void>
  /** Durability barrier: everything put before is on stable storage when this resolves. */
  flush(): Promise<void>
  /**
   * After a failed command: removes the store if this process's open({ create: true }) made it and
   * nothing was committed to it since; true if it did (lifecycle.ts). Call it before close().
   */
  discardIfCreated(): Promise<boolean>
}

/**
 * A store in a local directory whose writes are plain system calls (FileStore with the native addon):
 * push cuts, hashes and writes chunks straight into it, in native code and from worker threads.
 */
export interface LocalChunkStore extends Store {
  /**
   * Encodes raw bytes as an object (format/object.ts) and writes it unless the store has it; returns
   * the bytes stored, 0 when it was there. Synchronous and without copying `raw`.
   */
  addObjectSync(key: string, raw: Buffer): number
  /**
   * The directory chunk objects live in (as objectKey lays them out: <dir>/<first two hex digits>/<id>)
   * and a tag for temporary names unique to this process (the native side numbers them): what
   * native/file-batch.c writes chunks with.
   */
  readonly localChunks: { dir: string; tmpTag: string }
}

/** An object as a listing with times gives it. */
export interface ListedObject {
  key: string
  size: number
  /** when it was last written, in ms since the epoch: a file's mtime, S3's LastModified */
  modified: number
}

/** A store objects can be deleted from. */
export interface PruneStore extends Store {
  /** Removes an object; one that is not there is no error. */
  delete(key: string): Promise<void>
}

/** A store that can be swept: gc (store/gc.ts), rm, and the leases of writers (write-lease.ts). */
export interface SweepStore extends Store {
  /** Removes objects; one that is not there is no error. Batched where the backend can (S3: 1000 keys a request). */
  deleteMany(keys: string[]): Promise<void>
  /**
   * Like list(), with each object's size and time. `temporary` adds what writers left under temporary
   * names (a file store's `*.tmp-*` files: a killed writer's), which list() never shows.
   */
  listObjects(prefix: string, options?: { temporary?: boolean }): AsyncIterable<ListedObject>
}

/** Whether `store` can be swept (every backend; not a cache or a view of one). */
export function isSweepStore(store: ReadStore): store is SweepStore {
  const s = store as Partial<SweepStore>
  return typeof s.deleteMany === 'function' && typeof s.listObjects === 'function'
}

/** Whether push can write chunks into `store` directly (see LocalChunkStore). */
export function isLocalChunkStore(store: ReadStore | null): store is LocalChunkStore {
  return store !== null && (store as Partial<LocalChunkStore>).localChunks !== undefined
}
