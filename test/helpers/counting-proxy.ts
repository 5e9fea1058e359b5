// A counting HTTP proxy in front of a registry on loopback: every request is forwarded as it is (the
// registry builds upload locations from the Host header, so they point back at the proxy) and
// recorded with its method, path and status, and the bytes sent each way are counted. Tests read
// what a command asked of the registry, and wait on a request to stop a command halfway.
import { EventEmitter, once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface ProxiedRequest {
  method: string
  path: string
  status: number
  /** request body bytes (what was uploaded) */
  sent: number
  /** response body bytes */
  received: number
}

export interface CountingProxy {
  /** `127.0.0.1:PORT`, the registry's name through the proxy */
  host: string
  requests: ProxiedRequest[]
  /** emits 'request' (ProxiedRequest) as each one completes */
  events: EventEmitter
  /** requests whose method is `method` and whose path matches `pattern` */
  count(method: string, pattern: RegExp): number
  reset(): void
  close(): Promise<void>
}

/** A blob upload's last request: the PUT that names its digest. */
export const BLOB_UPLOAD_DONE = /\/blobs\/uploads\/[^?]*\?(?:.*&)?digest=/
/** A manifest's PUT. */
export const MANIFEST_PUT = /\/manifests\//

export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const [targetHost, targetPort] = target.split(':') as [string, string]
  const requests: ProxiedRequest[] = []
  const events = new EventEmitter()
  const server = http.createServer((req, res) => {
    const record: ProxiedRequest = { method: req.method ?? '', path: req.url ?? '', status: 0, sent: 0, received: 0 }
    const upstream = http.request({ host: targetHost, port: Number(targetPort), method: req.method, path: req.url, headers: req.headers }, (up) => {
      record.status = up.statusCode ?? 0
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.on('data', (d: Buffer) => (record.received += d.length))
      up.pipe(res)
      up.on('end', () => {
        requests.push(record)
        events.emit('request', record)
      })
    })
    upstream.on('error', () => res.destroy())
    req.on('data', (d: Buffer) => (record.sent += d.length))
    req.on('aborted', () => upstream.destroy())
    req.pipe(upstream)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  return {
    host: `127.0.0.1:${port}`,
    requests,
    events,
    count: (method, pattern) => requests.filter((r) => r.method === method && pattern.test(r.path)).length,
    reset: () => void requests.splice(0),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
