// snapdir serve's read side as registry clients meet it: skopeo copies an image out of it with the
// digests of the layout that was pushed into the store; manifests by tag and digest, HEAD, blobs with
// Range; the spec's error codes for what is unknown or malformed (path traversal refused as
// NAME_INVALID); tags/list and _catalog pagination with Link headers; a blob of another repository
// unknown in this one; the referrers API's answer; --read-only refusing writes.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { snapdirOk } from '../helpers/cli.js'
import { blobFile, blobHashes, buildUmociImage, readIndexJson, requireTools, sha256, tool } from '../helpers/oci.js'
import { rawRequest, startServe, type ServeProcess } from '../helpers/serve.js'

requireTools('umoci', 'skopeo', 'setfattr')

const APP = 'team/app'
const OTHER = 'other'
const TAGS = ['t1', 't2', 't3', 't4', 'v1']

let t: string
let layout: string
let otherLayout: string
let store: string
let serve: ServeProcess

interface Manifest {
  config: { digest: string; size: number }
  layers: Array<{ digest: string; size: number }>
}

beforeAll(async () => {
  t = mkdtempSync(path.join(os.tmpdir(), 'snapdir-serve-read-'))
  layout = path.join(t, 'image')
  buildUmociImage(layout, 'v1', path.join(t, 'bundle'))
  // another repository with an image of its own (one layer)
  otherLayout = path.join(t, 'other')
  tool('umoci', ['init', '--layout', otherLayout])
  tool('umoci', ['new', '--image', `${otherLayout}:v1`])
  tool('umoci', ['unpack', '--image', `${otherLayout}:v1`, path.join(t, 'other-bundle')])
  mkdirSync(path.join(t, 'other-bundle', 'rootfs', 'etc'), { recursive: true })
  writeFileSync(path.join(t, 'other-bundle', 'rootfs', 'etc', 'other'), 'only in the other repository\n')
  tool('umoci', ['repack', '--image', `${otherLayout}:v1`, path.join(t, 'other-bundle')])
  store = path.join(t, 'store')
  await snapdirOk(['push', '--store', store, ...TAGS.flatMap((tag) => ['--image', `${APP}:${tag}`]), layout])
  await snapdirOk(['push', '--store', store, '--image', `${OTHER}:v1`, otherLayout])
  serve = await startServe(store)
}, 180_000)

afterAll(async () => {
  if (serve) expect(await serve.stop()).toBe(0)
  rmSync(t, { recursive: true, force: true })
})

const pushed = () => readIndexJson(layout).manifests[0]!
const pushedManifest = (): Manifest => JSON.parse(readFileSync(blobFile(layout, pushed().digest), 'utf8')) as Manifest
const get = (p: string, init: RequestInit = {}) => fetch(`${serve.url}${p}`, init)

async function errorCode(res: Response): Promise<string> {
  const body = (await res.json()) as { errors: Array<{ code: string; message: string }> }
  expect(body.errors).toHaveLength(1)
  expect(typeof body.errors[0]!.message).toBe('string')
  return body.errors[0]!.code
}

