// What docker-registry cannot be made to do: a small loopback server per test answers as a faulty
// registry or CDN would (503 with Retry-After, 429, resets, stalls, wrong bytes, redirects to another
// host and in a loop, oversized manifests, unknown media types, TLS with its own CA), and a proxy in
// front of a real docker-registry refuses monolithic uploads or fails one, to see the client's
// fallbacks against the real thing.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { Readable } from 'node:stream'
import { afterEach, describe, expect, test } from 'vitest'
import { RegistryClient, type RegistryClientOptions } from '../../src/registry/client.js'
import { OCI_MANIFEST } from '../../src/registry/media-types.js'
import { SnapdirError } from '../../src/util/errors.js'
import { requireTools } from '../helpers/oci.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { tempDir } from '../helpers/temp.js'

requireTools('docker-registry', 'openssl')

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`
const MANIFEST = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(Buffer.from('{}')), size: 2 }, layers: [] }))

interface Seen {
  method: string
  url: string
  headers: IncomingMessage['headers']
  at: number
}

interface FaultServer {
  host: string
  origin: string
  seen: Seen[]
  close(): Promise<void>
}

const servers: Array<{ close(): Promise<void> }> = []
const clients: RegistryClient[] = []
afterEach(async () => {
  while (clients.length) await clients.pop()!.close()
  while (servers.length) await servers.pop()!.close()
})

async function listen(server: Server, address: string): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, address, resolve))
  return (server.address() as AddressInfo).port
}

/** A loopback HTTP server answering with `handle` (the n-th request it sees is `n`, from 0). */
async function faultServer(handle: (req: IncomingMessage, res: ServerResponse, n: number) => void, address = '127.0.0.1'): Promise<FaultServer> {
  const seen: Seen[] = []
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, at: performance.now() })
    handle(req, res, seen.length - 1)
  })
  const port = await listen(server, address)
  const s = {
    host: `${address}:${port}`,
    origin: `http://${address}:${port}`,
    seen,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  servers.push(s)
  return s
}

function client(host: string, options: RegistryClientOptions = {}): RegistryClient {
  const c = new RegistryClient(host, { backoffMs: 5, dockerConfig: tempDir('snapdir-dockercfg-'), ...options })
  clients.push(c)
  return c
}

function manifestAnswer(res: ServerResponse, bytes = MANIFEST, type = OCI_MANIFEST): void {
  res.writeHead(200, { 'content-type': type, 'content-length': bytes.length, 'docker-content-digest': sha256(bytes) }).end(bytes)
}

async function failure(p: Promise<unknown>): Promise<SnapdirError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  )
  if (!(err instanceof SnapdirError)) throw new Error(`expected a SnapdirError, got ${String(err)}`)
  expect(err.message).not.toContain('\n')
  return err
}

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const p of s) parts.push(p as Buffer)
  return Buffer.concat(parts)
}

