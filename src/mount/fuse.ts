// The FUSE addon (native/fusemount.c, built as build/Release/snapdir_fuse.node). Loaded on first use
// only, so commands other than mount never need libfuse3. The table layouts it reads are checked
// against inode-table.ts when it loads.
import { loadAddon } from '../chunk/native.js'
import { SnapdirError } from '../util/errors.js'
import { NODE_FIELDS, REF_FIELDS } from './inode-table.js'

export const EV_READ = 1
export const EV_EXIT = 2
/** a read the C side served from lent chunks: (0, ino, offset, size), for read-ahead and counters */
export const EV_HIT = 3

/** kind EV_READ: (slot, ino, offset, size); kind EV_EXIT: (0, 0, 0, errno of the FUSE loop or 0) */
export type FuseEvent = (kind: number, slot: number, ino: number, offset: number, size: number) => void

export interface FuseAddon {
  NODE_FIELDS: number
  REF_FIELDS: number
  mount(
    mountpoint: string, options: string[], nodes: Float64Array, dirents: Float64Array, xattrs: Float64Array,
    refs: Float64Array, chunkCount: number, pool: Buffer, totalBytes: number, timeoutSec: number, onEvent: FuseEvent,
  ): object
  /** lends a verified chunk to the C side, which serves reads from it in place until dropChunk */
  setChunk(handle: object, index: number, data: Buffer): void
  dropChunk(handle: object, index: number): void
  replyRead(handle: object, slot: number, buffers: Buffer[]): void
  replyError(handle: object, slot: number, errno: number): void
  /** umount2(2): 0 or an errno number */
  umount(path: string, lazy: boolean): number
  /** after EV_EXIT: joins the FUSE thread and frees the session */
  close(handle: object): void
}

let addon: FuseAddon | null = null

export function fuseAddon(): FuseAddon {
  if (addon) return addon
  try {
    addon = loadAddon<FuseAddon>('snapdir_fuse')
  } catch (err) {
    throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', `the FUSE addon does not load (is libfuse3 installed? run make setup): ${(err as Error).message}`, { cause: err })
  }
  if (addon.NODE_FIELDS !== NODE_FIELDS.length || addon.REF_FIELDS !== REF_FIELDS.length) {
    throw new SnapdirError('ERR_NATIVE_UNAVAILABLE', 'the FUSE addon was built from other sources than this code: run make setup')
  }
  return addon
}
