// A snapshot served read-only through FUSE: native/fusemount.c answers metadata from the inode table,
// and parks each read of chunked content for serveRead here, which gathers the slices of the chunks
// it covers (ChunkReader: memory, disk cache, store; verified) and hands them back. A failed chunk is
// EIO on that read, logged with the chunk and the file; it never becomes wrong bytes.
import fs from 'node:fs/promises'
import os from 'node:os'
import { printablePath } from '../format/tree-paths.js'
import type { DiskCache } from '../store/disk-cache.js'
import type { Store } from '../store/store.js'
import { SnapdirError, UsageError, isErrno } from '../util/errors.js'
import { ChunkReader, type ChunkReaderStats } from './chunk-reader.js'
import { EV_EXIT, EV_HIT, EV_READ, fuseAddon } from './fuse.js'
import { buildInodeTable, type FileContent, type InodeTable } from './inode-table.js'
import { mountAt, type MountInfo } from './mountinfo.js'
import { FSTYPE, abortConnection, unmount } from './unmount.js'
import { loadView, type ViewOptions } from './views.js'

export interface MountOptions {
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
}

export interface MountStats extends ChunkReaderStats {
  /** reads of chunked files that came to JS, and those the C side served from lent chunks */
  reads: number
  servedInC: number
  readErrors: number
}

/** The kernel may cache entries and attributes this long (seconds): the tree never changes. */
const KERNEL_CACHE_SECONDS = 365 * 24 * 3600
const { EIO } = os.constants.errno

/** Checks the mountpoint before the tree is loaded, so a typo costs no download. */
async function checkMountpoint(dir: string): Promise<string> {
  let real: string
  try {
    real = await fs.realpath(dir)
    if (!(await fs.stat(real)).isDirectory()) throw new UsageError(`mountpoint '${dir}' is not a directory`, 'ERR_TARGET')
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new UsageError(`mountpoint '${dir}' does not exist`, 'ERR_TARGET')
    if (isErrno(err, 'ENOTDIR')) throw new UsageError(`mountpoint '${dir}' is not a directory`, 'ERR_TARGET')
    if (isErrno(err, 'ENOTCONN')) throw new SnapdirError('ERR_TARGET', `'${dir}' is a FUSE mount whose server is gone; unmount it first (snapdir umount ${dir})`)
    throw err
  }
  const there = await mountAt(real)
  if (there) throw new SnapdirError('ERR_TARGET', `'${dir}' is already a mount point (${there.fstype} ${there.source}); unmount it first`)
  return real
}

export class MountedSnapshot {
  readonly closed: Promise<void>
  private readonly reader: ChunkReader
  private readonly handle: object
  private readonly expectNext = new Map<number, number>()
  /** chunked files in tree order, and where each inode is in it (for read-ahead across files) */
  private readonly fileOrder: number[]
  private readonly fileIndex = new Map<number, number>()
  private lastStarted = -Infinity
  private info: MountInfo | null = null
  private reads = 0
  private hits = 0
  private readErrors = 0

  private constructor(
    private readonly options: MountOptions,
    readonly mountpoint: string,
    private readonly table: InodeTable,
  ) {
    const fuse = fuseAddon()
    const indexOf = new Map(table.chunkIds.map((id, i) => [id, i]))
    // chunks in the memory cache are lent to the C side, which serves reads of them without JS
    this.reader = new ChunkReader(options.store, {
      ...options,
      onCached: (id, raw) => {
        const i = indexOf.get(id)
        if (i !== undefined) fuse.setChunk(this.handle, i, raw)
      },
      onEvicted: (id) => {
        const i = indexOf.get(id)
        if (i !== undefined) fuse.dropChunk(this.handle, i)
      },
    })
    this.fileOrder = [...table.files.keys()].sort((a, b) => a - b)
    this.fileOrder.forEach((ino, i) => this.fileIndex.set(ino, i))
    let done!: () => void
    this.closed = new Promise((resolve) => (done = resolve))
    const source = `snapdir:${options.id.slice(0, 16)}`
    const mountOptions = ['ro', 'default_permissions', `fsname=${source}`, 'subtype=snapdir']
    if (process.geteuid?.() === 0) mountOptions.push('allow_other')
    this.handle = fuse.mount(
      mountpoint, mountOptions, table.nodes, table.dirents, table.xattrs, table.refs, table.chunkIds.length, table.pool,
      table.totalBytes, KERNEL_CACHE_SECONDS,
      (kind, slot, ino, offset, size) => {
        if (kind === EV_READ) void this.serveRead(slot, ino, offset, size)
        else if (kind === EV_HIT) this.servedInC(ino, offset, size)
        else if (kind === EV_EXIT) {
          fuse.close(this.handle)
          done()
        }
      },
    )
  }

