// A real registry for the tests: Debian's docker-registry (distribution 2.8, which scripts/setup.sh
// installs) on a free loopback port, with its own storage directory and config, in one of three modes:
// anonymous; htpasswd basic auth (bcrypt, made with `htpasswd -B`); token auth through the tests'
// token server (token-server.ts). Deletes are enabled. Ready once it logs that it listens and then
// answers /v2/ (no fixed sleeps).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { get as httpGet } from 'node:http'
import { get as httpsGet } from 'node:https'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { startTokenServer, type TokenServer, type TokenServerOptions } from './token-server.js'

export const DOCKER_REGISTRY = '/usr/bin/docker-registry'
export const HTPASSWD = '/usr/bin/htpasswd'

export type RegistryAuth = 'anonymous' | 'basic' | 'token'

export interface TestRegistry {
  /** `127.0.0.1:PORT`, as image references name it */
  host: string
  /** `http://127.0.0.1:PORT` (https with `tls`) */
  url: string
  auth: RegistryAuth
  /** the user and password that basic and token modes accept (`user:pass` in `creds`) */
  user: string
  password: string
  creds: string
  /** `docker://HOST/name` */
  ref(name: string): string
  /** the token server (token mode) */
  tokens?: TokenServer
  /** where the registry keeps blobs and repositories */
  storage: string
  /** what the registry logged so far */
  log(): string
  stop(): Promise<void>
}

export interface RegistryOptions {
  auth?: RegistryAuth
  user?: string
  password?: string
  /** token mode: passed to the token server */
  token?: Partial<TokenServerOptions>
  timeoutMs?: number
  /** serve HTTPS with this certificate and key (PEM files); with `client`, ask for that client certificate (self-signed: its own CA) */
  tls?: { cert: string; key: string; client?: { cert: string; key: string } }
}

/** Whether this machine can run the registry tests (docker-registry and htpasswd installed). */
export function registryAvailable(): boolean {
  return existsSync(DOCKER_REGISTRY) && existsSync(HTPASSWD)
}

export async function startRegistry(options: RegistryOptions = {}): Promise<TestRegistry> {
  const auth = options.auth ?? 'anonymous'
  const user = options.user ?? 'tester'
  const password = options.password ?? 's3cret:with-colon'
  const dir = mkdtempSync(path.join(os.tmpdir(), 'snapdir-registry-'))
  const storage = path.join(dir, 'storage')
  let tokens: TokenServer | undefined
  let authConfig: object | undefined
  if (auth === 'basic') {
    const file = path.join(dir, 'htpasswd')
    const made = spawnSync(HTPASSWD, ['-Bbc', file, user, password], { encoding: 'utf8' })
    if (made.status !== 0) throw new Error(`htpasswd failed: ${made.stderr}`)
    authConfig = { htpasswd: { realm: 'snapdir-test', path: file } }
  } else if (auth === 'token') {
    tokens = await startTokenServer({ users: { [user]: password }, ...options.token })
    authConfig = { token: { realm: tokens.realm, service: tokens.service, issuer: tokens.issuer, rootcertbundle: tokens.certFile } }
  }
  // a port that was free a moment ago; if another process takes it first, the registry exits and we try another
  for (let tries = 0; ; tries++) {
    const port = await freePort()
    const config = {
      version: '0.1',
      log: { level: 'info', formatter: 'text', accesslog: { disabled: true } },
      storage: { filesystem: { rootdirectory: storage }, delete: { enabled: true }, maintenance: { uploadpurging: { enabled: false } } },
      http: { addr: `127.0.0.1:${port}`, secret: 'snapdir-test-secret', ...(options.tls ? { tls: { certificate: options.tls.cert, key: options.tls.key, ...(options.tls.client ? { clientcas: [options.tls.client.cert] } : {}) } } : {}) },
      health: { storagedriver: { enabled: false } },
      ...(authConfig === undefined ? {} : { auth: authConfig }),
    }
    // JSON is YAML: the registry's config parser reads it as is
    const configFile = path.join(dir, 'config.yml')
    writeFileSync(configFile, JSON.stringify(config, null, 2))
    const scheme = options.tls ? 'https' : 'http'
    const client = options.tls?.client
    const started = await launch(configFile, port, scheme, client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}, options.timeoutMs ?? 30_000)
    if (started === 'port-taken' && tries < 5) continue
    if (typeof started === 'string') {
      await tokens?.close()
      rmSync(dir, { recursive: true, force: true })
      throw new Error(`docker-registry did not start: ${started}`)
    }
    const host = `127.0.0.1:${port}`
    return {
      host,
      url: `${scheme}://${host}`,
      auth,
      user,
      password,
      creds: `${user}:${password}`,
      ref: (name) => `docker://${host}/${name}`,
      ...(tokens === undefined ? {} : { tokens }),
      storage,
      log: () => started.log(),
      async stop() {
        await started.stop()
        await tokens?.close()
        rmSync(dir, { recursive: true, force: true })
      },
    }
  }
}

interface Launched {
  log(): string
  stop(): Promise<void>
}

async function launch(configFile: string, port: number, scheme: 'http' | 'https', clientCert: { cert?: Buffer; key?: Buffer }, timeoutMs: number): Promise<Launched | string> {
  const child: ChildProcess = spawn(DOCKER_REGISTRY, ['serve', configFile], { stdio: ['ignore', 'pipe', 'pipe'] })
  let text = ''
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const listening = new Promise<boolean>((resolve) => {
    const onData = (b: Buffer): void => {
      text += b.toString('utf8')
      if (text.includes(`listening on 127.0.0.1:${port}`)) resolve(true)
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('exit', () => resolve(false))
  })
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      await exited
    }
  }
  let timer: NodeJS.Timeout | undefined
  const ready = await Promise.race([listening, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)))])
  clearTimeout(timer)
  if (ready !== true) {
    await stop()
    if (text.includes('address already in use')) return 'port-taken'
    return `${ready === 'timeout' ? `no "listening" within ${timeoutMs} ms` : `exited ${child.exitCode}`}: ${text.slice(-2000)}`
  }
  // it says it listens: one request to /v2/ shows it answers (200 anonymous, 401 with auth)
  // (its certificate is the test's own: not checked here, the tests check what snapdir makes of it)
  const status = await new Promise<number | Error>((resolve) => {
    const req = (scheme === 'https' ? httpsGet : httpGet)(`${scheme}://127.0.0.1:${port}/v2/`, { rejectUnauthorized: false, ...clientCert }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', resolve)
  })
  if (status instanceof Error || (status !== 200 && status !== 401)) {
    await stop()
    return `listening but /v2/ answered ${status instanceof Error ? status.message : status}: ${text.slice(-2000)}`
  }
  return { log: () => text, stop }
}

/** A TCP port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
