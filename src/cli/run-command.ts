import { SnapdirError } from '../util/errors.js'

/** Exit statuses: the one table that maps errors to what the shell sees. */
const USAGE_CODES = new Set(['ERR_USAGE', 'ERR_BAD_STORE_URL', 'ERR_BAD_ID'])

export function exitCodeFor(err: unknown): number {
  if (err instanceof SnapdirError && USAGE_CODES.has(err.code)) return 2
  if (err instanceof SnapdirError && err.name === 'UsageError') return 2
  return 1
}

/** Prints one clear line per failure (no stack unless SNAPDIR_DEBUG is set) and sets the exit status. */
export function reportError(err: unknown): void {
  const msg = err instanceof Error ? err.message : String(err)
  process.stderr.write(`snapdir: ${msg}\n`)
  if (process.env.SNAPDIR_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`)
  if (!(err instanceof SnapdirError)) {
    process.stderr.write('snapdir: (unexpected error; set SNAPDIR_DEBUG=1 for details)\n')
  }
  process.exitCode = exitCodeFor(err)
}

/** Wraps a command's action so every failure goes through reportError. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args)
    } catch (err) {
      reportError(err)
    }
  }
}
