// HTTP for one registry, on node:http: a keep-alive connection pool per origin (the registry's, and any
// CDN its blob redirects lead to), TLS verified unless told not to (a CA file adds to the system's
// roots), request timeouts, a requests-per-second limit, and retries where a retry can help:
// - 408, 429, 500, 502, 503, 504 and the like, connection resets, timeouts: retried with jittered
//   exponential backoff, waiting at least what Retry-After says;
// - any other 4xx is an answer, never retried;
// - a connection refused or a name that does not resolve: the registry is not there; not retried.
// Redirects are followed only where the caller asks (blob GETs and HEADs): to another host too, as
// registries send blobs to a CDN, without the Authorization header there; a loop or more than
// MAX_REDIRECTS hops is an error.
//
// node:http rather than undici: its parser is native (llhttp in C) where undici runs llhttp as
// WebAssembly, copying every piece of a body into the module's memory and calling back into JS from
// it; reading a 63 MB layer cost 0.66 CPU s with undici and 0.45 with node:http, and a registry to
// registry copy moves every byte through a response and a request. node:http also loads a fraction of
// what undici's dispatcher does (undici's client loads node:http2 and a WebAssembly module at start).
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { native } from '../chunk/native.js'
import { abortedError, errnoText, isErrno, SnapdirError } from '../util/errors.js'
import { RateLimiter } from './rate-limit.js'
import { readTlsFiles } from './tls-files.js'
import { registryError, siteText, type RequestSite } from './registry-error.js'

export type HttpMethod = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE'

export interface TransportOptions {
  /** verify the server's TLS certificate (default true) */
  tlsVerify?: boolean
  /** a PEM file of CA certificates trusted besides the system's */
  caFile?: string
  /** a directory of CA certificates (*.crt) and a client certificate (NAME.cert, NAME.key), as skopeo's --cert-dir */
  certDir?: string
  /** at most this many requests per second to this registry (default: no limit) */
  rps?: number
  /** how many times a failed request is retried (default 5) */
  retries?: number
  /** how long to wait for response headers, and for each piece of a body (default 60 s) */
  timeoutMs?: number
  /** the first backoff delay, doubled per retry, with jitter (default 250 ms; tests make it small) */
  backoffMs?: number
  /** the longest wait between two attempts, whatever Retry-After asks (default 60 s) */
  maxDelayMs?: number
  /** connections per origin (default 16) */
  connections?: number
}

export interface HttpRequest {
  method: HttpMethod
  url: URL
  headers?: Record<string, string>
  /** a buffer, or a function giving a fresh stream for each attempt */
  body?: Buffer | (() => Readable)
  /** follow 3xx answers (blob GET and HEAD) */
  followRedirects?: boolean
  /** false: one attempt only (the caller retries a whole sequence, as uploads do) */
  retry?: boolean
  signal?: AbortSignal
  /** named in errors */
  site: RequestSite
}

export interface HttpResponse {
  status: number
  headers: IncomingHttpHeaders
  /** the answer's body, read to its end (or `discard`ed) so that its connection goes back to the pool */
  body: IncomingMessage
  /** where the answer came from (after redirects) */
  url: URL
}

export const MAX_REDIRECTS = 10
const RETRY_STATUSES = new Set([408, 425, 429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524])
const RETRY_ERRNOS = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETRESET', 'ECONNABORTED'])
/** a request body that was not as long as its Content-Length said */
const BODY_LENGTH = 'ERR_BODY_LENGTH'
/**
 * Freed heap malloc keeps for the process rather than trimming (native/heap.c): every piece of a body
 * read is a fresh buffer, freed by the garbage collector tens of MB at a time; returned to the kernel,
 * the next pieces fault their pages in again.
 */
const KEEP_FREED_HEAP = 128 * 1024 * 1024
/** the most of an unwanted answer's body read to keep its connection; beyond it, the connection is dropped */
const DISCARD_LIMIT = 256 * 1024

