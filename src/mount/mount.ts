// A snapshot served read-only through FUSE: native/fusemount.c answers metadata from the inode table,
// and parks each read of chunked content for serveRead here, which gathers the slices of the chunks
// it covers (ChunkReader: memory, disk cache, store; verified) and hands them back. A failed chunk is
// an error on that read (errno.ts), logged with the chunk and the file; it never becomes wrong bytes.
//
// Lifecycle (hypercore's ready/close, stargz's idempotent Close): Mount.open resolves once the kernel
// mount is up and checked, and unmounts again on any failure after that; `ended` resolves when the
// mount ends, whoever unmounted it; close() unmounts if need be, waits for the end and frees what the
// mount holds, and returns the same promise when called again.
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { printablePath } from '../format/tree-paths.js'
import { CachingStore } from '../store/caching-store.js'
import type { DiskCache } from '../store/disk-cache.js'
import type { Store } from '../store/store.js'
import { SnapdirError, UsageError, isErrno } from '../util/errors.js'
import { ChunkReader, type ChunkReaderStats } from './chunk-reader.js'
import { errnoFor, errnoName } from './errno.js'
import { FUSE_EVENT, fuseAddon, type FuseHandle } from './fuse.js'
import { buildInodeTable, fileContent, fileRef, firstRefEndingAfter, type FileContent, type InodeTable } from './inode-table.js'
import { mountAt, type MountInfo } from './mountinfo.js'
import { TracePrefetch } from './trace-prefetch.js'
import { FSTYPE, abortConnection, unmount } from './unmount.js'
import { loadView, type ViewOptions } from './views.js'

export interface MountOptions {
  /** an open store (whoever opened it closes it, after the mount ended) */
  store: Store
  id: string
  /** what of the snapshot is shown (views.ts); the snapshot as pushed when absent */
  view?: ViewOptions
  mountpoint: string
  diskCache: DiskCache | null
  memoryBytes: number
  jobs: number
  timeoutMs: number
  /** how far past a sequential read chunks are fetched before they are asked for */
  readAheadBytes: number
  log: (line: string) => void
  /** runs once the kernel mount is up, before open() resolves; if it throws, the mount is undone */
  onMounted?: (mount: Mount) => void | Promise<void>
  /** record which chunks reads ask for, in the order they first do (trace(), mount/trace.ts) */
  recordTrace?: boolean
  /**
   * chunks to fetch ahead, in this order (a stored trace's), from as soon as the promise resolves:
   * while the tree is still loading too (trace-prefetch.ts); a promise, so that reading the trace
   * never delays the mount; null or a failure fetches nothing ahead
   */
  prefetch?: Promise<string[] | null>
  /** chunk fetches a prefetch keeps in flight once the mount is up (default 8), beside those that reads make */
  prefetchJobs?: number
}

export interface MountStats extends ChunkReaderStats {
  /** reads of chunked files that came to JS, and those the C side served from lent chunks */
  reads: number
  servedInC: number
  readErrors: number
  /** chunks a trace's prefetch loaded before any read asked for them */
  prefetched: number
}

/** The kernel may cache entries and attributes this long (seconds): the tree never changes. */
const KERNEL_CACHE_SECONDS = 365 * 24 * 3600

/** Chunk fetches a trace's prefetch keeps in flight while the tree is loading (trace-prefetch.ts). */
const PREFETCH_LOADING_JOBS = 4

/** Checks the mountpoint before the tree is loaded, so a typo costs no download. */
async function checkMountpoint(dir: string): Promise<string> {
  let real: string
  try {
    real = await fs.realpath(dir)
    if (!(await fs.stat(real)).isDirectory()) throw new UsageError(`mountpoint '${dir}' is not a directory`, 'ERR_TARGET')
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new UsageError(`mountpoint '${dir}' does not exist`, 'ERR_TARGET')
    if (isErrno(err, 'ENOTDIR')) throw new UsageError(`mountpoint '${dir}' is not a directory`, 'ERR_TARGET')
    if (isErrno(err, 'ENOTCONN')) throw new UsageError(`'${dir}' is a FUSE mount whose server is gone; unmount it first (snapdir umount ${dir})`, 'ERR_TARGET')
    throw err
  }
  const there = await mountAt(real)
  if (there) throw new UsageError(`'${dir}' is already a mount point (${there.fstype} ${there.source}); unmount it first`, 'ERR_TARGET')
  return real
}

