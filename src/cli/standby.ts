// A snapdir process started before its whole command line is known (the snapshotter keeps one such
// `snapdir mount` ready for its next lazy layer): with SNAPDIR_STANDBY set it loads what the
// arguments it has will need (the mount's modules, and the S3 SDK where the store needs it: about
// half a CPU-second together, more than the store round trips a layer mount waits for) and opens the
// store they name (the credentials, its config read, a connection: round trips the mount then does
// not wait for), then reads the rest of its arguments from stdin, one line of JSON (an array of
// strings), and runs as if it had been started with them.
// stdin ending without a line (its parent went away) ends it quietly.
import { UsageError } from '../util/errors.js'
import { openStoreAhead } from './store-options.js'

export const STANDBY_ENV = 'SNAPDIR_STANDBY'

/** The arguments to add to `known` (the command line after node and the script), or null when stdin ended without them. */
export async function standbyArguments(known: readonly string[]): Promise<string[] | null> {
  // not handed on to what this process starts
  delete process.env[STANDBY_ENV]
  // a failure here comes again, and is reported, when the command itself loads the same
  warmUp(known).catch(() => {})
  const line = await firstLine(process.stdin)
  if (line === null) return null
  let rest: unknown
  try {
    rest = JSON.parse(line)
  } catch {
    rest = null
  }
  if (!Array.isArray(rest) || !rest.every((a) => typeof a === 'string')) {
    throw new UsageError(`${STANDBY_ENV}: expected the rest of the command line on stdin as a JSON array of strings, got ${JSON.stringify(line.slice(0, 80))}`)
  }
  return rest
}

async function warmUp(known: readonly string[]): Promise<void> {
  const value = (option: string): string | undefined => {
    const at = known.indexOf(option)
    return at >= 0 ? known[at + 1] : undefined
  }
  const store = value('--store')
  const s3Endpoint = value('--s3-endpoint')
  // the store opened now: its code loaded, credentials resolved, its config read, a connection made
  if (store !== undefined) openStoreAhead({ store, ...(s3Endpoint !== undefined ? { s3Endpoint } : {}) })
  if (known[0] === 'mount') await import('../mount/mount.js')
}

/** The first line `input` gives (without its newline), or null when it ends first; then lets go of it. */
async function firstLine(input: NodeJS.ReadableStream & { destroy(): void }): Promise<string | null> {
  let text = ''
  try {
    for await (const piece of input) {
      text += typeof piece === 'string' ? piece : piece.toString('utf8')
      const nl = text.indexOf('\n')
      if (nl >= 0) return text.slice(0, nl)
    }
    return null
  } finally {
    // the command runs on its own: the parent may go away, and nothing more is read
    input.destroy()
  }
}