export class Transport {
  readonly retries: number
  /** requests sent so far, each attempt and redirect hop counted (token requests too) */
  requests = 0
  private readonly http: HttpAgent
  private readonly https: HttpsAgent
  private readonly limiter: RateLimiter | null
  private readonly timeoutMs: number
  private readonly backoffMs: number
  private readonly maxDelayMs: number

  constructor(options: TransportOptions = {}) {
    this.retries = nonNegativeInteger(options.retries ?? 5, 'retries')
    this.timeoutMs = positive(options.timeoutMs ?? 60_000, 'timeoutMs')
    this.backoffMs = positive(options.backoffMs ?? 250, 'backoffMs')
    this.maxDelayMs = positive(options.maxDelayMs ?? 60_000, 'maxDelayMs')
    if (options.rps !== undefined) positive(options.rps, 'rps')
    this.limiter = options.rps === undefined ? null : new RateLimiter(options.rps)
    const tls = readTlsFiles(options.caFile, options.certDir)
    const maxSockets = positiveInteger(options.connections ?? 16, 'connections')
    this.http = new HttpAgent({ keepAlive: true, maxSockets })
    this.https = new HttpsAgent({ keepAlive: true, maxSockets, rejectUnauthorized: options.tlsVerify ?? true, ...tls })
    native?.keepFreedHeap?.(KEEP_FREED_HEAP)
  }

  /**
   * Sends `req`, retrying as the file's header says and following redirects if asked; resolves with the
   * last answer, whatever its status (the caller reads it or calls `discard`). Network failures that
   * outlast the retries reject with ERR_REGISTRY_UNREACHABLE naming the site.
   */
  async request(req: HttpRequest): Promise<HttpResponse> {
    let { url, method } = req
    let headers = req.headers ?? {}
    const origin = req.url.origin
    const seen = new Set<string>([url.href])
    for (let hops = 0; ; hops++) {
      const res = await this.attempts({ ...req, url, method, headers })
      if (!req.followRedirects || ![301, 302, 303, 307, 308].includes(res.status)) return res
      await discard(res)
      const location = header(res.headers, 'location')
      if (location === undefined) throw registryError('ERR_REGISTRY', req.site, `redirect (${res.status}) without a Location`, { status: res.status })
      const next = new URL(location, url)
      if (seen.has(next.href)) throw registryError('ERR_REGISTRY', req.site, `redirect loop: ${redact(url)} leads back to ${redact(next)}`)
      if (hops + 1 >= MAX_REDIRECTS) throw registryError('ERR_REGISTRY', req.site, `more than ${MAX_REDIRECTS} redirects (last to ${redact(next)})`)
      seen.add(next.href)
      // the registry's credentials are for the registry: a CDN gets a presigned URL, not our token
      if (next.origin !== origin) headers = Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'))
      if (res.status === 303) method = 'GET'
      url = next
    }
  }

  private async attempts(req: HttpRequest): Promise<HttpResponse> {
    const tries = req.retry === false ? 0 : this.retries
    for (let attempt = 0; ; attempt++) {
      let res: HttpResponse
      try {
        res = await this.once(req)
      } catch (err) {
        if (req.signal?.aborted) throw abortedError(siteText(req.site), req.signal)
        if (attempt < tries && retryableError(err)) {
          await this.pause(attempt, undefined, req.signal)
          continue
        }
        throw unreachable(req.site, req.url, err, attempt, retryableError(err))
      }
      if (attempt < tries && RETRY_STATUSES.has(res.status)) {
        const after = retryAfterMs(header(res.headers, 'retry-after'))
        await discard(res)
        await this.pause(attempt, after, req.signal)
        continue
      }
      return res
    }
  }

