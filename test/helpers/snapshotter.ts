// `snapdir snapshotter` as containerd meets it, for the snapshotter tests: the CLI as its own process
// on a unix socket under a temporary directory, a gRPC client of our snapshots.proto talking to it,
// and Debian's containerd (with runc) started on its own root, state and socket, with snapdir as a
// proxy snapshotter. Each waits for the line or socket that says it is up, never for a set time.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { loadSnapshotsProto } from '../../src/snapshotter/grpc-service.js'
import { spawnSnapdir } from './cli.js'

/** Resolves when `child` prints `needle` on stderr or stdout; rejects if it exits first or `ms` pass. */
export function waitForLine(child: ChildProcess, needle: string, ms: number, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = ''
    const timer = setTimeout(() => done(new Error(`${name} did not print "${needle}" within ${ms} ms: ${text.slice(-2000)}`)), ms)
    const onData = (b: Buffer): void => {
      text += b.toString('utf8')
      if (text.includes(needle)) done()
    }
    const onExit = (code: number | null, signal: string | null): void => done(new Error(`${name} exited (${code ?? signal}) before "${needle}": ${text.slice(-2000)}`))
    const done = (err?: Error): void => {
      clearTimeout(timer)
      child.stdout?.off('data', onData)
      child.stderr?.off('data', onData)
      child.off('exit', onExit)
      if (err) reject(err)
      else resolve()
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', onExit)
  })
}

export interface SnapshotterProcess {
  root: string
  address: string
  child: ChildProcess
  /** what it printed on stderr so far */
  log(): string
  /** resolves once it has printed a line matching `re` (already or later); rejects after `ms` or if it exits first */
  waitForLog(re: RegExp, ms?: number): Promise<string>
  /** SIGTERM, and its exit status */
  stop(): Promise<number | null>
  /** SIGKILL, as a crash */
  kill(): Promise<void>
}

export async function startSnapshotter(dir: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<SnapshotterProcess> {
  const root = path.join(dir, 'root')
  const address = path.join(dir, 'snapshotter.sock')
  const child = spawnSnapdir(['snapshotter', '--root', root, '--address', address, '--verbose', ...extra], { env })
  let text = ''
  child.stderr!.on('data', (b: Buffer) => (text += b.toString('utf8')))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  await waitForLine(child, 'serving containerd', 30_000, 'snapdir snapshotter')
  const waitForLog = (re: RegExp, ms = 30_000): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        const line = text.split('\n').find((l) => re.test(l))
        if (line === undefined) return false
        done()
        resolve(line)
        return true
      }
      const onData = (): void => void check()
      const onExit = (): void => (done(), reject(new Error(`the snapshotter exited before logging ${re}: ${text.slice(-2000)}`)))
      const timer = setTimeout(() => (done(), reject(new Error(`the snapshotter logged no ${re} within ${ms} ms: ${text.slice(-2000)}`))), ms)
      const done = (): void => {
        clearTimeout(timer)
        child.stderr!.off('data', onData)
        child.off('exit', onExit)
      }
      child.stderr!.on('data', onData)
      child.once('exit', onExit)
      check()
    })
  return {
    root,
    address,
    child,
    log: () => text,
    waitForLog,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      return exited
    },
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
    },
  }
}

type Callback = (err: grpc.ServiceError | null, value?: unknown) => void
type RawClient = grpc.Client & Record<string, (req: unknown, cb: Callback) => void> & { List(req: unknown): grpc.ClientReadableStream<unknown> }

export interface Mount {
  type: string
  source: string
  options: string[]
}

export interface Info {
  name: string
  parent: string
  kind: 'VIEW' | 'ACTIVE' | 'COMMITTED'
  labels: Record<string, string>
  created_at: { seconds: number; nanos: number }
  updated_at: { seconds: number; nanos: number }
}

/** A client of the snapshots service, as containerd's proxy is: one promise per call. */
export class SnapshotsClient {
  private readonly raw: RawClient

  constructor(address: string) {
    const pkg = loadSnapshotsProto() as unknown as { containerd: { services: { snapshots: { v1: { Snapshots: grpc.ServiceClientConstructor } } } } }
    this.raw = new pkg.containerd.services.snapshots.v1.Snapshots(`unix://${address}`, grpc.credentials.createInsecure()) as unknown as RawClient
  }

  private call<T>(method: string, req: unknown): Promise<T> {
    return new Promise((resolve, reject) => this.raw[method]!(req, (err, value) => (err ? reject(err) : resolve(value as T))))
  }

