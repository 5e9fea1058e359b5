/**
 * A store is a flat namespace of immutable, content-addressed objects plus a few small mutable refs.
 * Keys are '/'-separated ('chunks/3f/3fa1…', 'trees/…', 'refs/revisions/…', 'config').
 * Every backend (file now; s3, memory later) passes the same conformance suite (test/store/).
 */
/** Enough to open the same store again, e.g. in a worker thread (see open-store.ts). */
export interface StoreSpec {
  url: string
  s3Endpoint?: string
}

export interface ReadOptions {
  signal?: AbortSignal
}

export interface Store {
  /** how the user named it, for messages */
  readonly url: string
  readonly spec: StoreSpec
  /** Checks the store is reachable; with `create`, makes an empty one if there is none. */
  open(options?: { create?: boolean }): Promise<void>
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
  /** Atomic and idempotent: readers see the whole object or none of it. */
  put(key: string, data: Buffer): Promise<void>
  /**
   * Encodes raw bytes as an object (format/object.ts) and puts it unless the store has it; returns
   * the bytes stored, 0 when it was there. Synchronous and without copying `raw`: only stores whose
   * writes are local system calls have it (FileStore); push's JS path (worker threads, sparse files) uses it.
   */
  addObjectSync?: ((key: string, raw: Buffer) => number) | undefined
  /**
   * For a store in a local directory: the directory chunk objects live in (as objectKey lays them
   * out: <dir>/<first two hex digits>/<id>) and a tag for temporary names unique to this process (the
   * native side numbers them). Push then reads, cuts, hashes and writes chunks in native code
   * (native/file-batch.c).
   */
  readonly localChunks?: { dir: string; tmpTag: string } | undefined
  /** Keys under a prefix ending in '/', in no particular order. */
  list(prefix: string): AsyncIterable<string>
  /** Durability barrier: everything put before is on stable storage when this resolves. */
  flush(): Promise<void>
}
