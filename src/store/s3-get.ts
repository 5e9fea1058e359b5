// GETs of an S3 store's objects without the AWS SDK: a request signed with Signature Version 4
// (https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html) over a keep-alive
// agent. The SDK spends about 2.5 ms of CPU on each request (its middleware stack, endpoint rules,
// schema serde, signer), this about 0.3 ms, and loading the SDK costs 0.3 s of CPU more: a lazy mount
// makes a few hundred small GETs before it is up and while its first program runs, on the machine
// that runs the program. s3-store.ts uses it only where it sends what the SDK would send: a custom
// endpoint (path-style, as the SDK is configured for one) and keys from the environment (the first
// source of the SDK's credential chain) with no profile; anything else, and every other request, goes
// through the SDK.
import crypto from 'node:crypto'
import http from 'node:http'
import https from 'node:https'
import { setTimeout as sleep } from 'node:timers/promises'

export interface S3Credentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

/**
 * The keys the SDK's credential chain would take first, when they are all it would look at: both
 * AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set, and no AWS_PROFILE (with which the chain skips them).
 */
export function environmentCredentials(env: NodeJS.ProcessEnv = process.env): S3Credentials | null {
  const accessKeyId = env.AWS_ACCESS_KEY_ID
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY
  if (!accessKeyId || !secretAccessKey || env.AWS_PROFILE) return null
  return { accessKeyId, secretAccessKey, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) }
}

/**
 * An answer of S3 other than 200, shaped as the SDK's errors are (s3-store.ts reads them alike): `name`
 * is S3's error code (NoSuchKey, NoSuchBucket, AccessDenied…; else the status's), `$metadata.httpStatusCode`.
 */
export class S3ResponseError extends Error {
  readonly $metadata: { httpStatusCode: number }

  constructor(code: string, message: string, status: number) {
    super(message)
    this.name = code
    this.$metadata = { httpStatusCode: status }
  }
}

export interface S3GetterOptions {
  /** the S3-compatible endpoint, addressed path-style: ENDPOINT/BUCKET/KEY */
  endpoint: string
  region: string
  credentials: S3Credentials
  /** attempts of a request that fails transiently (network errors, 5xx, throttling), as the SDK's maxAttempts */
  maxAttempts: number
  /** ms to connect; ms a request may go without any bytes (the SDK's connectionTimeout and requestTimeout) */
  connectionTimeout: number
  requestTimeout: number
}

const EMPTY_SHA256 = crypto.createHash('sha256').update('').digest('hex')
// the SDK's retry classification (@smithy/service-error-classification) and its standard backoff
const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND'])
const THROTTLING = new Set(['Throttling', 'ThrottlingException', 'SlowDown', 'RequestLimitExceeded', 'TooManyRequestsException', 'RequestThrottled', 'RequestTimeout', 'RequestTimeoutException'])
const RETRY_BASE_MS = 100
const RETRY_MAX_MS = 20_000