describe('retries', () => {
  test('503 with Retry-After is retried after the time it asks, then succeeds', async () => {
    const s = await faultServer((_req, res, n) => {
      if (n === 0) res.writeHead(503, { 'retry-after': '1' }).end('busy')
      else manifestAnswer(res)
    })
    const started = performance.now()
    const m = await client(s.host).getManifest('app', 'v1')
    expect(m.digest).toBe(sha256(MANIFEST))
    expect(s.seen.length).toBe(2)
    expect(s.seen[1]!.at - s.seen[0]!.at).toBeGreaterThanOrEqual(950)
    expect(performance.now() - started).toBeGreaterThanOrEqual(950)
  })

  test('404 is an answer: asked once, not retried', async () => {
    const s = await faultServer((_req, res) => res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] })))
    const err = await failure(client(s.host).getManifest('app', 'v1'))
    expect(err.code).toBe('ERR_REGISTRY_NOT_FOUND')
    expect(s.seen.length).toBe(1)
  })

  test('400 and 403 are never retried either', async () => {
    for (const status of [400, 403]) {
      const s = await faultServer((_req, res) => res.writeHead(status).end())
      await failure(client(s.host).getManifest('app', 'v1'))
      expect(s.seen.length).toBe(1)
    }
  })

  test('429 is retried; one that never ends says so after the retries', async () => {
    const s = await faultServer((_req, res, n) => (n < 2 ? res.writeHead(429).end() : manifestAnswer(res)))
    expect((await client(s.host).getManifest('app', 'v1')).digest).toBe(sha256(MANIFEST))
    expect(s.seen.length).toBe(3)
    const always = await faultServer((_req, res) => res.writeHead(429, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] })))
    const err = await failure(client(always.host, { retries: 2 }).getManifest('app', 'v1'))
    expect(err.code).toBe('ERR_REGISTRY')
    expect(err.message).toBe(`docker://${always.host}/app: get manifest v1: too many requests (429 TOOMANYREQUESTS) after 2 retries`)
    expect(always.seen.length).toBe(3)
  })

  test('a connection reset is retried', async () => {
    const s = await faultServer((req, res, n) => (n === 0 ? req.socket.destroy() : manifestAnswer(res)))
    expect((await client(s.host).getManifest('app', 'v1')).digest).toBe(sha256(MANIFEST))
    expect(s.seen.length).toBe(2)
  })

  test('a registry that never answers times out, is retried, then named as unreachable', async () => {
    const s = await faultServer(() => {
      // no answer at all
    })
    const err = await failure(client(s.host, { timeoutMs: 300, retries: 1 }).getManifest('app', 'v1'))
    expect(err.code).toBe('ERR_REGISTRY_UNREACHABLE')
    expect(err.message).toMatch(new RegExp(`^docker://${s.host}/app: get manifest v1: registry unreachable at ${s.origin}: .*(?:timeout|Timeout).* \\(after 1 retry\\)$`))
    expect(s.seen.length).toBe(2)
  })

  test('the requests-per-second limit spaces requests evenly', async () => {
    const s = await faultServer((_req, res) => manifestAnswer(res))
    const c = client(s.host, { rps: 20 })
    // one request first, so that the ten below find a connection open: a new connection's set-up
    // delays an arrival by a varying time, which is not the pace under test
    await c.headManifest('app', 'v1')
    await Promise.all(Array.from({ length: 10 }, () => c.headManifest('app', 'v1')))
    const seen = s.seen.slice(1)
    expect(seen.length).toBe(10)
    // they leave 50 ms apart; arrivals still jitter by the event loop's turns, so look at spans, not single gaps
    expect(seen[9]!.at - seen[0]!.at).toBeGreaterThanOrEqual(400)
    for (let i = 0; i + 5 < seen.length; i++) expect(seen[i + 5]!.at - seen[i]!.at).toBeGreaterThanOrEqual(200)
    // without the limit, the same ten go at once
    const free = await faultServer((_req, res) => manifestAnswer(res))
    const c2 = client(free.host)
    await Promise.all(Array.from({ length: 10 }, () => c2.headManifest('app', 'v1')))
    expect(free.seen[9]!.at - free.seen[0]!.at).toBeLessThan(300)
  })
})