describe('snapdir serve: pulling', () => {
  it('skopeo copies the image out with the digests of the layout pushed into the store', async () => {
    const out = path.join(t, 'copy')
    tool('skopeo', ['copy', '--src-tls-verify=false', `docker://${serve.host}/${APP}:v1`, `oci:${out}:v1`])
    expect(readIndexJson(out).manifests[0]!.digest).toBe(pushed().digest)
    // every blob (manifest, config, layers) byte for byte: same names, same hashes
    expect(blobHashes(out)).toEqual(blobHashes(layout).filter((b) => blobHashes(out).some((o) => o.name === b.name)))
    expect(blobHashes(out).map((b) => b.name).sort()).toEqual([pushed().digest, pushedManifest().config.digest, ...pushedManifest().layers.map((l) => l.digest)].map((d) => d.slice(7)).sort())
    for (const b of blobHashes(out)) expect(b.sha256).toBe(b.name)
    await serve.waitForLog(`"GET /v2/${APP}/manifests/v1" 200 `)
  })

  it('GET /v2/ answers 200 with the API version header', async () => {
    const res = await get('/v2/')
    expect(res.status).toBe(200)
    expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0')
  })

  it('a manifest by tag and by digest, GET and HEAD: the stored bytes, media type and digest', async () => {
    const want = readFileSync(blobFile(layout, pushed().digest))
    for (const ref of ['v1', pushed().digest]) {
      const res = await get(`/v2/${APP}/manifests/${ref}`)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe(pushed().mediaType)
      expect(res.headers.get('docker-content-digest')).toBe(pushed().digest)
      expect(Buffer.from(await res.arrayBuffer()).equals(want)).toBe(true)
      const head = await get(`/v2/${APP}/manifests/${ref}`, { method: 'HEAD' })
      expect(head.status).toBe(200)
      expect(head.headers.get('content-length')).toBe(String(want.length))
      expect(head.headers.get('docker-content-digest')).toBe(pushed().digest)
    }
  })

  it('a blob: whole, HEAD, and byte ranges (206 with Content-Range; 416 past its end)', async () => {
    const layer = [...pushedManifest().layers].sort((a, b) => b.size - a.size)[0]!
    const want = readFileSync(blobFile(layout, layer.digest))
    const whole = await get(`/v2/${APP}/blobs/${layer.digest}`)
    expect(whole.status).toBe(200)
    expect(whole.headers.get('docker-content-digest')).toBe(layer.digest)
    expect(sha256(Buffer.from(await whole.arrayBuffer()))).toBe(layer.digest.slice(7))

    const head = await get(`/v2/${APP}/blobs/${layer.digest}`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-length')).toBe(String(layer.size))
    expect(await head.text()).toBe('')

    const cases: Array<[string, number, number]> = [
      [`bytes=100-${layer.size - 200}`, 100, layer.size - 200],
      [`bytes=${layer.size - 10}-`, layer.size - 10, layer.size - 1],
      ['bytes=-7', layer.size - 7, layer.size - 1],
      [`bytes=5-${layer.size + 1000}`, 5, layer.size - 1],
    ]
    for (const [range, start, end] of cases) {
      const res = await get(`/v2/${APP}/blobs/${layer.digest}`, { headers: { Range: range } })
      expect(res.status, range).toBe(206)
      expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/${layer.size}`)
      expect(Buffer.from(await res.arrayBuffer()).equals(want.subarray(start, end + 1)), range).toBe(true)
    }
    const past = await get(`/v2/${APP}/blobs/${layer.digest}`, { headers: { Range: `bytes=${layer.size}-` } })
    expect(past.status).toBe(416)
    expect(past.headers.get('content-range')).toBe(`bytes */${layer.size}`)
  })

  it('what is unknown or malformed gets the spec error code and status', async () => {
    const missing = `sha256:${'0'.repeat(64)}`
    const cases: Array<[string, number, string]> = [
      [`/v2/${APP}/manifests/nope`, 404, 'MANIFEST_UNKNOWN'],
      [`/v2/${APP}/manifests/${missing}`, 404, 'MANIFEST_UNKNOWN'],
      [`/v2/${APP}/blobs/${missing}`, 404, 'BLOB_UNKNOWN'],
      [`/v2/${APP}/blobs/sha256:xyz`, 400, 'DIGEST_INVALID'],
      [`/v2/nobody/tags/list`, 404, 'NAME_UNKNOWN'],
      [`/v2/nobody/manifests/v1`, 404, 'NAME_UNKNOWN'],
      [`/v2/Team/App/manifests/v1`, 400, 'NAME_INVALID'],
      [`/v2/team/../../etc/manifests/v1`, 400, 'NAME_INVALID'],
      [`/v2/team/%2e%2e/app/manifests/v1`, 400, 'NAME_INVALID'],
    ]
    for (const [p, status, code] of cases) {
      const res = await rawRequest(serve.url, p)
      expect(res.status, p).toBe(status)
      expect((JSON.parse(res.body.toString()) as { errors: Array<{ code: string }> }).errors[0]!.code, p).toBe(code)
    }
    // HEAD of an unknown manifest: the status alone
    expect((await get(`/v2/${APP}/manifests/nope`, { method: 'HEAD' })).status).toBe(404)
  })

  it("a blob of another repository's image is unknown in this one", async () => {
    const other = JSON.parse(readFileSync(blobFile(otherLayout, readIndexJson(otherLayout).manifests[0]!.digest), 'utf8')) as Manifest
    const theirs = other.layers.at(-1)!.digest
    expect((await get(`/v2/${OTHER}/blobs/${theirs}`, { method: 'HEAD' })).status).toBe(200)
    const res = await get(`/v2/${APP}/blobs/${theirs}`)
    expect(res.status).toBe(404)
    expect(await errorCode(res)).toBe('BLOB_UNKNOWN')
  })

  it('tags/list and _catalog page with n and last, and a Link to the next page', async () => {
    const all = await get(`/v2/${APP}/tags/list`)
    expect(await all.json()).toEqual({ name: APP, tags: TAGS })
    const pages: string[][] = []
    let next: string | null = `/v2/${APP}/tags/list?n=2`
    while (next !== null) {
      const res: Response = await get(next)
      expect(res.status).toBe(200)
      pages.push(((await res.json()) as { tags: string[] }).tags)
      const link = res.headers.get('link')
      next = link === null ? null : /^<([^>]+)>; rel="next"$/.exec(link)![1]!
    }
    expect(pages).toEqual([['t1', 't2'], ['t3', 't4'], ['v1']])
    expect(await (await get(`/v2/${APP}/tags/list?last=t3`)).json()).toEqual({ name: APP, tags: ['t4', 'v1'] })

    expect(await (await get('/v2/_catalog')).json()).toEqual({ repositories: [OTHER, APP] })
    const first = await get('/v2/_catalog?n=1')
    expect(await first.json()).toEqual({ repositories: [OTHER] })
    expect(first.headers.get('link')).toBe(`</v2/_catalog?n=1&last=${OTHER}>; rel="next"`)
    const second = await get(`/v2/_catalog?n=1&last=${OTHER}`)
    expect(await second.json()).toEqual({ repositories: [APP] })
    expect(second.headers.get('link')).toBeNull()
  })

  it('the referrers API answers an image index (none here), filters by artifactType and says so', async () => {
    const res = await get(`/v2/${APP}/referrers/${pushed().digest}?artifactType=application/vnd.example.sig`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/vnd.oci.image.index.v1+json')
    expect(res.headers.get('oci-filters-applied')).toBe('artifactType')
    expect(await res.json()).toEqual({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] })
  })
})

describe('snapdir serve --read-only', () => {
  it('refuses every write with 405 UNSUPPORTED and still serves reads', async () => {
    const ro = await startServe(store, ['--read-only'])
    try {
      for (const [method, p] of [
        ['POST', `/v2/${APP}/blobs/uploads/`],
        ['PUT', `/v2/${APP}/manifests/v2`],
        ['DELETE', `/v2/${APP}/manifests/v1`],
        ['PATCH', `/v2/${APP}/blobs/uploads/x`],
      ] as const) {
        const res = await fetch(`${ro.url}${p}`, { method })
        expect(res.status, `${method} ${p}`).toBe(405)
        expect(await errorCode(res)).toBe('UNSUPPORTED')
      }
      expect((await fetch(`${ro.url}/v2/${APP}/manifests/v1`)).status).toBe(200)
    } finally {
      expect(await ro.stop()).toBe(0)
    }
  })
})

describe('snapdir serve --json', () => {
  it('logs one JSON object per request, with the error code of a request that failed', async () => {
    const js = await startServe(store, ['--json'])
    try {
      expect((await fetch(`${js.url}/v2/${APP}/manifests/v1`)).status).toBe(200)
      expect((await fetch(`${js.url}/v2/${APP}/blobs/sha256:${'1'.repeat(64)}`)).status).toBe(404)
      await js.waitForLog('BLOB_UNKNOWN')
      const lines = js.log().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
      const requests = lines.filter((l) => l.msg === 'request')
      expect(requests).toHaveLength(2)
      expect(requests[0]).toMatchObject({ level: 'info', method: 'GET', path: `/v2/${APP}/manifests/v1`, status: 200, bytes: pushed().size, user: null, remote: '127.0.0.1' })
      expect(requests[1]).toMatchObject({ method: 'GET', status: 404, error: 'BLOB_UNKNOWN' })
      for (const r of requests) expect(typeof r.ms === 'number' && typeof r.time === 'string').toBe(true)
    } finally {
      expect(await js.stop()).toBe(0)
    }
  })
})

describe('snapdir serve --cache-size 0', () => {
  it('streams each blob from the store for every request: whole and by range, the same bytes', async () => {
    const direct = await startServe(store, ['--cache-size', '0'])
    try {
      const layer = [...pushedManifest().layers].sort((a, b) => b.size - a.size)[0]!
      const want = readFileSync(blobFile(layout, layer.digest))
      for (let i = 0; i < 2; i++) {
        const whole = await fetch(`${direct.url}/v2/${APP}/blobs/${layer.digest}`)
        expect(Buffer.from(await whole.arrayBuffer()).equals(want)).toBe(true)
      }
      const part = await fetch(`${direct.url}/v2/${APP}/blobs/${layer.digest}`, { headers: { Range: 'bytes=10-99' } })
      expect(part.status).toBe(206)
      expect(Buffer.from(await part.arrayBuffer()).equals(want.subarray(10, 100))).toBe(true)
    } finally {
      expect(await direct.stop()).toBe(0)
    }
  })
})