  private async once(req: HttpRequest): Promise<HttpResponse> {
    await this.limiter?.take(req.signal)
    req.signal?.throwIfAborted()
    this.requests++
    const body = req.body === undefined ? null : Buffer.isBuffer(req.body) ? req.body : req.body()
    const headers: Record<string, string> = { 'user-agent': 'snapdir', ...req.headers }
    if (Buffer.isBuffer(body)) headers['content-length'] = String(body.length)
    const res = await this.exchange(req.url, req.method, headers, body, req.signal)
    return { status: res.statusCode ?? 0, headers: res.headers, body: res, url: req.url }
  }

  /**
   * One request and its answer's head. `timeoutMs` without a byte either way fails it (before the
   * answer: the request; after: the answer's body, which the caller is reading); so does `signal`.
   */
  private exchange(url: URL, method: HttpMethod, headers: Record<string, string>, body: Buffer | Readable | null, signal?: AbortSignal): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const secure = url.protocol === 'https:'
      const req = (secure ? httpsRequest : httpRequest)(url, { method, headers, agent: secure ? this.https : this.http })
      let res: IncomingMessage | null = null
      const fail = (err: Error): void => {
        if (res === null) req.destroy(err)
        else res.destroy(err)
      }
      const onAbort = (): void => fail(signal?.reason instanceof Error ? signal.reason : new Error('aborted'))
      signal?.addEventListener('abort', onAbort, { once: true })
      const done = (): void => signal?.removeEventListener('abort', onAbort)
      req.setTimeout(this.timeoutMs, () => fail(timeoutError(this.timeoutMs)))
      req.on('error', (err) => {
        if (res === null) {
          done()
          reject(err)
        }
      })
      req.once('response', (answer: IncomingMessage) => {
        res = answer
        answer.once('close', done)
        resolve(answer)
      })
      if (body === null) req.end()
      else if (Buffer.isBuffer(body)) req.end(body)
      else sendBody(body, req, headers['content-length'] === undefined ? undefined : Number(headers['content-length']))
    })
  }

  /** The wait before retry number `attempt` + 1 (exported for sequences retried as a whole). */
  async backoff(attempt: number, signal?: AbortSignal): Promise<void> {
    await this.pause(attempt, undefined, signal)
  }

  private async pause(attempt: number, retryAfter: number | undefined, signal?: AbortSignal): Promise<void> {
    const backoff = Math.min(this.maxDelayMs, this.backoffMs * 2 ** attempt)
    // full jitter over the upper half: clients that failed together do not come back together
    const jittered = backoff / 2 + Math.random() * (backoff / 2)
    const ms = Math.min(this.maxDelayMs, Math.max(jittered, retryAfter ?? 0))
    await sleep(ms, undefined, signal === undefined ? {} : { signal })
  }

  close(): Promise<void> {
    this.http.destroy()
    this.https.destroy()
    return Promise.resolve()
  }
}

/**
 * Writes a request body from its stream as pipe() would; a stream that gives more or fewer bytes than
 * the Content-Length said fails the request (the registry would take a short body as an unfinished
 * one and wait), and a failing stream fails it with the stream's error.
 */
function sendBody(body: Readable, req: ClientRequest, length: number | undefined): void {
  let sent = 0
  const short = (): void => {
    body.destroy()
    req.destroy(Object.assign(new Error(`the body was ${sent} bytes, not the ${length} its Content-Length says`), { code: BODY_LENGTH }))
  }
  body.on('data', (piece: Buffer) => {
    sent += piece.length
    if (length !== undefined && sent > length) return short()
    if (!req.write(piece)) {
      body.pause()
      req.once('drain', () => body.resume())
    }
  })
  body.once('end', () => (length !== undefined && sent !== length ? short() : req.end()))
  body.once('error', (err) => req.destroy(err))
  req.once('close', () => {
    if (!body.readableEnded) body.destroy()
  })
}

function timeoutError(ms: number): Error {
  return Object.assign(new Error(`timeout: nothing received in ${ms} ms`), { code: 'ETIMEDOUT' })
}

