// A dockerd of the test's own (Debian's docker.io, which scripts/setup.sh installs): its own data
// and exec roots, pid file and socket under a temporary directory, no bridge and no iptables, so it
// touches nothing of the machine's and needs no network; driven by Debian's client, /usr/bin/docker.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export const DOCKER = '/usr/bin/docker'

export interface Dockerd {
  /** runs the client against this daemon; throws with its stderr unless it exits 0 */
  docker(args: string[]): string
  stop(): Promise<void>
}

/** Starts dockerd and resolves once it says it listens on its socket and answers `docker version` (within `timeoutMs`). */
export async function startDockerd(timeoutMs = 60_000): Promise<Dockerd> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'snapdir-dockerd-'))
  for (const d of ['data', 'exec', 'config']) mkdirSync(path.join(dir, d))
  const host = `unix://${path.join(dir, 'docker.sock')}`
  const log = path.join(dir, 'dockerd.log')
  const daemon: ChildProcess = spawn(
    'dockerd',
    ['--data-root', path.join(dir, 'data'), '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'dockerd.pid'), '--host', host, '--bridge=none', '--iptables=false'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  // its log, kept in memory for messages and in a file beside its roots
  let text = ''
  const file = createWriteStream(log)
  const listening = new Promise<boolean>((resolve) => {
    const onData = (b: Buffer): void => {
      text += b.toString('utf8')
      file.write(b)
      // dockerd logs this once its API serves the socket
      if (text.includes('API listen on ')) resolve(true)
    }
    daemon.stdout!.on('data', onData)
    daemon.stderr!.on('data', onData)
    daemon.once('exit', () => resolve(false))
  })
  const exited = new Promise<void>((resolve) => daemon.once('exit', () => resolve()))
  // a private client config: no credential helper or context of the machine's takes part
  const env = { ...process.env, DOCKER_CONFIG: path.join(dir, 'config') }
  const run = (args: string[]) => spawnSync(DOCKER, ['-H', host, ...args], { encoding: 'utf8', env, maxBuffer: 64 * 1024 * 1024 })
  const stop = async (): Promise<void> => {
    if (daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGTERM')
      await exited
    }
    file.end()
    rmSync(dir, { recursive: true, force: true })
  }
  let timer: NodeJS.Timeout | undefined
  const ready = await Promise.race([listening, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)))])
  clearTimeout(timer)
  if (ready !== true || run(['version', '--format', '{{.Server.Version}}']).status !== 0) {
    const why = ready === 'timeout' ? `did not listen within ${timeoutMs} ms` : ready === false ? `exited ${daemon.exitCode} before it listened` : 'listened but did not answer docker version'
    await stop()
    throw new Error(`dockerd ${why}: ${text.slice(-2000)}`)
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
