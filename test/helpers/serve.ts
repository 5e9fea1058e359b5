// `snapdir serve` as a client meets it, for the serve tests: the built CLI as its own process on a
// free loopback port (--listen 127.0.0.1:0), ready once it prints its "listening on" line (never
// after a set time); its log kept for the test to read; stopped by a signal, its exit status returned.
import type { ChildProcess } from 'node:child_process'
import http from 'node:http'
import { spawnSnapdir } from './cli.js'

export interface ServeProcess {
  /** `http://127.0.0.1:PORT` */
  url: string
  /** `127.0.0.1:PORT`, as image references name it */
  host: string
  child: ChildProcess
  /** what it printed on stderr so far (the access log, warnings) */
  log(): string
  /** resolves once the log holds `needle` */
  waitForLog(needle: string | RegExp, ms?: number): Promise<void>
  /** resolves with the exit status once it exits */
  exited: Promise<number | null>
  /** sends `signal` (SIGTERM by default) and resolves with the exit status */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

const running = new Set<ChildProcess>()
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL')
})

export async function startServe(store: string, extra: string[] = [], options: { env?: NodeJS.ProcessEnv } = {}): Promise<ServeProcess> {
  const child = spawnSnapdir(['serve', '--store', store, '--listen', '127.0.0.1:0', ...extra], options.env ? { env: options.env } : {})
  running.add(child)
  let out = ''
  let err = ''
  const waiters = new Set<() => void>()
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d
    for (const w of waiters) w()
  })
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child)
      for (const w of waiters) w()
      resolve(code)
    }),
  )
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`snapdir serve did not print "listening on" within 30 s: ${err}`)), 30_000)
    child.stdout!.on('data', () => {
      const m = /listening on (https?:\/\/\S+)\n/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve(m[1]!)
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`snapdir serve exited (${code}) before listening: ${err}`))
    })
  })
  const waitForLog = (needle: string | RegExp, ms = 30_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const has = () => (typeof needle === 'string' ? err.includes(needle) : needle.test(err))
      const check = () => {
        if (has()) done()
        else if (child.exitCode !== null || child.signalCode !== null) done(new Error(`snapdir serve exited before logging ${String(needle)}: ${err}`))
      }
      const timer = setTimeout(() => done(new Error(`snapdir serve did not log ${String(needle)} within ${ms} ms: ${err.slice(-3000)}`)), ms)
      const done = (e?: Error) => {
        clearTimeout(timer)
        waiters.delete(check)
        if (e) reject(e)
        else resolve()
      }
      waiters.add(check)
      check()
    })
  return {
    url,
    host: new URL(url).host,
    child,
    log: () => err,
    waitForLog,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    },
  }
}

export interface RawResponse {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** One request with the path sent as it is (fetch would resolve `..` before sending it). */
export function rawRequest(url: string, path: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<RawResponse> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, path, method: options.method ?? 'GET', headers: options.headers ?? {} }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (b: Buffer) => parts.push(b))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}
