import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { SnapdirError } from '../util/errors.js'

/**
 * A directory listing (native/fsmeta.c): all names in one buffer, STAT_ROW numbers per entry in
 * `rows` (ROW gives each one's place), and the xattrs of the entries that have any, by index.
 */
export type DirListing = [names: Buffer, rows: Float64Array, xattrs: Array<Array<[Buffer, Buffer]> | undefined>]
export const STAT_ROW = 14
/** inode numbers are 64-bit, so they come in two exact halves */
export const ROW = {
  nameStart: 0, nameLength: 1, mode: 2, uid: 3, gid: 4, size: 5, mtimeSec: 6, mtimeNsec: 7, nlink: 8, rdev: 9,
  blocks: 10, inoHigh: 11, inoLow: 12, dev: 13,
} as const

/** The kinds of a cutFiles job, as native/file-batch.c numbers them. */
export const CUT_JOB = { whole: 0, inline: 1, group: 2 } as const
/** Where a cutFiles batch failed (its error's `where`): opening or reading a source file, a source file
 * that shrank while read, writing a chunk to the store, compressing one. */
export const CUT_WHERE = { open: 0, read: 1, shrank: 2, store: 3, compress: 4 } as const

export interface CutFilesOptions {
  /** the native chunker's handle */
  chunker: object
  paths: Buffer[]
  sizes: Float64Array
  /** [kind (CUT_JOB), first file, file count] triples */
  jobs: Uint32Array
  /** where the chunks go (chunks/ of a file store), or null to only cut and hash */
  chunkDir: string | null
  /** part of every temporary file name in chunkDir */
  tmpTag: string
  /** zstd level */
  level: number
}

/** How a cutFiles batch rejects: code is errno's name, or ERR_SHRANK / ERR_COMPRESS. */
export interface CutFilesError extends Error {
  code: string
  where: (typeof CUT_WHERE)[keyof typeof CUT_WHERE]
  path?: string
  syscall?: string
}

/** A Go flate restart point as native/go-flate-addon.c lays it out in a row of doubles. */
export const GO_FLATE_RESTART_ROW = { input: 0, base: 1, blockStart: 2, outBit: 3, length: 4, offset: 5, byteAvailable: 6 } as const

