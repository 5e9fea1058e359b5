// An S3 store for the benchmarks that count what reaches one (sync-transfer, image-store): s3rver
// (a devDependency: the real S3 HTTP API, objects kept in a directory) on 127.0.0.1, a proxy in
// front of it that forwards every request unchanged and counts it, and a lister that reads a bucket
// straight from s3rver, so that listing costs no counted request.

import http from 'node:http'

/** s3rver's fixed test credentials, as the environment of a command that talks to it. */
export const S3_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' }

/**
 * s3rver on 127.0.0.1 (a free port), objects in `directory`, with `bucket` already made, as a real
 * one would be: the counts are those of using it, not of making it. `debug`: s3rver logs every
 * request it serves on stderr.
 */
export async function startS3rver({ directory, bucket, debug = false }) {
  const { default: S3rver } = await import('s3rver')
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: !debug, directory, configureBuckets: [{ name: bucket, configs: [] }] })
  const { port } = await server.run()
  return { endpoint: `http://127.0.0.1:${port}`, port, close: () => server.close() }
}

/** A fresh set of request counts, for a proxy's `counts` (replace it to start counting again). */
export function newCounts() {
  return { requests: 0, byMethod: {}, byArea: {}, byRequest: {}, byStatus: {}, requestBodyBytes: 0, responseBodyBytes: 0, putBodyBytes: {}, getBodyBytes: {} }
}

/**
 * The part of a store a key below the store's prefix names: its top directory (chunks, trees, refs,
 * and whatever kinds a newer format adds: tree-parts, recipes), config, or other.
 */
export function storeArea(key) {
  const slash = key.indexOf('/')
  if (slash > 0) return key.slice(0, slash)
  return key === 'config' ? 'config' : 'other'
}

/**
 * What a request touches: its operation (a bucket-level GET with `list-type=2` is a LIST) and the
 * area of the store (storeArea of the key below `prefix`, or the bucket itself).
 */
function classify(method, url, prefix) {
  const u = new URL(url, 'http://proxy')
  let key = u.pathname.split('/').slice(2).map(decodeURIComponent).join('/')
  let op = method
  if (key === '') {
    if (method !== 'GET' || u.searchParams.get('list-type') !== '2') return { op, area: 'bucket' }
    op = 'LIST'
    key = u.searchParams.get('prefix') ?? ''
  }
  if (key.startsWith(`${prefix}/`)) key = key.slice(prefix.length + 1)
  return { op, area: storeArea(key) }
}

/**
 * An HTTP proxy that forwards everything to `target` and counts it into `proxy.counts` (replace it
 * to reset). `prefix`: the store's key prefix in the bucket, stripped before a key's area is named;
 * `prefixOf(url)` instead, when several stores share the bucket.
 */
export async function startProxy(target, { prefix = '', prefixOf = null } = {}) {
  const t = new URL(target)
  const agent = new http.Agent({ keepAlive: true })
  const proxy = { counts: newCounts() }
  const bump = (o, k, n = 1) => {
    o[k] = (o[k] ?? 0) + n
  }
  const server = http.createServer((req, res) => {
    const c = proxy.counts
    const { op, area } = classify(req.method, req.url, prefixOf ? prefixOf(req.url) : prefix)
    c.requests++
    bump(c.byMethod, op)
    bump(c.byArea, area)
    bump(c.byRequest, `${op} ${area}`)
    req.on('data', (b) => {
      c.requestBodyBytes += b.length
      if (op === 'PUT') bump(c.putBodyBytes, area, b.length)
    })
    // Node's server has already answered an Expect: 100-continue; s3rver must not wait for a second one
    const headers = { ...req.headers }
    delete headers.expect
    // the Host header goes through unchanged: the request's SigV4 signature covers it
    const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers, agent }, (r) => {
      bump(c.byStatus, String(r.statusCode))
      res.writeHead(r.statusCode ?? 502, r.headers)
      r.on('data', (b) => {
        c.responseBodyBytes += b.length
        if (op === 'GET') bump(c.getBodyBytes, area, b.length)
      })
      r.pipe(res)
    })
    up.on('error', (err) => {
      bump(c.byStatus, 'proxy-error')
      if (!res.headersSent) res.writeHead(502)
      res.end(String(err))
    })
    req.pipe(up)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  proxy.endpoint = `http://127.0.0.1:${server.address().port}`
  proxy.close = () =>
    new Promise((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections?.()
      agent.destroy()
    })
  return proxy
}

/**
 * `list(prefix)`: every key in `bucket` below `prefix/` (relative to it) with its size, listed
 * straight from s3rver at `endpoint`. ListObjects version 1, paged by Marker: s3rver 3.7 builds
 * version 2's continuation token with DES, which OpenSSL 3 (Node 17 and later) no longer offers, so a
 * version 2 listing of more than 1,000 keys fails there with 500 InternalError. `list.close()` ends
 * the client.
 */
export async function bucketLister(endpoint, bucket) {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  const { S3Client, ListObjectsCommand } = await import('@aws-sdk/client-s3')
  const client = new S3Client({
    region: S3_ENV.AWS_REGION,
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: S3_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: S3_ENV.AWS_SECRET_ACCESS_KEY },
  })
  const list = async (prefix) => {
    const keys = new Map()
    let marker
    for (;;) {
      const page = await client.send(new ListObjectsCommand({ Bucket: bucket, Prefix: `${prefix}/`, ...(marker ? { Marker: marker } : {}) }))
      const contents = page.Contents ?? []
      for (const o of contents) keys.set(o.Key.slice(prefix.length + 1), o.Size ?? 0)
      if (!page.IsTruncated || contents.length === 0) break
      marker = contents.at(-1).Key
    }
    return keys
  }
  list.close = () => client.destroy()
  return list
}
