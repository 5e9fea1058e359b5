// The one error table of the FUSE boundary: the errno a failed operation answers the kernel with, by
// the SnapdirError code it failed with. Only reads of chunked content come to JS (everything else is
// answered in C from the inode table), so this is what a program reading the mount sees.
import os from 'node:os'
import { SnapdirError, type ErrorCode } from '../util/errors.js'

const { EIO } = os.constants.errno

/**
 * A chunk that is missing, damaged, late or no longer wanted (the mount is closing) is an I/O error on
 * that read: never other bytes, and nothing a program could take for "no such file" or "try again".
 */
const ERRNO: Partial<Record<ErrorCode, number>> = {
  ERR_OBJECT_MISSING: EIO,
  ERR_OBJECT_CORRUPT: EIO,
  ERR_STORE_UNREACHABLE: EIO,
  ERR_STORE_IO: EIO,
  ERR_STORE_NOT_FOUND: EIO,
  ERR_ABORTED: EIO,
  ERR_TREE_MALFORMED: EIO,
  ERR_SNAPSHOT_DAMAGED: EIO,
}

/** The errno for a failure at the FUSE boundary; EIO for anything the table does not name. */
export function errnoFor(err: unknown): number {
  return (err instanceof SnapdirError ? ERRNO[err.code] : undefined) ?? EIO
}

/** errno's name (EIO), for the log line of a failed read. */
export function errnoName(errno: number): string {
  return Object.entries(os.constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`
}