describe('what the registry sends', () => {
  test('blob bytes that do not match the digest fail the stream at its end, naming the blob', async () => {
    const good = Buffer.from('the real blob')
    const s = await faultServer((_req, res) => res.writeHead(200, { 'content-length': 13 }).end('the fake blob'))
    const stream = await client(s.host).getBlob('app', sha256(good), { size: good.length })
    const err = await failure(readAll(stream))
    expect(err.code).toBe('ERR_REGISTRY_CORRUPT')
    expect(err.message).toBe(`docker://${s.host}/app: get blob ${sha256(good)}: expected ${sha256(good)}, computed ${sha256(Buffer.from('the fake blob'))}`)
  })

  test('a blob shorter or longer than its size is refused', async () => {
    const good = Buffer.from('0123456789')
    // no Content-Length (chunked): the shortfall shows at the end of the stream
    const short = await faultServer((_req, res) => {
      res.write('01234')
      res.end()
    })
    expect((await failure(readAll(await client(short.host).getBlob('app', sha256(good), { size: 10 })))).message).toContain('expected 10 bytes, got 5')
    const announced = await faultServer((_req, res) => res.end('01234'))
    expect((await failure(client(announced.host).getBlob('app', sha256(good), { size: 10 }))).message).toContain('expected 10 bytes, the registry sends 5')
    const long = await faultServer((_req, res) => res.writeHead(200, { 'content-length': 20 }).end('01234567890123456789'))
    expect((await failure(client(long.host).getBlob('app', sha256(good), { size: 10 }))).message).toContain('expected 10 bytes, the registry sends 20')
  })

  test('a connection broken mid-blob is picked up where it broke (Range), or read again where ranges are not served', async () => {
    const blob = Buffer.alloc(200_000)
    for (let i = 0; i < blob.length; i++) blob[i] = (i * 31) % 253
    const half = 70_001
    const breakFirst = (req: IncomingMessage, res: ServerResponse, n: number, ranges: boolean): void => {
      if (n === 0) {
        res.writeHead(200, { 'content-length': blob.length })
        res.write(blob.subarray(0, half), () => req.socket.destroy())
        return
      }
      const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
      if (ranges && m) {
        const from = Number(m[1])
        res.writeHead(206, { 'content-length': blob.length - from, 'content-range': `bytes ${from}-${blob.length - 1}/${blob.length}` }).end(blob.subarray(from))
      } else res.writeHead(200, { 'content-length': blob.length }).end(blob)
    }
    const ranged = await faultServer((req, res, n) => breakFirst(req, res, n, true))
    expect((await readAll(await client(ranged.host).getBlob('app', sha256(blob), { size: blob.length }))).equals(blob)).toBe(true)
    expect(ranged.seen.map((s) => s.headers.range)).toEqual([undefined, `bytes=${half}-`])
    const whole = await faultServer((req, res, n) => breakFirst(req, res, n, false))
    expect((await readAll(await client(whole.host).getBlob('app', sha256(blob), { size: blob.length }))).equals(blob)).toBe(true)
    expect(whole.seen.length).toBe(2)
    // a connection that breaks every time: named after the retries
    const always = await faultServer((req, res) => {
      res.writeHead(200, { 'content-length': blob.length })
      res.write(blob.subarray(0, 1000), () => req.socket.destroy())
    })
    const err = await failure(readAll(await client(always.host, { retries: 2 }).getBlob('app', sha256(blob))))
    expect(err.code).toBe('ERR_REGISTRY_UNREACHABLE')
    expect(err.message).toContain(`docker://${always.host}/app: get blob ${sha256(blob)}: registry unreachable at ${always.origin}`)
    expect(always.seen.length).toBe(3)
  })

  test('a blob answer that stalls mid-body times out and is picked up where it stalled (Range)', async () => {
    const blob = Buffer.alloc(100_000)
    for (let i = 0; i < blob.length; i++) blob[i] = (i * 7) % 251
    const half = 40_000
    const s = await faultServer((req, res, n) => {
      if (n === 0) {
        // the head and part of the body, then nothing more on an open connection
        res.writeHead(200, { 'content-length': blob.length })
        res.write(blob.subarray(0, half))
        return
      }
      const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? NaN)
      res.writeHead(206, { 'content-length': blob.length - from, 'content-range': `bytes ${from}-${blob.length - 1}/${blob.length}` }).end(blob.subarray(from))
    })
    const started = performance.now()
    const got = await readAll(await client(s.host, { timeoutMs: 300, retries: 1 }).getBlob('app', sha256(blob), { size: blob.length }))
    expect(got.equals(blob)).toBe(true)
    expect(s.seen.map((x) => x.headers.range)).toEqual([undefined, `bytes=${half}-`])
    expect(performance.now() - started).toBeGreaterThanOrEqual(290)
  })

  test('a blob redirected to another host (a CDN) is fetched there, without the registry credentials', async () => {
    const blob = Buffer.from('blob from the CDN')
    const cdn = await faultServer((_req, res) => res.end(blob), '127.0.0.2')
    const registry = await faultServer((req, res) => {
      if (req.headers.authorization === undefined) res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end()
      else res.writeHead(307, { location: `${cdn.origin}/blobs/abc?sig=secret` }).end()
    })
    const got = await readAll(await client(registry.host, { creds: 'me:pw' }).getBlob('app', sha256(blob)))
    expect(got.equals(blob)).toBe(true)
    expect(registry.seen.at(-1)!.headers.authorization).toBe(`Basic ${Buffer.from('me:pw').toString('base64')}`)
    expect(cdn.seen.length).toBe(1)
    expect(cdn.seen[0]!.url).toBe('/blobs/abc?sig=secret')
    expect(cdn.seen[0]!.headers.authorization).toBeUndefined()
  })

  test('a redirect loop, and too many redirects, are errors', async () => {
    const digest = sha256(Buffer.from('x'))
    const loop = await faultServer((req, res) => res.writeHead(302, { location: req.url === '/a' ? '/b' : '/a' }).end())
    const err = await failure(client(loop.host).getBlob('app', digest))
    expect(err.message).toBe(`docker://${loop.host}/app: get blob ${digest}: redirect loop: ${loop.origin}/b leads back to ${loop.origin}/a`)
    const chain = await faultServer((_req, res, n) => res.writeHead(302, { location: `/hop${n}` }).end())
    expect((await failure(client(chain.host).getBlob('app', digest))).message).toContain('more than 10 redirects')
    expect(chain.seen.length).toBe(10)
  })

  test('a manifest larger than 4 MiB is refused, whether or not its length is announced', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20)
    const announced = await faultServer((_req, res) => res.writeHead(200, { 'content-type': OCI_MANIFEST, 'content-length': big.length }).end(big))
    const err = await failure(client(announced.host).getManifest('app', 'v1'))
    expect(err.message).toBe(`docker://${announced.host}/app: get manifest v1: the manifest is ${big.length} bytes, more than the 4194304 snapdir reads`)
    const streamed = await faultServer((_req, res) => {
      res.writeHead(200, { 'content-type': OCI_MANIFEST })
      res.end(big)
    })
    expect((await failure(client(streamed.host).getManifest('app', 'v1'))).message).toContain('the manifest is larger than 4194304 bytes')
  })

  test('a manifest of an unknown media type is refused by name', async () => {
    const s = await faultServer((_req, res) => manifestAnswer(res, Buffer.from('{"schemaVersion":1}'), 'application/vnd.docker.distribution.manifest.v1+prettyjws'))
    const err = await failure(client(s.host).getManifest('app', 'v1'))
    expect(err.message).toMatch(/^docker:\/\/[^ ]+\/app: get manifest v1: the manifest has media type application\/vnd\.docker\.distribution\.manifest\.v1\+prettyjws, which snapdir does not read/)
  })

  test('a manifest whose bytes are not the digest asked for, or the digest the registry states, is refused', async () => {
    const other = Buffer.from('{"schemaVersion":2}')
    const s = await faultServer((_req, res) => res.writeHead(200, { 'content-type': OCI_MANIFEST }).end(other))
    const err = await failure(client(s.host).getManifest('app', sha256(MANIFEST)))
    expect(err.code).toBe('ERR_REGISTRY_CORRUPT')
    expect(err.message).toContain(`expected ${sha256(MANIFEST)}, computed ${sha256(other)}`)
    const lying = await faultServer((_req, res) => res.writeHead(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': sha256(MANIFEST) }).end(other))
    expect((await failure(client(lying.host).getManifest('app', 'v1'))).message).toContain(`the registry says ${sha256(MANIFEST)}, computed ${sha256(other)}`)
  })

  test('a manifest served as application/json is known by its mediaType field', async () => {
    const s = await faultServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' }).end(MANIFEST))
    expect((await client(s.host).getManifest('app', 'v1')).mediaType).toBe(OCI_MANIFEST)
  })

  test('a 404 on the referrers API is null; a list is followed across pages', async () => {
    const none = await faultServer((_req, res) => res.writeHead(404).end('404 page not found'))
    expect(await client(none.host).referrers('app', sha256(MANIFEST))).toBeNull()
    const d = (n: number) => ({ mediaType: OCI_MANIFEST, digest: sha256(Buffer.from(String(n))), size: n, artifactType: 'application/x-sig' })
    const paged = await faultServer((req, res) => {
      const second = req.url!.includes('page=2')
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json', ...(second ? {} : { link: `<${req.url}&page=2>; rel="next"` }) })
      res.end(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: second ? [d(2)] : [d(1)] }))
    })
    expect(await client(paged.host).referrers('app', sha256(MANIFEST), { artifactType: 'application/x-sig' })).toEqual([d(1), d(2)])
    expect(paged.seen[0]!.url).toContain('artifactType=application%2Fx-sig')
  })
})

