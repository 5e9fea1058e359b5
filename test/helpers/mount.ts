// Real FUSE mounts for tests: `snapdir mount` runs as its own process (a process that serves a FUSE
// mount must never read it itself), and the test reads the mount with plain fs calls or other tools.
// Every mount a test starts is stopped after it, and a mount whose server hangs is aborted through
// /sys/fs/fuse/connections, so a failing test never leaves a stale mount behind.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { afterEach } from 'vitest'
import { SNAPDIR, ROOT } from './cli.js'

export interface MountProcess {
  child: ChildProcess
  mountpoint: string
  /** what the mount process wrote to stderr so far */
  stderr(): string
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
 * Starts `snapdir mount ARGS MOUNTPOINT` and resolves once the mount is live; rejects with the
 * process's stderr if it exits first or is not mounted within 30 s.
 */
export async function startMount(args: string[], mountpoint: string, env: NodeJS.ProcessEnv = {}): Promise<MountProcess> {
  const child = spawn(process.execPath, [SNAPDIR, 'mount', ...args, mountpoint], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const exited = new Promise<{ status: number; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ status: code ?? (signal ? 128 : 1), stdout, stderr })),
  )
  const m: MountProcess = {
    child,
    mountpoint,
    stderr: () => stderr,
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

  let gone = false
  void exited.then(() => (gone = true))
  const deadline = Date.now() + 30_000
  while (!(stderr.includes('mounted ') && isMounted(mountpoint))) {
    if (gone) throw new Error(`snapdir mount exited before mounting: ${stderr}`)
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`snapdir mount did not mount within 30 s: ${stderr}`)
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  return m
}

export { isMounted }
