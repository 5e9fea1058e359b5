// The CLI's one error table: every failure of a command ends here as one line on stderr and an exit
// status (2 bad usage, 1 any other failure), whether a command's action rejects, an exception escapes
// a callback, or a promise rejects with nobody listening. Nothing else in snapdir prints errors.
import { SnapdirError, UsageError, isErrno } from '../util/errors.js'

/** Codes of the command line's own mistakes: the user fixes the command, not the data (exit 2). */
const USAGE_CODES: ReadonlySet<string> = new Set(['ERR_USAGE', 'ERR_BAD_STORE_URL', 'ERR_BAD_ID', 'ERR_BAD_IMAGE_REF'])

/** Codes that say snapdir itself went wrong (a bug), not the input, the store or the machine. */
const BUG_CODES: ReadonlySet<string> = new Set(['ERR_INTERNAL'])

/** How the CLI reports one error: the exit status, the line, and whether it is a bug of ours. */
export interface Outcome {
  status: 1 | 2
  line: string
  bug: boolean
}

export function outcomeOf(err: unknown): Outcome {
  if (err instanceof SnapdirError) {
    const usage = err instanceof UsageError || USAGE_CODES.has(err.code)
    return { status: usage ? 2 : 1, line: err.message, bug: BUG_CODES.has(err.code) }
  }
  // The machine's answer to a system call that no layer put in its own words (ENOSPC, EMFILE,
  // EACCES): its message names the call and the path, and it is not a bug.
  if (isErrno(err) && typeof err.syscall === 'string') return { status: 1, line: err.message, bug: false }
  // Anything else is a plain Error that no layer expected: a bug, said so.
  const what = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
  return { status: 1, line: `internal error: ${what}`, bug: true }
}

const debug = () => Boolean(process.env.SNAPDIR_DEBUG)

/**
 * Prints one line per failure (`snapdir: …`) and sets the exit status. A bug says so on the same line;
 * SNAPDIR_DEBUG=1 adds the stack and the causes below it, for any error.
 */
export function reportError(err: unknown): void {
  const { status, line, bug } = outcomeOf(err)
  const hint = bug && !debug() ? ' (a bug in snapdir; SNAPDIR_DEBUG=1 shows where)' : ''
  process.stderr.write(`snapdir: ${oneLine(line)}${hint}\n`)
  if (debug()) {
    for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
      process.stderr.write(`${depth === 0 ? '' : 'caused by: '}${e.stack ?? e.message}\n`)
    }
  }
  process.exitCode = status
}

/** A message that spans lines (a library's, a tool's output) shown on one: its lines joined by '; '. */
function oneLine(s: string): string {
  return s.trim().replace(/([:;,])?\s*\n\s*/g, (_, mark?: string) => (mark ? `${mark} ` : '; '))
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

/**
 * The process-wide part of the table, installed once by main.ts before any command runs:
 * - an exception thrown from a callback or a promise rejected with no handler is reported as any
 *   other failure, then the process ends (its state is unknown), rather than Node's stack trace;
 * - stdout closed by its reader (`snapdir revisions | head -1`) ends the command at once, quietly and
 *   with status 1 (the result was not delivered), as a tool killed by SIGPIPE stops; not a stack trace.
 */
export function installErrorBoundary(): void {
  const fatal = (err: unknown) => {
    reportError(err)
    process.exit()
  }
  process.on('uncaughtException', fatal)
  process.on('unhandledRejection', fatal)
  process.stdout.on('error', (err) => {
    if (isErrno(err, 'EPIPE')) process.exit(1)
    fatal(err)
  })
}