describe('TLS', () => {
  test('verified by default; trusted with --ca-file; or not verified with tlsVerify false', async () => {
    const dir = tempDir('snapdir-tls-')
    const key = path.join(dir, 'key.pem')
    const cert = path.join(dir, 'cert.pem')
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' })
    expect(made.status, made.stderr).toBe(0)
    const server = createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => manifestAnswer(res))
    const port = await listen(server, '127.0.0.1')
    servers.push({ close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }) })
    const host = `127.0.0.1:${port}`
    const err = await failure(client(host, { plainHttp: false, retries: 0 }).getManifest('app', 'v1'))
    expect(err.code).toBe('ERR_REGISTRY_UNREACHABLE')
    expect(err.message).toContain(`docker://${host}/app: get manifest v1: registry unreachable at https://${host}: `)
    expect(err.message).toMatch(/self.signed certificate/)
    expect((await client(host, { plainHttp: false, caFile: cert }).getManifest('app', 'v1')).digest).toBe(sha256(MANIFEST))
    expect((await client(host, { plainHttp: false, tlsVerify: false }).getManifest('app', 'v1')).digest).toBe(sha256(MANIFEST))
    expect(() => client(host, { caFile: path.join(dir, 'missing.pem') })).toThrow(`cannot read the CA file ${path.join(dir, 'missing.pem')}: no such file or directory`)
  })
})