/** The C addon built from native/ at install (build/Release/snapdir.node). */
export interface NativeAddon {
  chunkerCreate(min: number, avg: number, max: number, level: number, seed: bigint): object
  chunkerCuts(handle: object, data: Uint8Array, eof: boolean, lengths: Uint32Array, hashes: BigUint64Array | null): number
  chunkerZeroChunk(handle: object): [number, bigint]
  setXattr(path: Buffer | string, name: Buffer, value: Buffer): void
  mknod(path: Buffer | string, mode: number, rdev: number): void
  setTimes(path: Buffer | string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void
  seekData(fd: number, offset: number): number
  seekHole(fd: number, offset: number): number
  /** syncfs(2) in the libuv thread pool */
  syncfsAsync(fd: number): Promise<void>
  /** sync_file_range(SYNC_FILE_RANGE_WRITE): start writeback of a file's dirty pages, do not wait */
  startWriteback(fd: number): void
  /** posix_fadvise(WILLNEED) over the whole file: queue reads of what is not cached, do not wait */
  willNeed(fd: number): void
  /** every entry of a directory but '.' and '..', in directory order, with its lstat and xattrs */
  readdirStat(dir: Buffer | string): DirListing
  /** the same for one path, as a listing of one entry with an empty name */
  lstatRow(path: Buffer | string): DirListing
  /** starts threads that walk the tree ahead of a scan, warming its metadata (native/prefetch.c) */
  prefetchTree(root: Buffer | string): void
  /**
   * Unless finalPath exists: encodes raw as a store object (format/object.ts; zstd at `level` when
   * smaller), writes it at tmpPath, making its directory if missing, and renames it to finalPath.
   * Returns the bytes stored, 0 when the object was there already (native/object-write.c).
   */
  writeObject(finalPath: string, tmpPath: string, raw: Buffer, level: number): number
  /**
   * Reads, cuts, hashes and stores a batch of files on a libuv pool thread (native/file-batch.c); rejects
   * with a CutFilesError.
   */
  cutFiles(options: CutFilesOptions): Promise<{ counts: Uint32Array; lengths: Uint32Array; ids: Buffer; inline: Buffer; written: Float64Array }>
  cutFilesWhere: typeof CUT_WHERE
  cutFilesJob: typeof CUT_JOB
  /** BLAKE3-256 of the bytes (native/hash.c) */
  blake3(data: Uint8Array): Buffer
  /** A Go 1.19 compress/flate encoder at that level, -2..9 (native/go-flate.c; oci/compress/go-flate.ts) */
  goFlateCreate(level: number, followWrites: boolean, recordRestarts: boolean): object
  /** As Go's Writer.Write: the raw DEFLATE bytes produced so far */
  goFlateWrite(handle: object, data: Uint8Array): Buffer
  /** As Go's Writer.Close: the rest of the stream; the handle is then spent */
  goFlateEnd(handle: object): Buffer
  /** goFlateWrite and goFlateEnd on the libuv pool; the handle refuses other calls until it settles */
  goFlateWriteAsync(handle: object, data: Uint8Array): Promise<Buffer>
  goFlateEndAsync(handle: object): Promise<Buffer>
  /** a klauspost pgzip raw DEFLATE encoder: level -2..9, blockSize > 16 KiB, worker threads (native/pgzip.c) */
  pgzipCreate(level: number, blockSize: number, threads: number): object
  /** the deflate bytes of the blocks finished so far, in order */
  pgzipWrite(handle: object, input: Uint8Array): Buffer
  /** compresses the last block, waits for every block: the rest of the stream */
  pgzipEnd(handle: object): Buffer
  /** a klauspost/compress zstd encoder at that EncoderLevel (1 SpeedFastest, 2 SpeedDefault: what containers/image writes layers with) (native/kzstd.c) */
  zstdCreate(level: number): object
  /** the zstd bytes of the blocks finished so far (the frame header with the first) */
  zstdWrite(handle: object, input: Uint8Array): Buffer
  /** the last block and the checksum; the handle is then spent */
  zstdEnd(handle: object): Buffer
  /** zstdWrite and zstdEnd on the libuv pool (the handle is busy until the promise settles) */
  zstdWriteAsync(handle: object, input: Uint8Array): Promise<Buffer>
  zstdEndAsync(handle: object): Promise<Buffer>
  /** pgzipWrite and pgzipEnd on the libuv pool; the handle refuses other calls until it settles */
  pgzipWriteAsync(handle: object, input: Uint8Array): Promise<Buffer>
  pgzipEndAsync(handle: object): Promise<Buffer>
  /**
   * A stored object's payload decoded (codec 0 raw, 1 zstd, at most rawLength + 1 bytes) and its
   * BLAKE3-256, on the libuv pool (native/object-read.c)
   */
  objectDecode(payload: Uint8Array, codec: number, rawLength: number): Promise<[Buffer, Buffer]>
  /** The restart points noted since the last call, GO_FLATE_RESTART_ROW numbers each */
  goFlateRestarts(handle: object): Float64Array
  /** One segment of a stream from a restart point (a GO_FLATE_RESTART_ROW row) to endBit (-1: the end), on the libuv pool */
  goFlateSegment(level: number, restart: Float64Array, endBit: number, input: Uint8Array, inputEnds: boolean): Promise<Buffer>
  goFlateRestartRow: typeof GO_FLATE_RESTART_ROW
  /**
   * glibc's malloc keeps up to `bytes` freed at the top of its heap rather than trimming it (native/heap.c);
   * false elsewhere. Absent from an addon built before it (a tuning, not worth refusing the addon over).
   */
  keepFreedHeap?(bytes: number): boolean
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

/**
 * Loads one of the addons binding.gyp builds. By explicit name: build/Release holds two of them
 * (snapdir.node and snapdir_fuse.node), and node-gyp-build would take whichever it lists first.
 */
export function loadAddon<T>(name: string): T {
  const require = createRequire(import.meta.url)
  return require(path.join(root, 'build', 'Release', `${name}.node`)) as T
}

/** Numbers C and TypeScript both use, by group: each a name -> number map. */
export type NativeConstants = Record<string, Readonly<Record<string, number>>>

/** The first difference between our constants and those an addon exports, or null when they agree. */
export function constantsDiffer(ours: NativeConstants, addon: object): string | null {
  for (const [group, names] of Object.entries(ours)) {
    const theirs: unknown = (addon as Record<string, unknown>)[group]
    if (typeof theirs !== 'object' || theirs === null) return `${group} is missing from the addon`
    const c = theirs as Record<string, unknown>
    for (const [name, value] of Object.entries(names)) {
      if (c[name] !== value) return `${group}.${name} is ${String(c[name])} in C, ${value} here`
    }
    for (const name of Object.keys(c)) if (!(name in names)) return `${group}.${name} is ${String(c[name])} in C, absent here`
  }
  return null
}

/** Throws unless the addon's constants are ours: an addon built from other sources must not run. */
export function checkConstants(file: string, ours: NativeConstants, addon: object): void {
  const differ = constantsDiffer(ours, addon)
  if (differ) {
    throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', `build/Release/${file}.node was built from other sources than this code (${differ}): run make setup`)
  }
}

function load(): { addon: NativeAddon | null; error: unknown } {
  try {
    const addon = loadAddon<NativeAddon>('snapdir')
    checkConstants('snapdir', { cutFilesWhere: CUT_WHERE, cutFilesJob: CUT_JOB, goFlateRestartRow: GO_FLATE_RESTART_ROW }, addon)
    return { addon, error: null }
  } catch (error) {
    return { addon: null, error }
  }
}

const loaded = load()

/** The addon, or null when it failed to load (then `nativeLoadError` says why). */
export const native: NativeAddon | null = loaded.addon
export const nativeLoadError: unknown = loaded.error
