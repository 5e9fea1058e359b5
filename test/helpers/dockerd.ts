// A dockerd of the test's own (Debian's docker.io, which scripts/setup.sh installs): its own data
// and exec roots, pid file and socket under a temporary directory, no bridge and no iptables, so it
// touches nothing of the machine's and needs no network; driven by Debian's client, /usr/bin/docker.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'

export const DOCKER = '/usr/bin/docker'

export interface Dockerd {
  /** runs the client against this daemon; throws with its stderr unless it exits 0 */
  docker(args: string[]): string
  stop(): Promise<void>
}

/** Starts dockerd and resolves once it answers `docker version` (within `timeoutMs`). */
export async function startDockerd(timeoutMs = 60_000): Promise<Dockerd> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'snapdir-dockerd-'))
  for (const d of ['data', 'exec', 'config']) mkdirSync(path.join(dir, d))
  const host = `unix://${path.join(dir, 'docker.sock')}`
  const log = path.join(dir, 'dockerd.log')
  const out = openSync(log, 'w')
  const daemon: ChildProcess = spawn(
    'dockerd',
    ['--data-root', path.join(dir, 'data'), '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'dockerd.pid'), '--host', host, '--bridge=none', '--iptables=false'],
    { stdio: ['ignore', out, out] },
  )
  const exited = new Promise<void>((resolve) => daemon.once('exit', () => resolve()))
  // a private client config: no credential helper or context of the machine's takes part
  const env = { ...process.env, DOCKER_CONFIG: path.join(dir, 'config') }
  const run = (args: string[]) => spawnSync(DOCKER, ['-H', host, ...args], { encoding: 'utf8', env, maxBuffer: 64 * 1024 * 1024 })
  const stop = async (): Promise<void> => {
    if (daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGTERM')
      await exited
    }
    rmSync(dir, { recursive: true, force: true })
  }
  const deadline = Date.now() + timeoutMs
  // readiness: the daemon answers on its socket (polled, as nothing else tells when it is up)
  for (;;) {
    if (daemon.exitCode !== null) {
      const text = readFileSync(log, 'utf8')
      await stop()
      throw new Error(`dockerd exited ${daemon.exitCode} before it answered: ${text.slice(-2000)}`)
    }
    if (run(['version', '--format', '{{.Server.Version}}']).status === 0) break
    if (Date.now() > deadline) {
      const text = readFileSync(log, 'utf8')
      await stop()
      throw new Error(`dockerd did not answer within ${timeoutMs} ms: ${text.slice(-2000)}`)
    }
    await delay(200)
  }
  return {
    docker(args) {
      const r = run(args)
      if (r.status !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.status}: ${r.stderr}`)
      return r.stdout
    },
    stop,
  }
}