/** A proxy in front of a real registry; `intercept` answers a request itself when it returns true. */
async function proxy(target: TestRegistry, intercept: (req: IncomingMessage, res: ServerResponse, n: number) => boolean): Promise<FaultServer> {
  return faultServer((req, res, n) => {
    if (intercept(req, res, n)) {
      req.resume()
      return
    }
    const [hostname, port] = target.host.split(':')
    const upstream = httpRequest({ hostname, port: Number(port), method: req.method, path: req.url, headers: { ...req.headers, host: target.host } }, (up) => {
      const headers = { ...up.headers }
      // the registry's Location names itself: point it at the proxy
      if (typeof headers.location === 'string') headers.location = headers.location.replace(`http://${target.host}`, '')
      res.writeHead(up.statusCode ?? 502, headers)
      up.pipe(res)
    })
    req.pipe(upstream)
  })
}

describe('uploads through a proxy in front of docker-registry', () => {
  let registry: TestRegistry | undefined
  afterEach(async () => {
    await registry?.stop()
    registry = undefined
  })

  test('a refused monolithic upload (413) goes again in chunks', async () => {
    registry = await startRegistry()
    const p = await proxy(registry, (req, res) => {
      const isUploadPut = req.method === 'PUT' && req.url!.includes('/blobs/uploads/') && Number(req.headers['content-length'] ?? 0) > 0
      if (isUploadPut) res.writeHead(413).end('request entity too large')
      return isUploadPut
    })
    const blob = Buffer.alloc(300_000)
    for (let i = 0; i < blob.length; i++) blob[i] = (i * 7919) % 251
    const c = client(p.host, { chunkSize: 100_000 })
    await c.putBlob('chunked/app', sha256(blob), blob.length, () => Readable.from([blob.subarray(0, 123_456), blob.subarray(123_456)]))
    const patches = p.seen.filter((s) => s.method === 'PATCH')
    expect(patches.map((s) => s.headers['content-range'])).toEqual(['0-99999', '100000-199999', '200000-299999'])
    expect(p.seen.filter((s) => s.method === 'PUT').length).toBe(2) // the refused one, and the closing one
    const direct = client(registry.host)
    expect(await direct.hasBlob('chunked/app', sha256(blob))).toBe(true)
    expect((await readAll(await direct.getBlob('chunked/app', sha256(blob), { size: blob.length }))).equals(blob)).toBe(true)
  })

  test('an upload whose PUT fails with 503 starts over, with a fresh body, and completes', async () => {
    registry = await startRegistry()
    let failed = false
    const p = await proxy(registry, (req, res) => {
      if (!failed && req.method === 'PUT' && req.url!.includes('/blobs/uploads/')) {
        failed = true
        res.writeHead(503).end()
        return true
      }
      return false
    })
    const blob = Buffer.from('retried upload')
    let bodies = 0
    await client(p.host).putBlob('retry/app', sha256(blob), blob.length, () => {
      bodies++
      return Readable.from([blob])
    })
    expect(p.seen.filter((s) => s.method === 'POST').length).toBe(2)
    expect(bodies).toBe(2)
    expect(await client(registry.host).hasBlob('retry/app', sha256(blob))).toBe(true)
  })

  test('wrong bytes for a digest are refused by the registry, one line', async () => {
    registry = await startRegistry()
    const c = client(registry.host)
    const claimed = sha256(Buffer.from('what was promised'))
    const err = await failure(c.putBlob('bad/app', claimed, 5, () => Readable.from([Buffer.from('other')])))
    expect(err.code).toBe('ERR_REGISTRY')
    expect(err.message).toBe(`docker://${registry.host}/bad/app: upload blob ${claimed}: digest does not match the content (400 DIGEST_INVALID)`)
  })
})