export class Mount {
  /** resolves when the mount has ended (unmounted from here or from anywhere) and its FUSE thread is done */
  readonly ended: Promise<void>
  private readonly reader: ChunkReader
  private readonly handle: FuseHandle
  private readonly expectNext = new Map<number, number>()
  /** chunked files in tree order (table.files), for read-ahead across files */
  private readonly fileOrder: Uint32Array
  private lastStarted = -Infinity
  private info: MountInfo | null = null
  private hasEnded = false
  private closing: Promise<void> | null = null
  private reads = 0
  private hits = 0
  private readErrors = 0
  /** layer blobs regenerated from their recipes (readRecipeFile), by recipe ID */
  private readonly recipeFiles = new Map<string, Promise<fs.FileHandle>>()
  private blobDir: Promise<string> | null = null
  /** chunk ID -> its index in table.chunkIds */
  private readonly indexOf: Map<string, number>
  /** when recording: indexes of the chunks reads asked for, in the order of their first access */
  private readonly traced: Set<number> | null

  /**
   * Mounts at once: when this returns the kernel mount is up (or it threw with the mount undone). The
   * reader was made before the tree was loaded (a trace's prefetch fills it meanwhile): the chunks it
   * holds are lent to the C side here, those it takes in or lets go later through lend() and unlend().
   */
  private constructor(
    private readonly options: MountOptions,
    readonly mountpoint: string,
    private readonly table: InodeTable,
    reader: ChunkReader,
    private readonly prefetching: TracePrefetch | null,
  ) {
    const fuse = fuseAddon()
    this.indexOf = new Map(table.chunkIds.map((id, i) => [id, i]))
    this.traced = options.recordTrace ? new Set() : null
    this.reader = reader
    this.fileOrder = table.files
    let done!: () => void
    this.ended = new Promise((resolve) => (done = resolve))
    const fuseOptions = ['ro', 'default_permissions', `fsname=snapdir:${options.id.slice(0, 16)}`, 'subtype=snapdir']
    if (process.geteuid?.() === 0) fuseOptions.push('allow_other')
    const mount = (): FuseHandle => fuse.mount({
      mountpoint,
      fuseOptions,
      nodes: table.nodes,
      dirents: table.dirents,
      xattrs: table.xattrs,
      refs: table.refs,
      chunkCount: table.chunkIds.length,
      pool: table.pool,
      totalBytes: table.totalBytes,
      cacheSeconds: KERNEL_CACHE_SECONDS,
      onEvent: (kind, slot, ino, offset, size) => {
        if (kind === FUSE_EVENT.read) void this.serveRead(slot, ino, offset, size)
        else if (kind === FUSE_EVENT.hit) this.servedInC(ino, offset, size)
        else if (kind === FUSE_EVENT.exit) {
          this.hasEnded = true
          prefetching?.stop()
          fuse.close(this.handle)
          done()
        }
      },
    })
    this.handle = mount()
    for (const [id, raw] of reader.held()) this.lend(id, raw)
  }

  /** Chunks in the memory cache are lent to the C side, which serves reads of them without JS. */
  private lend(id: string, raw: Buffer): void {
    const i = this.indexOf.get(id)
    if (i !== undefined) fuseAddon().setChunk(this.handle, i, raw)
  }

  private unlend(id: string): void {
    const i = this.indexOf.get(id)
    if (i !== undefined) fuseAddon().dropChunk(this.handle, i)
  }

  /**
   * Loads the view and mounts it. Resolves once the kernel mount is up and is ours; any failure after
   * the kernel mount (the check, onMounted) unmounts it again before the error is rethrown.
   */
  static async open(options: MountOptions): Promise<Mount> {
    const mountpoint = await checkMountpoint(options.mountpoint)
    // the view's trees are read through the disk cache too: a second mount of an image reads them locally
    const cache = options.diskCache ? new CachingStore(options.store, options.diskCache) : null
    let mount: Mount | null = null
    const reader = new ChunkReader(options.store, {
      ...options,
      diskCache: cache,
      onCached: (id, raw) => mount?.lend(id, raw),
      onEvicted: (id) => mount?.unlend(id),
    })
    // the trace's chunks are fetched from now on, beside the tree. Without a disk cache it stops at
    // half the memory cache, so that it does not evict what it fetched before it is read
    const prefetch = options.prefetch
      ? new TracePrefetch(reader, options.prefetch, {
          jobs: options.prefetchJobs ?? 8,
          loadingJobs: PREFETCH_LOADING_JOBS,
          budgetBytes: options.diskCache ? Infinity : options.memoryBytes / 2,
        })
      : null
    try {
      const table = buildInodeTable(await loadView(cache ?? options.store, options.id, options.view ?? { view: 'tree' }))
      mount = new Mount(options, mountpoint, table, reader, prefetch)
    } catch (err) {
      prefetch?.stop()
      await reader.close().catch(() => {}) // aborts the prefetch's fetches and closes the disk cache
      await prefetch?.done
      throw err
    }
    try {
      mount.info = await mountAt(mountpoint)
      if (mount.info?.fstype !== FSTYPE) throw new SnapdirError('ERR_TARGET', `mounting at '${mountpoint}' did not take effect`)
      await options.onMounted?.(mount)
      const indexOf = mount.indexOf
      prefetch?.mounted((id) => indexOf.has(id))
    } catch (err) {
      await mount.close({ force: true }).catch((closeErr: Error) => options.log(`cannot undo the mount at ${mountpoint}: ${closeErr.message}`))
      throw err
    }
    return mount
  }

