// Helpers for tests that drive the built CLI as a user would: spawn bin/snapdir, read stdout, stderr
// and the exit status. The CLI runs from dist/ (`make test` builds before running the suite); only the
// functions that spawn it need the build, so a test that imports a helper from here for anything else
// runs without one.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, statSync, watch, type FSWatcher } from 'node:fs'
import path from 'node:path'
import { ROOT } from './trees.js'

export { ROOT, TOOLS, makeEdgeTree, manifest } from './trees.js'
export { countObjects, listFiles, tempDir } from './temp.js'
export { bytes, noise } from './bytes.js'

export const SNAPDIR = path.join(ROOT, 'bin', 'snapdir')
export const ID_RE = /^[0-9a-f]{64}$/

const BUNDLE = path.join(ROOT, 'dist', 'bundle', 'main.js')

/** Throws a clear error when the CLI is not built (spawning it would fail in a less obvious way). */
export function requireBuild(): void {
  if (!existsSync(BUNDLE)) throw new Error('dist/ is missing: run `make test` (or `npm run build`) before the tests that run the CLI')
}

/** Spawns `node bin/snapdir ARGS`; `uid` runs it as that user. */
export function spawnSnapdir(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; uid?: number; stdio?: 'pipe' | 'ignore' } = {},
): ChildProcess {
  requireBuild()
  const command = [process.execPath, SNAPDIR, ...args]
  if (options.uid !== undefined) command.unshift('setpriv', `--reuid=${options.uid}`, `--regid=${options.uid}`, '--clear-groups')
  const out = options.stdio ?? 'pipe'
  return spawn(command[0]!, command.slice(1), {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', out, out],
  })
}

export interface RunResult {
  status: number
  stdout: string
  stderr: string
}

/** Runs snapdir and resolves with its output, whatever the exit status; `uid` runs it as that user. */
export function snapdir(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; uid?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawnSnapdir(args, options)
    let stdout = ''
    let stderr = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ status: code ?? (signal ? 128 : 1), stdout, stderr }))
  })
}

/** Runs snapdir and fails the test (with its stderr) unless it exits 0. */
export async function snapdirOk(args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const r = await snapdir(args, options)
  if (r.status !== 0) throw new Error(`snapdir ${args.join(' ')} exited ${r.status}: ${r.stderr}`)
  return r.stdout
}

/** killWhen's rejection when the command exits by itself before `ready()` held: it outran the kill. */
export class ExitedFirst extends Error {}

/**
 * Starts snapdir and SIGKILLs it as soon as `ready()` holds. `ready` is checked when the command
 * writes under `watched` (by default the store it writes to: the value of --store, or of --to for
 * sync), so the kill lands right after the write that made it true. Rejects with ExitedFirst if the
 * command exits before it could be killed, or if `ready()` does not hold within 60 s.
 */
export async function killWhen(args: string[], ready: () => boolean, watched: string = writtenDir(args)): Promise<void> {
  const child = spawnSnapdir(args, { stdio: 'ignore' })
  const exited = new Promise<string>((resolve) => child.on('exit', (code, signal) => resolve(String(code ?? signal))))
  let unwatch = () => {}
  let timer: NodeJS.Timeout | undefined
  try {
    await new Promise<void>((resolve, reject) => {
      let queued = false
      const check = () => {
        if (queued) return
        queued = true
        // one check for a burst of writes
        setImmediate(() => {
          queued = false
          if (ready()) resolve()
        })
      }
      unwatch = watchWrites(watched, check)
      check()
      timer = setTimeout(() => reject(new Error(`snapdir ${args.join(' ')}: not ready to be killed within 60 s`)), 60_000)
      void exited.then((status) => reject(new ExitedFirst(`snapdir ${args.join(' ')} exited (${status}) before it could be killed`)))
    })
  } finally {
    unwatch()
    clearTimeout(timer)
    child.kill('SIGKILL')
    await exited
  }
}

/** The directory a command writes to: its --store, or --to for sync. */
function writtenDir(args: string[]): string {
  const i = args.findIndex((a) => a === '--to' || a === '--store')
  const dir = i < 0 ? undefined : args[i + 1]
  if (dir === undefined || /^[a-z0-9]+:\/\//.test(dir)) throw new Error(`killWhen: give the directory to watch for ${args.join(' ')}`)
  return path.resolve(dir)
}

/**
 * Calls `onWrite` whenever something is created, written or renamed in `target` or below it (the
 * directory may not exist yet: its nearest existing parent is watched until it does). Watches
 * directories only (inotify), adding new ones as they appear; returns the function that stops it.
 */
function watchWrites(target: string, onWrite: () => void): () => void {
  const watchers = new Map<string, FSWatcher>()
  // only the directories on the way to target, and all below it
  const relevant = (d: string) => d === target || target.startsWith(d + path.sep) || d.startsWith(target + path.sep)
  const add = (dir: string): void => {
    if (watchers.has(dir) || !relevant(dir)) return
    let w: FSWatcher
    try {
      w = watch(dir, (_event, name) => {
        if (name !== null) addIfDirectory(path.join(dir, name))
        onWrite()
      })
    } catch {
      return // removed meanwhile
    }
    w.on('error', () => w.close())
    watchers.set(dir, w)
    try {
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) add(path.join(dir, e.name))
    } catch {
      // removed meanwhile
    }
  }
  const addIfDirectory = (p: string) => {
    try {
      if (statSync(p).isDirectory()) add(p)
    } catch {
      // a temporary file already renamed, or removed
    }
  }
  let start = target
  while (!existsSync(start) && path.dirname(start) !== start) start = path.dirname(start)
  add(start)
  return () => {
    for (const w of watchers.values()) w.close()
  }
}