/** Reads and drops an answer's body, so its connection goes back to the pool (a long one is cut off instead). */
export async function discard(res: HttpResponse): Promise<void> {
  const body = res.body
  if (body.readableEnded || body.destroyed) return
  await new Promise<void>((resolve) => {
    let length = 0
    body.on('data', (piece: Buffer) => {
      length += piece.length
      if (length > DISCARD_LIMIT) body.destroy()
    })
    body.once('end', resolve)
    body.once('close', resolve)
    body.once('error', () => resolve())
    body.resume()
  })
}

/** Reads an answer's body whole, refusing more than `limit` bytes (then the connection is dropped). */
export async function readBody(res: HttpResponse, limit: number, site: RequestSite, what: string): Promise<Buffer> {
  const parts: Buffer[] = []
  let length = 0
  try {
    for await (const part of res.body as AsyncIterable<Buffer>) {
      length += part.length
      if (length > limit) {
        res.body.destroy()
        throw registryError('ERR_REGISTRY', site, `${what} is larger than ${limit} bytes`)
      }
      parts.push(part)
    }
  } catch (err) {
    if (err instanceof SnapdirError) throw err
    throw unreachable(site, res.url, err, 0)
  }
  return Buffer.concat(parts, length)
}

export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** Retry-After in milliseconds: delta-seconds or an HTTP date (RFC 9110 10.2.3). */
export function retryAfterMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now())
}

/** Whether a network error is one a retry can cure (a reset, a timeout), not a refusal. */
export function retryableError(err: unknown): boolean {
  if (!(err instanceof Error)) return false
  const code = (err as { code?: unknown }).code
  if (typeof code !== 'string') return false
  return RETRY_ERRNOS.has(code)
}

/** A network failure as one line naming the site and the origin it failed at. */
export function unreachable(site: RequestSite, url: URL, err: unknown, retries: number, transient = false): SnapdirError {
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined
  const message = err instanceof Error ? (isErrno(err) ? errnoText(err) : err.message) : String(err)
  if (code === BODY_LENGTH) {
    // ours, not the registry's: the body given was not as long as the size given
    return registryError('ERR_REGISTRY', site, 'the data sent was not the size given for it', { cause: err })
  }
  const words = code === 'ECONNREFUSED' ? 'connection refused' : code === 'ENOTFOUND' ? 'host not found' : typeof code === 'string' && UNTRUSTED_CERT.has(code) ? untrusted((err as Error).message) : message
  const after = retries > 0 ? ` (after ${retries} ${retries === 1 ? 'retry' : 'retries'})` : ''
  const e = registryError('ERR_REGISTRY_UNREACHABLE', site, `registry unreachable at ${url.origin}: ${words}${after}`, { cause: err })
  // whether trying again can help: an upload retries its whole sequence on such a failure
  return transient ? new SnapdirError(e.code, e.message, { cause: err, data: { ...e.data, transient: true } }) : e
}

/** OpenSSL's and node's codes for a certificate the connection does not trust. */
const UNTRUSTED_CERT = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'ERR_TLS_CERT_ALTNAME_INVALID',
])

function untrusted(message: string): string {
  return `its TLS certificate is not trusted (${message}); trust its CA with --cert-dir DIR (*.crt) or --ca-file FILE, or skip verification with --tls-verify=false`
}

/** Whether a connection failed because the server does not speak TLS (a plain HTTP registry asked over HTTPS). */
export function notTls(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code
    if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' || /wrong version number|packet length too long/.test(e.message)) return true
  }
  return false
}

/** A URL for messages: a presigned CDN URL's query holds signatures. */
function redact(url: URL): string {
  return `${url.origin}${url.pathname}`
}

function positive(n: number, name: string): number {
  if (!(n > 0) || !Number.isFinite(n)) throw new RangeError(`${name} must be a positive number, got ${n}`)
  return n
}

function positiveInteger(n: number, name: string): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name} must be a positive integer, got ${n}`)
  return n
}

function nonNegativeInteger(n: number, name: string): number {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${name} must be a non-negative integer, got ${n}`)
  return n
}
