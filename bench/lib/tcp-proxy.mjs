// A counting TCP proxy for the benchmarks that measure what crosses the wire (registry-sync): it
// forwards every connection to one target unchanged and counts the bytes each way, headers and TLS
// or HTTP framing included, as a network link would carry them. The client-to-server stream is also
// read as HTTP/1.1 (request line, headers, a body framed by Content-Length or chunked encoding,
// RFC 9112 section 6) to count requests by method; a stream that is not HTTP only stops that count.
// With a link (link.mjs), the bytes cross it, bandwidth-limited and delayed, and are counted as they
// arrive on the far side.

import net from 'node:net'
import { carry } from './link.mjs'

/** A fresh set of counts, for a proxy's `counts` (replace it to start counting again). */
export function newWireCounts() {
  return { connections: 0, bytesUp: 0, bytesDown: 0, requests: 0, byMethod: {}, unparsed: 0 }
}

/** Request framing of one client-to-server stream; `onRequest(method)` for each request head. */
function requestCounter(onRequest) {
  let head = Buffer.alloc(0)
  let state = 'head' // head | body | chunk-size | chunk-data | chunk-end | trailers | dead
  let left = 0
  let line = ''
  const takeLine = (buf, i) => {
    // a line ending in CRLF from buf at i; returns [line or null, next index]
    const nl = buf.indexOf(10, i)
    if (nl < 0) {
      line += buf.subarray(i).toString('latin1')
      return [null, buf.length]
    }
    const full = (line + buf.subarray(i, nl).toString('latin1')).replace(/\r$/, '')
    line = ''
    return [full, nl + 1]
  }
  return (buf) => {
    let i = 0
    while (i < buf.length && state !== 'dead') {
      if (state === 'head') {
        head = head.length ? Buffer.concat([head, buf.subarray(i)]) : buf.subarray(i)
        const end = head.indexOf('\r\n\r\n')
        if (end < 0) {
          if (head.length > 64 * 1024) state = 'dead'
          return
        }
        const text = head.subarray(0, end).toString('latin1')
        const rest = head.subarray(end + 4)
        head = Buffer.alloc(0)
        const [requestLine, ...headers] = text.split('\r\n')
        const method = /^([A-Z]+) \S+ HTTP\/1\.[01]$/.exec(requestLine)?.[1]
        if (!method) {
          state = 'dead'
          return
        }
        onRequest(method)
        const header = (name) => headers.find((h) => h.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim().toLowerCase()
        if (header('transfer-encoding')?.includes('chunked')) state = 'chunk-size'
        else {
          left = Number(header('content-length') ?? 0)
          state = left > 0 ? 'body' : 'head'
        }
        buf = rest
        i = 0
      } else if (state === 'body' || state === 'chunk-data') {
        const n = Math.min(left, buf.length - i)
        left -= n
        i += n
        if (left === 0) state = state === 'body' ? 'head' : 'chunk-end'
      } else {
        const [l, next] = takeLine(buf, i)
        i = next
        if (l === null) return
        if (state === 'chunk-size') {
          left = parseInt(l.split(';')[0], 16)
          if (!Number.isFinite(left)) state = 'dead'
          else state = left === 0 ? 'trailers' : 'chunk-data'
        } else if (state === 'chunk-end') state = 'chunk-size'
        else if (l === '') state = 'head' // the empty line that ends the trailers
      }
    }
  }
}

/**
 * Listens on 127.0.0.1 (a free port) and forwards each connection to `target` ("host:port"),
 * counting into `proxy.counts` (replace it with newWireCounts() to reset). `link`: an emulatedLink
 * (link.mjs) the connections share, client to server its `up`, back its `down`. Returns { host
 * ("127.0.0.1:PORT"), endpoint ("http://" + host), counts, close() }.
 */
export async function startTcpProxy(target, { link = null } = {}) {
  const [tHost, tPort] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))]
  const sockets = new Set()
  const proxy = { counts: newWireCounts() }
  const server = net.createServer((client) => {
    const c = proxy.counts
    c.connections++
    const count = requestCounter((method) => {
      c.requests++
      c.byMethod[method] = (c.byMethod[method] ?? 0) + 1
    })
    const upstream = net.connect(tPort, tHost)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    if (link) {
      client.on('data', count)
      carry(client, upstream, link.up, { onDeliver: (n) => (proxy.counts.bytesUp += n), holdMs: link.rttMs })
      carry(upstream, client, link.down, { onDeliver: (n) => (proxy.counts.bytesDown += n) })
      return
    }
    client.on('data', (b) => {
      proxy.counts.bytesUp += b.length
      count(b)
    })
    upstream.on('data', (b) => {
      proxy.counts.bytesDown += b.length
    })
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  proxy.host = `127.0.0.1:${server.address().port}`
  proxy.endpoint = `http://${proxy.host}`
  proxy.close = () =>
    new Promise((resolve) => {
      server.close(() => resolve())
      for (const s of sockets) s.destroy()
    })
  return proxy
}
