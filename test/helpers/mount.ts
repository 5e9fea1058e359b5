// Real FUSE mounts for tests: `snapdir mount` runs as its own process (a process that serves a FUSE
// mount must never read it itself), and the test reads the mount with plain fs calls or other tools.
// Every mount a test starts is stopped after it, and a mount whose server hangs is aborted through
// /sys/fs/fuse/connections, so a failing test never leaves a stale mount behind.
import { spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { afterEach } from 'vitest'
import { spawnSnapdir } from './cli.js'

export interface MountProcess {
  child: ChildProcess
  mountpoint: string
  /** what the mount process wrote to stderr so far */
  stderr(): string
  /**
   * Resolves with stderr once it contains `text` (at once if it does); rejects if the process exits
   * without writing it, or after `ms`.
   */
  waitForStderr(text: string, ms?: number): Promise<string>
  /** SIGTERM (or the given signal), then its exit status and output */
  stop(signal?: NodeJS.Signals): Promise<{ status: number; stdout: string; stderr: string }>
  exited: Promise<{ status: number; stdout: string; stderr: string }>
}

const running = new Set<MountProcess>()

/** The /proc/self/mountinfo line of the mount at dir, if any. */
function mountLine(dir: string): string | undefined {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === dir)
}

function isMounted(dir: string): boolean {
  return mountLine(dir) !== undefined
}

/** Frees a mount whatever state its server is in. */
function forceUnmount(dir: string): void {
  const line = mountLine(dir)
  if (line === undefined) return
  const minor = line.split(' ')[2]?.split(':')[1]
  try {
    if (minor) writeFileSync(`/sys/fs/fuse/connections/${minor}/abort`, '1')
  } catch {
    // not a FUSE mount, or already gone
  }
  spawnSync('umount', ['-l', dir])
}

afterEach(async () => {
  for (const m of [...running]) {
    forceUnmount(m.mountpoint)
    m.child.kill('SIGKILL')
    await m.exited
  }
})

/**
 * Starts `snapdir mount ARGS MOUNTPOINT` (or another command that mounts: `command`, e.g. trace
 * record) and resolves once the mount is live; rejects with the process's stderr if it exits first
 * or is not mounted within 30 s.
 */
export async function startMount(args: string[], mountpoint: string, env: NodeJS.ProcessEnv = {}, command = ['mount']): Promise<MountProcess> {
  const child = spawnSnapdir([...command, ...args, mountpoint], { env })
  let stdout = ''
  let stderr = ''
  // who waits for what on stderr: checked at each line the process writes
  const waiting = new Set<() => void>()
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d
    for (const w of [...waiting]) w()
  })
  const exited = new Promise<{ status: number; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ status: code ?? (signal ? 128 : 1), stdout, stderr })),
  )
  let gone = false
  void exited.then(() => {
    gone = true
    for (const w of [...waiting]) w()
  })
  const waitForStderr = (text: string, ms = 30_000) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`snapdir mount did not write '${text}' within ${ms / 1000} s: ${stderr}`)), ms)
      const done = (err?: Error) => {
        waiting.delete(check)
        clearTimeout(timer)
        if (err) reject(err)
        else resolve(stderr)
      }
      const check = () => {
        if (stderr.includes(text)) done()
        else if (gone) done(new Error(`snapdir mount exited without writing '${text}': ${stderr}`))
      }
      waiting.add(check)
      check()
    })
  const m: MountProcess = {
    child,
    mountpoint,
    stderr: () => stderr,
    waitForStderr,
    exited,
    async stop(signal = 'SIGTERM') {
      child.kill(signal)
      const timer = setTimeout(() => forceUnmount(mountpoint), 15_000)
      const r = await exited
      clearTimeout(timer)
      return r
    },
  }
  running.add(m)
  void exited.then(() => running.delete(m))

  // The process writes "snapdir mount: mounted …" once the kernel mount is made (fuse_session_mount
  // returned): from then on it must be in the mount table.
  try {
    await waitForStderr('snapdir mount: mounted ')
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  if (!isMounted(mountpoint)) throw new Error(`snapdir mount says it mounted ${mountpoint}, but it is not in /proc/self/mountinfo: ${stderr}`)
  return m
}

export { isMounted }
