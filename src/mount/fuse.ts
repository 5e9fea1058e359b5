// The FUSE addon (native/fusemount.c, built as build/Release/snapdir_fuse.node). Loaded on first use
// only, so commands other than mount never need libfuse3.
import { loadAddon } from '../chunk/native.js'
import { SnapdirError } from '../util/errors.js'

export const EV_READ = 1
export const EV_EXIT = 2

/** kind EV_READ: (slot, ino, offset, size); kind EV_EXIT: (0, 0, 0, errno of the FUSE loop or 0) */
export type FuseEvent = (kind: number, slot: number, ino: number, offset: number, size: number) => void

export interface FuseAddon {
  NODE_FIELDS: number
  mount(
    mountpoint: string, options: string[], nodes: Float64Array, dirents: Float64Array, xattrs: Float64Array,
    pool: Buffer, totalBytes: number, timeoutSec: number, onEvent: FuseEvent,
  ): object
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
  return addon
}
