// Helpers for tests that drive the built CLI as a user would: spawn bin/snapdir, read stdout, stderr
// and the exit status. The CLI runs from dist/, so `make test` builds before running the suite.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach } from 'vitest'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const SNAPDIR = path.join(ROOT, 'bin', 'snapdir')
export const TOOLS = path.join(ROOT, 'test', 'tools')

if (!existsSync(path.join(ROOT, 'dist', 'bundle', 'main.js'))) {
  throw new Error('dist/ is missing: run `make test` (or `npm run build`) before the CLI tests')
}

export interface RunResult {
  status: number
  stdout: string
  stderr: string
}

/** Runs snapdir and resolves with its output, whatever the exit status; `uid` runs it as that user. */
export function snapdir(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; uid?: number } = {}): Promise<RunResult> {
  const command = [process.execPath, SNAPDIR, ...args]
  if (options.uid !== undefined) command.unshift('setpriv', `--reuid=${options.uid}`, `--regid=${options.uid}`, '--clear-groups')
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
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

/** Starts snapdir and SIGKILLs it as soon as `ready()` holds (checked every 5 ms, 20 s at most). */
export async function killWhen(args: string[], ready: () => boolean): Promise<void> {
  const child = spawn(process.execPath, [SNAPDIR, ...args], { stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline && !ready()) await new Promise((r) => setTimeout(r, 5))
  child.kill('SIGKILL')
  await exited
}

/** Stored objects under dir (not the temporary files a killed writer leaves). */
export function countObjects(dir: string): number {
  return existsSync(dir) ? listFiles(dir).filter((f) => !f.includes('.tmp-')).length : 0
}

const made: string[] = []
afterEach(() => {
  while (made.length) rmSync(made.pop()!, { recursive: true, force: true })
})

/** A fresh temporary directory, removed after the test. */
export function tempDir(prefix = 'snapdir-test-'): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix))
  made.push(d)
  return d
}

/** Builds the edge-case tree of test/tools/make-edge-tree.py (every entry kind) at dir. */
export function makeEdgeTree(dir: string, variant = 0): void {
  const r = spawnSync('python3', [path.join(TOOLS, 'make-edge-tree.py'), dir, '--variant', String(variant)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`make-edge-tree.py failed: ${r.stderr}`)
}

/** The independent description of a tree (bytes and metadata) by test/tools/tree-manifest.py. */
export function manifest(dir: string): string {
  const r = spawnSync('python3', [path.join(TOOLS, 'tree-manifest.py'), dir], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  if (r.status !== 0) throw new Error(`tree-manifest.py failed: ${r.stderr}`)
  return r.stdout
}

/** All files under a directory, relative, sorted (for counting store objects). */
export function listFiles(dir: string): string[] {
  const r = spawnSync('find', [dir, '-type', 'f', '-printf', '%P\\n'], { encoding: 'utf8' })
  return r.stdout.split('\n').filter(Boolean).sort()
}

export const ID_RE = /^[0-9a-f]{64}$/

export { bytes } from './bytes.js'

