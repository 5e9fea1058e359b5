import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

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
   * Reads, cuts, hashes and stores a batch of files on a libuv pool thread (native/file-batch.c):
   * jobs are [kind (0 whole, 1 inline, 2 group), first file, file count] triples.
   */
  cutFiles(
    handle: object, paths: Buffer[], sizes: Float64Array, jobs: Uint32Array, chunkDir: string | null, tmpTag: string, level: number,
  ): Promise<{ counts: Uint32Array; lengths: Uint32Array; ids: Buffer; inline: Buffer; written: Float64Array }>
  /** BLAKE3-256 of the bytes (native/hash.c) */
  blake3(data: Uint8Array): Buffer
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

function load(): { addon: NativeAddon | null; error: unknown } {
  try {
    return { addon: loadAddon<NativeAddon>('snapdir'), error: null }
  } catch (error) {
    return { addon: null, error }
  }
}

const loaded = load()

/** The addon, or null when it failed to load (then `nativeLoadError` says why). */
export const native: NativeAddon | null = loaded.addon
export const nativeLoadError: unknown = loaded.error