  async prepare(key: string, parent = '', labels: Record<string, string> = {}): Promise<Mount[]> {
    return (await this.call<{ mounts: Mount[] }>('Prepare', { key, parent, labels })).mounts
  }
  async view(key: string, parent = '', labels: Record<string, string> = {}): Promise<Mount[]> {
    return (await this.call<{ mounts: Mount[] }>('View', { key, parent, labels })).mounts
  }
  async mounts(key: string): Promise<Mount[]> {
    return (await this.call<{ mounts: Mount[] }>('Mounts', { key })).mounts
  }
  commit(name: string, key: string, labels: Record<string, string> = {}): Promise<unknown> {
    return this.call('Commit', { name, key, labels })
  }
  remove(key: string): Promise<unknown> {
    return this.call('Remove', { key })
  }
  async stat(key: string): Promise<Info> {
    return (await this.call<{ info: Info }>('Stat', { key })).info
  }
  async update(name: string, labels: Record<string, string>, paths: string[] = []): Promise<Info> {
    return (await this.call<{ info: Info }>('Update', { info: { name, labels }, update_mask: { paths } })).info
  }
  usage(key: string): Promise<{ size: number; inodes: number }> {
    return this.call('Usage', { key })
  }
  cleanup(): Promise<unknown> {
    return this.call('Cleanup', {})
  }
  list(filters: string[] = []): Promise<Info[]> {
    return new Promise((resolve, reject) => {
      const out: Info[] = []
      const stream = this.raw.List({ filters })
      stream.on('data', (page: { info: Info[] }) => out.push(...page.info))
      stream.on('error', reject)
      stream.on('end', () => resolve(out))
    })
  }
  close(): void {
    this.raw.close()
  }
}

export interface Containerd {
  address: string
  /** runs ctr against this containerd; throws with its output unless it exits 0 */
  ctr(args: string[]): string
  ctrStatus(args: string[]): { status: number | null; stdout: string; stderr: string }
  /** ctrStatus without blocking this process: for tests whose own process serves something ctr's call needs (s3rver) */
  ctrAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }>
  stop(): Promise<void>
}

/** Debian's containerd on its own root, state and socket under `dir`, with snapdir at `snapshotterAddress` as a proxy snapshotter. */
export async function startContainerd(dir: string, snapshotterAddress: string): Promise<Containerd> {
  mkdirSync(dir, { recursive: true })
  const address = path.join(dir, 'containerd.sock')
  const config = path.join(dir, 'config.toml')
  writeFileSync(
    config,
    [
      'version = 2',
      `root = "${path.join(dir, 'root')}"`,
      `state = "${path.join(dir, 'state')}"`,
      // the CRI plugin wants a CNI set-up this test has no use for
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${address}"`,
      '[proxy_plugins]',
      '  [proxy_plugins.snapdir]',
      '    type = "snapshot"',
      `    address = "${snapshotterAddress}"`,
      '',
    ].join('\n'),
  )
  const child = spawn('containerd', ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] })
  const log = createWriteStream(path.join(dir, 'containerd.log'))
  child.stdout.pipe(log)
  child.stderr.pipe(log, { end: false })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  await waitForLine(child, 'containerd successfully booted', 60_000, 'containerd')
  const ctrStatus = (args: string[]) => {
    const r = spawnSync('ctr', ['--address', address, ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
    return { status: r.status, stdout: r.stdout, stderr: r.stderr }
  }
  const ctrAsync = (args: string[]) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const c = spawn('ctr', ['--address', address, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      c.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
      c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
      c.on('error', reject)
      c.on('close', (status) => resolve({ status, stdout, stderr }))
    })
  return {
    address,
    ctrStatus,
    ctrAsync,
    ctr: (args) => {
      const r = ctrStatus(args)
      if (r.status !== 0) throw new Error(`ctr ${args.join(' ')} exited ${r.status}: ${r.stderr}${r.stdout}`)
      return r.stdout
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      await exited
      log.end()
    },
  }
}

/**
 * Resolves once containerd's calls reach the snapdir snapshotter again (a snapshot prepared through
 * containerd and removed), with how long that took; rejects after `ms`. After the snapshotter
 * restarts, containerd fails its calls with the old connection error until its gRPC channel redials
 * (containerd's proxy backoff is at most 3 s). `ctr snapshots ls` cannot tell: containerd answers it
 * from its own metadata, without asking the snapshotter.
 */
export async function snapshotterReached(ctd: Containerd, ms = 30_000): Promise<number> {
  const started = Date.now()
  for (let n = 0; ; n++) {
    const key = `reach-probe-${process.pid}-${n}`
    const r = await ctd.ctrAsync(['snapshots', '--snapshotter', 'snapdir', 'prepare', key])
    if (r.status === 0) {
      await ctd.ctrAsync(['snapshots', '--snapshotter', 'snapdir', 'rm', key])
      return Date.now() - started
    }
    if (Date.now() - started > ms) throw new Error(`containerd did not reach the snapshotter within ${ms} ms: ${r.stderr}`)
  }
}
