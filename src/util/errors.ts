// One error class with a stable code for every failure snapdir reports. The CLI maps codes to exit
// statuses in exactly one place (cli/run-command.ts); later boundaries (FUSE, gRPC) will do the same.

export type ErrorCode =
  | 'ERR_USAGE'
  | 'ERR_BAD_STORE_URL'
  | 'ERR_BAD_ID'
  | 'ERR_BAD_CONFIG'
  | 'ERR_SOURCE'
  | 'ERR_TARGET'
  | 'ERR_STORE_NOT_FOUND'
  | 'ERR_STORE_CONFIG'
  | 'ERR_STORE_IO'
  | 'ERR_STORE_UNREACHABLE'
  | 'ERR_STORE_CLOSED'
  | 'ERR_OBJECT_MISSING'
  | 'ERR_OBJECT_CORRUPT'
  | 'ERR_SNAPSHOT_NOT_FOUND'
  | 'ERR_SNAPSHOT_DAMAGED'
  | 'ERR_TREE_MALFORMED'
  | 'ERR_UNSAFE_PATH'
  | 'ERR_NATIVE_UNAVAILABLE'
  | 'ERR_ABORTED'
  | 'ERR_IMAGE'
  | 'ERR_SYNC_INCOMPLETE'
  | 'ERR_NOT_FOUND'
  | 'ERR_ALREADY_EXISTS'
  | 'ERR_FAILED_PRECONDITION'
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_BAD_IMAGE_REF'
  | 'ERR_REGISTRY'
  | 'ERR_REGISTRY_AUTH'
  | 'ERR_REGISTRY_NOT_FOUND'
  | 'ERR_REGISTRY_UNREACHABLE'
  | 'ERR_REGISTRY_CORRUPT'
  | 'ERR_INTERNAL'

export class SnapdirError extends Error {
  readonly code: ErrorCode
  readonly data: Readonly<Record<string, unknown>>

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; data?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'SnapdirError'
    this.code = code
    this.data = options.data ?? {}
  }
}

/** Bad usage: the command line itself is wrong (exit 2). */
export class UsageError extends SnapdirError {
  constructor(message: string, code: ErrorCode = 'ERR_USAGE') {
    super(code, message)
    this.name = 'UsageError'
  }
}

/**
 * Something is wrong with what the user gave to be read (a file, a directory, an archive, a layer):
 * given an error, "cannot read WHAT: its message", with it as the cause; given a string, "WHAT: that
 * problem" (a tar that is truncated, a file that shrank while read). `data.source` is `what`.
 */
export function sourceError(
  what: string,
  problem: unknown,
  options: { cause?: unknown; data?: Record<string, unknown> } = {},
): SnapdirError {
  const data = { source: what, ...options.data }
  if (typeof problem === 'string') return new SnapdirError('ERR_SOURCE', `${what}: ${problem}`, { cause: options.cause, data })
  const message = problem instanceof Error ? problem.message : String(problem)
  return new SnapdirError('ERR_SOURCE', `cannot read ${what}: ${message}`, { cause: options.cause ?? problem, data })
}

/**
 * A failure that is snapdir's own (a bug, a thread that ran out of memory or died), never the source's
 * or the store's: an error that is not a SnapdirError becomes ERR_INTERNAL, naming where it happened.
 */
export function internalError(where: string, err: unknown): SnapdirError {
  if (err instanceof SnapdirError) return err
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
  return new SnapdirError('ERR_INTERNAL', `internal error in ${where}: ${message}`, { cause: err })
}

/** What an operation cancelled through its AbortSignal rejects with. */
export function abortedError(what: string, signal: AbortSignal): SnapdirError {
  return new SnapdirError('ERR_ABORTED', `${what}: aborted`, { cause: signal.reason })
}

/**
 * A failed system call in words, without Node's "CODE: " before and ", syscall 'path'" after (the
 * caller names the path as the user knows it, not a temporary one): "no space left on device (ENOSPC)".
 */
export function errnoText(err: NodeJS.ErrnoException): string {
  const words = err.message.replace(/^[A-Z0-9_]+: /, '').replace(/, [a-z_0-9]+(?: '.*')?$/s, '')
  return err.code && !words.includes(err.code) ? `${words} (${err.code})` : words
}

/**
 * What writing a pull's target failed with, naming the path the user asked for (or under it): a
 * system call's error (ENOSPC, EACCES, EIO) becomes ERR_TARGET (exit 1); a SnapdirError stays itself.
 */
export function targetWriteError(shownAs: string, err: unknown): unknown {
  if (err instanceof SnapdirError || !isErrno(err)) return err
  return new SnapdirError('ERR_TARGET', `cannot write ${shownAs}: ${errnoText(err)}`, { cause: err, data: { target: shownAs } })
}

export function isErrno(err: unknown, ...codes: string[]): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' &&
    (codes.length === 0 || codes.includes((err as NodeJS.ErrnoException).code!))
}
