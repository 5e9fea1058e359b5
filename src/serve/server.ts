// `snapdir serve`: an OCI Distribution registry (distribution-spec v1.1) over any store.
//
// Every request goes the same way: the API version header; authentication (--htpasswd: Basic,
// 401 UNAUTHORIZED with a challenge); --read-only refusing any method that writes (405 UNSUPPORTED);
// the route from the one table (route-table.ts: add endpoints there), its `name` checked
// (NAME_INVALID); the handler; any failure answered as the spec's error body (errors.ts), or, once a
// response has begun, the connection destroyed so the client cannot take it for a whole one; and one
// access log line when the response ends or breaks (server-log.ts).
//
// close() stops accepting connections, lets the requests in flight finish (connections idle or
// done are closed), then resolves: what SIGINT and SIGTERM do. A connection counts as idle only once
// every response on it has closed: Node 20's own closeIdleConnections() (which http.Server.close()
// calls) takes a response whose end() was called as done, and destroys its socket with the last
// bytes still queued for a client that reads slowly, cutting its download short.
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import type { Store } from '../store/store.js'
import type { BlobCache } from './blob-cache.js'
import { errorBody, RegistryError, toRegistryError } from './errors.js'
import type { Htpasswd } from './htpasswd.js'
import { formatHost, type ListenAddress } from './listen-address.js'
import { RepositoryImages } from './repository-images.js'
import { checkName, matchRoute, type RequestContext, type Route } from './route.js'
import { ROUTES } from './route-table.js'
import type { ServerLog } from './server-log.js'

export interface RegistryServerOptions {
  store: Store
  listen: ListenAddress
  log: ServerLog
  htpasswd?: Htpasswd
  /** certificate and key (PEM): serve HTTPS */
  tls?: { cert: Buffer; key: Buffer }
  readOnly?: boolean
  routes?: readonly Route[]
  /** blobs served through a local disk cache (blob-cache.ts), opened and closed by the caller */
  blobCache?: BlobCache
}

/** Methods that change a registry: refused by --read-only before any route sees them. */
const WRITE_METHODS: ReadonlySet<string> = new Set(['PUT', 'POST', 'PATCH', 'DELETE'])

export class RegistryServer {
  readonly images: RepositoryImages
  private readonly server: http.Server
  private readonly routes: readonly Route[]
  private inFlight = 0
  /** each open connection, with how many of its responses have not closed yet */
  private readonly connections = new Map<Socket, number>()
  /** resolves when the last request in flight has closed, once stopping */
  private drained: (() => void) | null = null
  private closing: Promise<void> | null = null
  private address: AddressInfo | null = null

