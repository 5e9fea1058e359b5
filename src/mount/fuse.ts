// The FUSE addon (native/fusemount.c, built as build/Release/snapdir_fuse.node). Loaded on first use
// only, so commands other than mount never need libfuse3. The row layouts and numbers it shares with
// this code are checked against TABLE_LAYOUT and FUSE_EVENT when it loads: an addon built from other
// sources refuses to run rather than serve a table it reads differently.
import { checkConstants, loadAddon } from '../chunk/native.js'
import { SnapdirError } from '../util/errors.js'
import { TABLE_LAYOUT } from './inode-table.js'

/** What the FUSE thread tells JS: a read parked for JS (read), a read the C side served from lent
 * chunks (hit: for read-ahead and counters), the end of the FUSE loop (exit). */
export const FUSE_EVENT = { read: 1, exit: 2, hit: 3 } as const

/** read: (slot, ino, offset, size); hit: (0, ino, offset, size); exit: (0, 0, 0, errno of the FUSE loop or 0) */
export type FuseEvent = (kind: number, slot: number, ino: number, offset: number, size: number) => void

export interface FuseMountOptions {
  /** an absolute, resolved directory */
  mountpoint: string
  /** what libfuse takes after -o: ro, fsname=…, allow_other, … */
  fuseOptions: string[]
  /** the inode table (inode-table.ts), rows of TABLE_LAYOUT */
  nodes: Float64Array
  dirents: Float64Array
  xattrs: Float64Array
  refs: Float64Array
  /** how many distinct chunks the refs name (setChunk's indexes are below it) */
  chunkCount: number
  pool: Buffer
  /** statfs: logical bytes of all regular files */
  totalBytes: number
  /** how long the kernel may cache entries, attributes and pages */
  cacheSeconds: number
  onEvent: FuseEvent
}

/** A mount's native handle. Once the exit event came, close() frees it; a finalizer releases one dropped
 * without close (and detaches its kernel mount if it is still up, as when the process ends). */
export type FuseHandle = object

export interface FuseAddon {
  layout: Record<string, Record<string, number>>
  /** mounts and starts serving; throws with the kernel mount undone */
  mount(options: FuseMountOptions): FuseHandle
  /** lends a verified chunk to the C side, which serves reads from it in place until dropChunk */
  setChunk(handle: FuseHandle, index: number, data: Buffer): void
  dropChunk(handle: FuseHandle, index: number): void
  replyRead(handle: FuseHandle, slot: number, buffers: Buffer[]): void
  replyError(handle: FuseHandle, slot: number, errno: number): void
  /** umount2(2): 0 or an errno number */
  umount(path: string, lazy: boolean): number
  /** after the exit event: joins the FUSE thread and frees the session; again, nothing. Before it: throws. */
  close(handle: FuseHandle): void
}

let addon: FuseAddon | null = null

export function fuseAddon(): FuseAddon {
  if (addon) return addon
  let loaded: FuseAddon
  try {
    loaded = loadAddon<FuseAddon>('snapdir_fuse')
  } catch (err) {
    throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', `the FUSE addon does not load (is libfuse3 installed? run make setup): ${(err as Error).message}`, { cause: err })
  }
  checkConstants('snapdir_fuse', { ...TABLE_LAYOUT, event: FUSE_EVENT }, loaded.layout)
  return (addon = loaded)
}
