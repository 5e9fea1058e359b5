// snapdir serve's blob cache at its size cap (--cache-size): filling it past the cap evicts the least
// recently used blobs, never one a response is reading (that one stays until its reader ends, and
// the reader gets the whole blob), and a blob evicted is regenerated from the store on its next pull,
// checked against its digest. Layers of random bytes (gzip cannot shrink them), so each blob's size
// in the cache is about its file's.
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { noise, snapdirOk } from '../helpers/cli.js'
import { dirState } from '../helpers/dir-watch.js'
import { blobFile, readIndexJson, requireTools, tool } from '../helpers/oci.js'
import { startServe, type ServeProcess } from '../helpers/serve.js'

requireTools('umoci')

const REPO = 'cache/app'
const MiB = 1024 * 1024
/** the blob held open: larger than any loopback socket buffers hold of a client that stopped reading */
const HELD = 16 * MiB
const SMALL = 3 * MiB
/** holds the held blob and one small one, not a third */
const CAP_MIB = 20

let dir: string
let cacheDir: string
let serve: ServeProcess
/** layers: [held, b, c, d] */
let layers: Array<{ digest: string; size: number }>
/** the response a client stopped reading, ended at the latest when the tests are */
let reading: http.IncomingMessage | undefined

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'snapdir-serve-cache-'))
  const layout = path.join(dir, 'image')
  const bundle = path.join(dir, 'bundle')
  tool('umoci', ['init', '--layout', layout])
  tool('umoci', ['new', '--image', `${layout}:v1`])
  tool('umoci', ['unpack', '--image', `${layout}:v1`, bundle])
  mkdirSync(path.join(bundle, 'rootfs', 'data'), { recursive: true })
  // one layer per file
  for (const [name, size] of [['held', HELD], ['b', SMALL], ['c', SMALL], ['d', SMALL]] as const) {
    writeFileSync(path.join(bundle, 'rootfs', 'data', name), noise(`serve-cache:${name}`, size))
    tool('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:v1`, bundle])
  }
  const manifest = JSON.parse(readFileSync(blobFile(layout, readIndexJson(layout).manifests[0]!.digest), 'utf8')) as { layers: Array<{ digest: string; size: number }> }
  layers = manifest.layers
  expect(layers).toHaveLength(4)
  const store = path.join(dir, 'store')
  await snapdirOk(['push', '--store', store, '--image', `${REPO}:v1`, layout])
  cacheDir = path.join(dir, 'blob-cache')
  serve = await startServe(store, ['--cache-dir', cacheDir, '--cache-size', String(CAP_MIB)])
}, 180_000)

afterAll(async () => {
  // a shutdown waits for the responses in flight
  reading?.destroy()
  if (serve) expect(await serve.stop()).toBe(0)
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const blobUrl = (digest: string): string => `${serve.url}/v2/${REPO}/blobs/${digest}`

/** Whether the cache holds a file of `digest` (named <algorithm>-<hex>-<random>). */
function cached(digest: string): boolean {
  const prefix = `${digest.replace(':', '-')}-`
  return existsSync(cacheDir) && readdirSync(cacheDir).some((f) => f.startsWith(prefix))
}

/** Resolves once `ready()` holds, looked at whenever the cache directory changes; fails after `ms`. */
async function cacheState(ready: () => boolean, what: string, ms = 15_000): Promise<void> {
  await dirState(cacheDir, ready, what, ms, { describe: () => readdirSync(cacheDir).join(', ') })
}

/** GETs a blob whole; its sha256 digest. */
async function pull(digest: string): Promise<string> {
  const res = await fetch(blobUrl(digest))
  expect(res.status).toBe(200)
  return `sha256:${createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest('hex')}`
}

/** A GET of a blob whose client stops reading once the answer began: the response stays in flight. */
async function holdOpen(digest: string): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    http
      .get(blobUrl(digest), (res) => {
        res.pause()
        resolve(res)
      })
      .on('error', reject)
  })
}

/** Reads the rest of a held response; the sha256 digest of its whole body. */
async function finish(res: http.IncomingMessage): Promise<string> {
  const hash = createHash('sha256')
  res.on('data', (b: Buffer) => hash.update(b))
  res.resume()
  await new Promise<void>((resolve, reject) => {
    res.on('end', resolve)
    res.on('error', reject)
  })
  return `sha256:${hash.digest('hex')}`
}

/** How many answers to GET of `digest` the access log shows (a line is written as a response ends). */
const answered = (digest: string): number => serve.log().split(`"GET /v2/${REPO}/blobs/${digest}" 200 `).length - 1

describe('snapdir serve --cache-size', () => {
  it('evicts least recently used blobs past the cap, never one being read, and rebuilds an evicted one from the store', async () => {
    const [held, b, c, d] = layers as [typeof layers[0], typeof layers[0], typeof layers[0], typeof layers[0]]
    expect(await pull(held.digest)).toBe(held.digest)
    expect(await pull(d.digest)).toBe(d.digest)
    expect(cached(held.digest) && cached(d.digest)).toBe(true)

    // a client starts reading the held blob and stops; d is used after it, so the held blob is the
    // least recently used
    reading = await holdOpen(held.digest)
    expect(await pull(d.digest)).toBe(d.digest)
    // b fills past the cap: d goes, not the blob being read
    expect(await pull(b.digest)).toBe(b.digest)
    await cacheState(() => !cached(d.digest), `no copy of ${d.digest} (evicted)`)
    expect(cached(held.digest)).toBe(true)
    expect(cached(b.digest)).toBe(true)
    // the held response was in flight all along (its log line is written when it ends)
    expect(answered(held.digest)).toBe(1)
    expect(await finish(reading)).toBe(held.digest)
    await serve.waitForLog(new RegExp(`"GET /v2/${REPO}/blobs/${held.digest}" 200 [^]*"GET /v2/${REPO}/blobs/${held.digest}" 200 `))

    // read no more, the held blob is the least recently used: c filling past the cap evicts it
    expect(await pull(c.digest)).toBe(c.digest)
    await cacheState(() => !cached(held.digest), `no copy of ${held.digest} (evicted)`)
    expect(cached(b.digest) && cached(c.digest)).toBe(true)

    // evicted blobs come back whole from the store, checked against their digests
    expect(await pull(d.digest)).toBe(d.digest)
    expect(cached(d.digest)).toBe(true)
    expect(await pull(held.digest)).toBe(held.digest)
    await cacheState(() => cached(held.digest) && !cached(b.digest) && !cached(c.digest), `${held.digest} and ${d.digest} alone`)
    expect(cached(d.digest)).toBe(true)
  }, 180_000)
})