  constructor(private readonly options: RegistryServerOptions) {
    this.routes = options.routes ?? ROUTES
    this.images = new RepositoryImages(options.store, (message, fields) => options.log.warn(message, fields))
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      this.inFlight++
      const socket = req.socket
      this.connections.set(socket, (this.connections.get(socket) ?? 0) + 1)
      res.once('close', () => {
        this.inFlight--
        if (this.connections.has(socket)) this.connections.set(socket, this.connections.get(socket)! - 1)
        if (this.closing) {
          // a keep-alive connection that just finished its request is idle now: close it
          setImmediate(() => this.closeIdle())
          if (this.inFlight === 0) this.drained?.()
        }
      })
      void this.handle(req, res)
    }
    // no limit on receiving a request: an upload of a large layer takes as long as it takes
    const serverOptions = { requestTimeout: 0 }
    this.server = options.tls ? https.createServer({ ...serverOptions, cert: options.tls.cert, key: options.tls.key }, handler) : http.createServer(serverOptions, handler)
    this.server.on(options.tls ? 'secureConnection' : 'connection', (socket: Socket) => {
      this.connections.set(socket, 0)
      socket.once('close', () => this.connections.delete(socket))
    })
    // http.Server.close() calls this: ours, which waits for responses to be flushed (see above)
    this.server.closeIdleConnections = () => this.closeIdle()
  }

  /** Destroys the connections with no response open on them. */
  private closeIdle(): void {
    for (const [socket, open] of this.connections) if (open === 0) socket.destroy()
  }

  /** Listens; resolves once connections are taken. */
  async open(): Promise<void> {
    const { host, port } = this.options.listen
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    this.address = this.server.address() as AddressInfo
  }

  /** `http://HOST:PORT` (https with TLS), with the port the server got. */
  get url(): string {
    const port = this.address?.port ?? this.options.listen.port
    return `${this.options.tls ? 'https' : 'http'}://${formatHost(this.options.listen.host)}:${port}`
  }

  /** Requests being answered now. */
  get active(): number {
    return this.inFlight
  }

  /**
   * Stops taking connections and resolves once every request in flight is answered (its response
   * closed and logged) and every connection closed. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= Promise.all([
      new Promise<void>((resolve) => this.server.close(() => resolve())),
      new Promise<void>((resolve) => {
        this.drained = resolve
        if (this.inFlight === 0) resolve()
      }),
    ]).then(() => undefined)
    return this.closing
  }

  /** Ends every connection now, requests in flight too (a second signal). */
  closeNow(): void {
    this.server.closeAllConnections()
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = process.hrtime.bigint()
    const rawPath = (req.url ?? '/').split('?')[0]!
    const notes: Record<string, unknown> = {}
    let user: string | null = null
    res.once('close', () => {
      const bodyBytes = res.writableFinished && req.method !== 'HEAD' ? Number(res.getHeader('Content-Length') ?? 0) : 0
      this.options.log.access({
        remote: req.socket.remoteAddress ?? '-',
        user,
        method: req.method ?? '-',
        path: rawPath,
        status: res.statusCode,
        bytes: bodyBytes,
        ms: Number((process.hrtime.bigint() - started) / 1_000_000n),
        ...(res.writableFinished ? {} : { incomplete: true }),
        ...notes,
      })
    })
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0')
    if (this.closing) res.setHeader('Connection', 'close')
    try {
      const method = req.method ?? 'GET'
      if (this.options.htpasswd) {
        user = await this.options.htpasswd.check(req.headers.authorization)
        if (user === null) {
          throw new RegistryError('UNAUTHORIZED', { headers: { 'WWW-Authenticate': 'Basic realm="snapdir"' } })
        }
      }
      if (this.options.readOnly && WRITE_METHODS.has(method)) {
        throw new RegistryError('UNSUPPORTED', { message: 'this registry is read-only', detail: { method } })
      }
      const match = matchRoute(this.routes, method, rawPath)
      if (match === null) throw new RegistryError('UNSUPPORTED', { status: 404, message: `no endpoint ${rawPath}` })
      if ('allowed' in match) {
        throw new RegistryError('UNSUPPORTED', { message: `${method} is not supported on ${rawPath}`, headers: { Allow: match.allowed.join(', ') } })
      }
      if (match.params.name !== undefined) checkName(match.params.name)
      const ctx: RequestContext = {
        req,
        res,
        url: new URL(req.url ?? '/', 'http://registry'),
        params: match.params,
        user,
        store: this.options.store,
        images: this.images,
        blobCache: this.options.blobCache ?? null,
        note: (fields) => void Object.assign(notes, fields),
        warn: (message, fields) => this.options.log.warn(message, fields),
      }
      await match.route.handle(ctx)
    } catch (err) {
      const e = toRegistryError(err)
      if (e.status >= 500) {
        notes.error = e.message
        this.options.log.warn(`${req.method} ${rawPath}: ${e.message}`, { method: req.method, path: rawPath })
      } else notes.error = e.code
      if (res.headersSent) {
        res.destroy()
        return
      }
      // what a route set for the answer it did not give (a blob's Content-Length and digest) goes
      for (const h of res.getHeaderNames()) if (h !== 'docker-distribution-api-version' && h !== 'connection') res.removeHeader(h)
      const body = Buffer.from(errorBody(e))
      res.writeHead(e.status, { ...e.headers, 'Content-Type': 'application/json', 'Content-Length': String(body.length) })
      res.end(req.method === 'HEAD' ? undefined : body)
    }
  }
}