  /**
   * Unmounts (unless the mount ended already), waits for the FUSE thread to end and releases what the
   * mount holds: the native session, and the chunk reader (its fetches still under way are aborted, its
   * disk cache writes waited for and the cache closed). When files are still open there: throws and
   * the mount stays, or with `force` detaches it and fails whatever is pending, so the process can end.
   * A second call returns the first one's promise (a failed one may be tried again).
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    this.closing ??= this.shutdown(options).catch((err: unknown) => {
      this.closing = null
      throw err
    })
    return this.closing
  }

  private async shutdown(options: { force?: boolean }): Promise<void> {
    if (!this.hasEnded) {
      try {
        await unmount(this.mountpoint)
      } catch (err) {
        if (!options.force) throw err
        this.info ??= await mountAt(this.mountpoint)
        await unmount(this.mountpoint, { lazy: true })
        if (this.info) await abortConnection(this.info)
      }
    }
    await this.ended
    this.prefetching?.stop()
    await this.reader.close()
    await this.prefetching?.done // ends once the reader is closed: its fetches answer at once
    for (const file of this.recipeFiles.values()) await file.then((fh) => fh.close(), () => {})
    this.recipeFiles.clear()
    if (this.blobDir) await fs.rm(await this.blobDir, { recursive: true, force: true })
  }

  get stats(): MountStats {
    return { ...this.reader.stats, reads: this.reads, servedInC: this.hits, readErrors: this.readErrors, prefetched: this.prefetching?.prefetched ?? 0 }
  }

  /** The chunk IDs reads asked for so far, in the order of their first access ([] unless recording). */
  trace(): string[] {
    return this.traced ? [...this.traced].map((i) => this.table.chunkIds[i]!) : []
  }

  private async serveRead(slot: number, ino: number, offset: number, size: number): Promise<void> {
    const fuse = fuseAddon()
    this.reads++
    const file = fileContent(this.table, ino)
    try {
      if (!file) throw new SnapdirError('ERR_TREE_MALFORMED', `inode ${ino} has no content`)
      const data = file.recipe !== undefined ? [await this.readRecipeFile(file.recipe, offset, size)] : await this.readRange(ino, file, offset, size)
      fuse.replyRead(this.handle, slot, data)
    } catch (err) {
      this.readErrors++
      const errno = errnoFor(err)
      const where = file ? printablePath(file.path) : `inode ${ino}`
      this.options.log(`${errnoName(errno)} reading ${where} at offset ${offset}: ${(err as Error).message}`)
      fuse.replyError(this.handle, slot, errno)
    }
  }

  /**
   * A read of a layer blob stored as a recipe: on its first read the whole blob is regenerated into a
   * temporary file (oci/recipe-reader.ts, hashed against its digest), and reads are served from there
   * once it matched; a failure fails this read (EIO) and the next read tries again.
   */
  private async readRecipeFile(recipe: string, offset: number, size: number): Promise<Buffer> {
    let file = this.recipeFiles.get(recipe)
    if (file === undefined) {
      file = this.regenerate(recipe)
      this.recipeFiles.set(recipe, file)
      file.catch(() => this.recipeFiles.delete(recipe))
    }
    const fh = await file
    const out = Buffer.allocUnsafe(size)
    let got = 0
    while (got < size) {
      const { bytesRead } = await fh.read(out, got, size - got, offset + got)
      if (bytesRead === 0) break
      got += bytesRead
    }
    return out.subarray(0, got)
  }