  static async mount(options: MountOptions): Promise<MountedSnapshot> {
    const mountpoint = await checkMountpoint(options.mountpoint)
    await options.store.open()
    const tree = await loadView(options.store, options.id, options.view ?? { view: 'tree' })
    const mounted = new MountedSnapshot(options, mountpoint, buildInodeTable(tree))
    mounted.info = await mountAt(mountpoint)
    if (mounted.info?.fstype !== FSTYPE) throw new SnapdirError('ERR_TARGET', `mounting at '${mountpoint}' did not take effect`)
    return mounted
  }

  /** Waits (at most `ms`) for chunks fetched so far to reach the disk cache. */
  async settle(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.reader.settle(), new Promise((resolve) => (timer = setTimeout(resolve, ms)))])
    clearTimeout(timer)
  }

  get stats(): MountStats {
    return { ...this.reader.stats, reads: this.reads, servedInC: this.hits, readErrors: this.readErrors }
  }

  /** Unmounts and waits for the FUSE thread to end. When files are still open: throws, or with `force`
   * detaches the mount and fails whatever is still pending, so the process can exit at once. */
  async unmount(options: { force?: boolean } = {}): Promise<void> {
    try {
      await unmount(this.mountpoint)
    } catch (err) {
      if (!options.force) throw err
      await unmount(this.mountpoint, { lazy: true })
      if (this.info) await abortConnection(this.info)
    }
    await this.closed
  }

  private async serveRead(slot: number, ino: number, offset: number, size: number): Promise<void> {
    const fuse = fuseAddon()
    this.reads++
    const file = this.table.files.get(ino)
    try {
      if (!file) throw new SnapdirError('ERR_TREE_MALFORMED', `inode ${ino} has no content`)
      fuse.replyRead(this.handle, slot, await this.readRange(ino, file, offset, size))
    } catch (err) {
      this.readErrors++
      const where = file ? printablePath(file.path) : `inode ${ino}`
      this.options.log(`EIO reading ${where} at offset ${offset}: ${(err as Error).message}`)
      fuse.replyError(this.handle, slot, EIO)
    }
  }

  /** The C side served a read from chunks in memory: only read-ahead is left to do. */
  private servedInC(ino: number, offset: number, size: number): void {
    this.hits++
    const file = this.table.files.get(ino)
    if (file) this.readAhead(ino, file, offset, offset + size, firstEndAfter(file.ends, offset + size))
  }

  /** The slices of chunks that make up [offset, offset + size) of a file (size already clamped to EOF). */
  private readRange(ino: number, file: FileContent, offset: number, size: number): Promise<Buffer[]> {
    const ids = this.table.chunkIds
    const end = offset + size
    let k = firstEndAfter(file.ends, offset)
    const parts: Array<Promise<Buffer>> = []
    for (let at = offset; at < end && k < file.refs.length; ) {
      const r = file.refs[k]!
      const refStart = file.ends[k]! - r.length * r.count
      const inner = (at - refStart) % r.length
      const take = Math.min(r.length - inner, end - at)
      const id = ids[file.chunks[k]!]!
      parts.push(
        this.reader.get(id).then((chunk) => {
          if (chunk.length < r.offset + r.length) {
            throw new SnapdirError('ERR_TREE_MALFORMED', `chunk ${id} is ${chunk.length} bytes, the tree reads it to ${r.offset + r.length}`)
          }
          return chunk.subarray(r.offset + inner, r.offset + inner + take)
        }),
      )
      at += take
      if (at >= file.ends[k]!) k++
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
    for (let k = next; k < file.refs.length && budget > 0; k++) {
      this.reader.prefetch(ids[file.chunks[k]!]!)
      budget -= file.refs[k]!.length
    }
    if (offset !== 0) return
    const at = this.fileIndex.get(ino)!
    const walking = at > this.lastStarted && at - this.lastStarted <= 4
    this.lastStarted = at
    if (!walking) return
    for (let i = at + 1; i < this.fileOrder.length && budget > 0; i++) {
      const f = this.table.files.get(this.fileOrder[i]!)!
      for (let k = 0; k < f.refs.length && budget > 0; k++) {
        this.reader.prefetch(ids[f.chunks[k]!]!)
        budget -= f.refs[k]!.length
      }
    }
  }
}

/** The index of the first ref whose bytes end after `offset` (ends is increasing). */
function firstEndAfter(ends: Float64Array, offset: number): number {
  let lo = 0
  let hi = ends.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (ends[mid]! <= offset) lo = mid + 1
    else hi = mid
  }
  return lo
}

export function describeMount(m: MountedSnapshot, id: string, view: ViewOptions['view'] = 'tree'): string {
  return `mounted ${view === 'tree' ? '' : `the ${view} view of `}${id} at ${m.mountpoint} (read-only; Ctrl-C or 'snapdir umount ${m.mountpoint}' to unmount)`
}