/** RFC 3986 unreserved characters stay, everything else is %XX of its UTF-8 bytes (SigV4's URI encoding). */
function uriEncode(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

function hmac(key: crypto.BinaryLike, data: string): Buffer {
  return crypto.createHmac('sha256', key).update(data).digest()
}

export class S3Getter {
  private readonly url: URL
  private readonly basePath: string
  private readonly agent: http.Agent
  private readonly request: typeof http.request
  private signingKey: { date: string; key: Buffer } | null = null

  constructor(private readonly options: S3GetterOptions) {
    this.url = new URL(options.endpoint)
    this.basePath = this.url.pathname.replace(/\/+$/, '')
    const secure = this.url.protocol === 'https:'
    // as many sockets as the SDK's handler keeps (maxSockets 50)
    this.agent = new (secure ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: 50 })
    this.request = secure ? https.request : http.request
  }

  /** The object's bytes; rejects with S3ResponseError for an answer other than 200, or the network error. */
  async get(bucket: string, key: string, signal?: AbortSignal): Promise<Buffer> {
    const path = this.pathOf(bucket, key)
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once(path, signal)
      } catch (err) {
        if (signal?.aborted || attempt >= this.options.maxAttempts || !retryable(err)) throw err
        const backoff = Math.floor(Math.random() * Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempt))
        // an abort meanwhile ends it with the signal's reason, as one during a request does
        await sleep(backoff, undefined, signal ? { signal } : {}).catch((e: unknown) => {
          signal?.throwIfAborted()
          throw e
        })
      }
    }
  }

  /** Closes the agent's sockets, so that nothing of it keeps the process alive. */
  destroy(): void {
    this.agent.destroy()
  }

  /** The request path of an object, path-style under the endpoint's own path, each segment URI-encoded. */
  pathOf(bucket: string, key: string): string {
    return `${this.basePath}/${uriEncode(bucket)}/${key.split('/').map(uriEncode).join('/')}`
  }

  private once(path: string, signal?: AbortSignal): Promise<Buffer> {
    const headers = this.signedHeaders(path)
    return new Promise<Buffer>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason as Error)
      const req = this.request({ protocol: this.url.protocol, hostname: this.url.hostname, port: this.url.port, path, method: 'GET', headers, agent: this.agent })
      const onAbort = () => req.destroy(signal!.reason as Error)
      signal?.addEventListener('abort', onAbort, { once: true })
      const connect = setTimeout(() => req.destroy(Object.assign(new Error(`connecting to ${this.url.host} took over ${this.options.connectionTimeout} ms`), { name: 'TimeoutError', code: 'ETIMEDOUT' })), this.options.connectionTimeout)
      req.on('socket', (socket) => {
        if (!socket.connecting) clearTimeout(connect)
        else socket.once('connect', () => clearTimeout(connect))
      })
      req.setTimeout(this.options.requestTimeout, () => req.destroy(Object.assign(new Error(`no answer from ${this.url.host} in ${this.options.requestTimeout} ms`), { name: 'TimeoutError' })))
      req.on('close', () => {
        clearTimeout(connect)
        signal?.removeEventListener('abort', onAbort)
      })
      req.on('error', reject)
      req.on('response', (res) => {
        const parts: Buffer[] = []
        res.on('data', (b: Buffer) => parts.push(b))
        res.on('error', reject)
        res.on('end', () => {
          const body = Buffer.concat(parts)
          if (res.statusCode === 200) return resolve(body)
          reject(responseError(res.statusCode ?? 0, body))
        })
      })
      req.end()
    })
  }

  /** The headers of a GET of `path` (URI-encoded, as sent) with no body, signed at `now`. */
  signedHeaders(path: string, now = new Date()): Record<string, string> {
    const { region, credentials } = this.options
    const amzDate = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '')
    const date = amzDate.slice(0, 8)
    const headers: Record<string, string> = { host: this.url.host, 'x-amz-content-sha256': EMPTY_SHA256, 'x-amz-date': amzDate }
    if (credentials.sessionToken !== undefined) headers['x-amz-security-token'] = credentials.sessionToken
    const names = Object.keys(headers).sort()
    const signed = names.join(';')
    const canonical = ['GET', path, '', ...names.map((n) => `${n}:${headers[n]!}`), '', signed, EMPTY_SHA256].join('\n')
    const scope = `${date}/${region}/s3/aws4_request`
    const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, crypto.createHash('sha256').update(canonical).digest('hex')].join('\n')
    if (this.signingKey?.date !== date) {
      this.signingKey = { date, key: hmac(hmac(hmac(hmac(`AWS4${credentials.secretAccessKey}`, date), region), 's3'), 'aws4_request') }
    }
    const signature = crypto.createHmac('sha256', this.signingKey.key).update(toSign).digest('hex')
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signed}, Signature=${signature}`
    return headers
  }
}

/** S3's XML error body read for its Code and Message (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html). */
function responseError(status: number, body: Buffer): S3ResponseError {
  const text = body.toString('utf8')
  const field = (name: string) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(text)?.[1]
  const code = field('Code') ?? (status === 404 ? 'NotFound' : status === 403 ? 'Forbidden' : `HTTP${status}`)
  return new S3ResponseError(code, field('Message') ?? (http.STATUS_CODES[status] ?? `HTTP ${status}`), status)
}

function retryable(err: unknown): boolean {
  if (err instanceof S3ResponseError) {
    const status = err.$metadata.httpStatusCode
    return status >= 500 || status === 429 || THROTTLING.has(err.name)
  }
  const e = err as { code?: string; name?: string }
  return e.name === 'TimeoutError' || (e.code !== undefined && TRANSIENT_CODES.has(e.code))
}