  private async regenerate(recipe: string): Promise<fs.FileHandle> {
    this.blobDir ??= fs.mkdtemp(path.join(os.tmpdir(), 'snapdir-mount-blobs-'))
    const name = path.join(await this.blobDir, recipe)
    const fh = await fs.open(name, 'w+', 0o600)
    try {
      let at = 0
      const { writeRecipeBlob } = await import('../oci/recipe-reader.js')
      await writeRecipeBlob(this.options.store, recipe, async (piece) => {
        let done = 0
        while (done < piece.length) done += (await fh.write(piece, done, piece.length - done, at + done)).bytesWritten
        at += piece.length
      })
      return fh
    } catch (err) {
      await fh.close()
      await fs.rm(name, { force: true })
      throw err
    }
  }

  /** The C side served a read from chunks in memory: only read-ahead is left to do. */
  private servedInC(ino: number, offset: number, size: number): void {
    this.hits++
    const file = fileContent(this.table, ino)
    if (file && this.traced) {
      for (let k = firstRefEndingAfter(this.table, file, offset); k < file.count; k++) {
        const r = fileRef(this.table, file, k)
        if (r.end - r.length * r.count >= offset + size) break
        this.traced.add(r.chunk)
      }
    }
    if (file) this.readAhead(ino, file, offset, offset + size, firstRefEndingAfter(this.table, file, offset + size))
  }

  /** The slices of chunks that make up [offset, offset + size) of a file (size already clamped to EOF). */
  private readRange(ino: number, file: FileContent, offset: number, size: number): Promise<Buffer[]> {
    const ids = this.table.chunkIds
    const end = offset + size
    let k = firstRefEndingAfter(this.table, file, offset)
    const parts: Array<Promise<Buffer>> = []
    for (let at = offset; at < end && k < file.count; ) {
      const r = fileRef(this.table, file, k)
      const refStart = r.end - r.length * r.count
      const inner = (at - refStart) % r.length
      const take = Math.min(r.length - inner, end - at)
      const id = ids[r.chunk]!
      this.traced?.add(r.chunk)
      parts.push(
        this.reader.get(id).then((chunk) => {
          if (chunk.length < r.offset + r.length) {
            throw new SnapdirError('ERR_TREE_MALFORMED', `chunk ${id} is ${chunk.length} bytes, the tree reads it to ${r.offset + r.length}`)
          }
          return chunk.subarray(r.offset + inner, r.offset + inner + take)
        }),
      )
      at += take
      if (at >= r.end) k++
    }
    this.readAhead(ino, file, offset, end, k)
    return Promise.all(parts)
  }

  /**
   * Read-ahead, within a file and across files. A read that starts where the last one of this inode
   * ended is sequential: the chunks that follow in the file are fetched before they are asked for.
   * When files are being started one after another in tree order (the order of readdir, and so of
   * tar, cp -r and most walkers), the first chunks of the files that come next are fetched too:
   * without that a walk over many small files waits for one store round trip per file. A program
   * that reads one file fetches that file's chunks only.
   */
  private readAhead(ino: number, file: FileContent, offset: number, end: number, next: number): void {
    const ids = this.table.chunkIds
    const sequential = offset === 0 || this.expectNext.get(ino) === offset
    if (this.expectNext.size > 4096) this.expectNext.clear()
    this.expectNext.set(ino, end)
    if (!sequential) return
    let budget = this.options.readAheadBytes
    if (file.recipe !== undefined) return
    for (let k = next; k < file.count && budget > 0; k++) {
      const r = fileRef(this.table, file, k)
      this.reader.prefetch(ids[r.chunk]!)
      budget -= r.length
    }
    if (offset !== 0) return
    const at = indexIn(this.fileOrder, ino)
    const walking = at > this.lastStarted && at - this.lastStarted <= 4
    this.lastStarted = at
    if (!walking) return
    for (let i = at + 1; i < this.fileOrder.length && budget > 0; i++) {
      const f = fileContent(this.table, this.fileOrder[i]!)!
      if (f.recipe !== undefined) continue
      for (let k = 0; k < f.count && budget > 0; k++) {
        const r = fileRef(this.table, f, k)
        this.reader.prefetch(ids[r.chunk]!)
        budget -= r.length
      }
    }
  }
}

/** Where `ino` is in the ascending list `inos` (it is there: a chunked file's inode). */
function indexIn(inos: Uint32Array, ino: number): number {
  let lo = 0
  let hi = inos.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (inos[mid]! < ino) lo = mid + 1
    else hi = mid
  }
  return lo
}

export function describeMount(m: Mount, id: string, view: ViewOptions['view'] = 'tree'): string {
  return `mounted ${view === 'tree' ? '' : `the ${view} view of `}${id} at ${m.mountpoint} (read-only; Ctrl-C or 'snapdir umount ${m.mountpoint}' to unmount)`
}
