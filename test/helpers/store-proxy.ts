// An HTTP proxy in front of an S3 server on loopback that records every request a command makes of
// the store (method, key, when it came and when its answer ended) and can hold each one back for a
// while, as a link with a round trip time would. Tests count requests and, through `rounds`, the
// store round trips a command waited on one after another.
import { EventEmitter } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface StoreRequest {
  method: string
  /** the path without the bucket and the query: 'prefix/trees/ab/ab12…' */
  key: string
  /** ms since the proxy started: when the request came, and when its answer was sent whole (0 until then) */
  start: number
  end: number
}

export interface StoreProxy {
  /** the endpoint to give snapdir (--s3-endpoint) */
  endpoint: string
  requests: StoreRequest[]
  /** emits 'answered' (StoreRequest) as each answer has been sent whole */
  events: EventEmitter
  /** ms each request is held before it is forwarded */
  delayMs: number
  /** when set and it gives a promise for a request, that request is held until the promise resolves instead */
  holdUntil: ((r: StoreRequest) => Promise<void> | null) | null
  close(): Promise<void>
}

export async function startStoreProxy(target: string, delayMs = 0): Promise<StoreProxy> {
  const t = new URL(target)
  const began = performance.now()
  const now = (): number => performance.now() - began
  const agent = new http.Agent({ keepAlive: true })
  const proxy: StoreProxy = { endpoint: '', requests: [], events: new EventEmitter(), delayMs, holdUntil: null, close: async () => {} }
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    const record: StoreRequest = { method: req.method ?? '', key: url.pathname.split('/').slice(2).join('/'), start: now(), end: 0 }
    proxy.requests.push(record)
    const headers = { ...req.headers }
    delete headers.expect // Node's server answered the 100-continue already
    const forward = (): void => {
      const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers, agent }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers)
        r.pipe(res)
        r.on('end', () => {
          record.end = now()
          proxy.events.emit('answered', record)
        })
      })
      up.on('error', () => res.destroy())
      req.pipe(up)
    }
    const until = proxy.holdUntil?.(record)
    if (until) void until.then(forward)
    else if (proxy.delayMs > 0) setTimeout(forward, proxy.delayMs)
    else forward()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  proxy.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  proxy.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
      agent.destroy()
    })
  return proxy
}

/**
 * The longest chain of requests each of which came only after the one before it was answered: the
 * round trips a command waited on in turn (requests made at once count as one).
 */
export function rounds(requests: StoreRequest[]): number {
  const depth: number[] = []
  let most = 0
  requests.forEach((r, i) => {
    let d = 1
    for (let j = 0; j < i; j++) {
      const q = requests[j]!
      if (q.end > 0 && q.end <= r.start) d = Math.max(d, depth[j]! + 1)
    }
    depth.push(d)
    most = Math.max(most, d)
  })
  return most
}

/** The store area of a request's key ('trees', 'tree-parts', 'chunks', 'refs', 'config', …), below `prefix`. */
export function areaOf(r: StoreRequest, prefix: string): string {
  const rel = r.key.startsWith(`${prefix}/`) ? r.key.slice(prefix.length + 1) : r.key
  return rel.split('/')[0] || '(bucket)'
}
