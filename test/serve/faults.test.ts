// snapdir serve when things go wrong, and how it starts and stops: a layer chunk corrupted or missing
// in the store breaks that blob's response before it is complete (the client sees a failed transfer,
// never the wrong bytes), the log names the blob, and the server goes on serving; a non-loopback
// --listen without --htpasswd is refused (unless --insecure-public), as is an htpasswd file that is
// not bcrypt; SIGTERM with a blob download in flight stops taking connections, lets it finish whole,
// then exits 0.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { toHex } from '../../src/format/id.js'
import { FileStore } from '../../src/store/file-store.js'
import { readLayerRef } from '../../src/store/layer-refs.js'
import { objectKey, readTree } from '../../src/store/objects.js'
import { noise, snapdir, snapdirOk } from '../helpers/cli.js'
import { buildHelloLayout } from '../helpers/hello-image.js'
import { blobFile, readIndexJson, requireTools, tool, toolStatus } from '../helpers/oci.js'
import { HTPASSWD } from '../helpers/registry.js'
import { startServe, type ServeProcess } from '../helpers/serve.js'

requireTools('umoci', 'gcc', 'skopeo', 'htpasswd')

const REPO = 'team/data'
/** Large enough that a paused client leaves the response in flight, however large the socket buffers. */
const BIG = 48 * 1024 * 1024

let dir: string
let layout: string
let store: string
let top: { digest: string; size: number; diffId: string }

interface Manifest {
  config: { digest: string }
  layers: Array<{ digest: string; size: number }>
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'snapdir-serve-faults-'))
  mkdirSync(path.join(dir, 'image'))
  layout = buildHelloLayout(path.join(dir, 'image'), { files: { 'data/big.bin': noise('serve:big', BIG) } })
  store = path.join(dir, 'store')
  await snapdirOk(['push', '--store', store, '--image', `${REPO}:v1`, layout])
  const manifest = JSON.parse(readFileSync(blobFile(layout, readIndexJson(layout).manifests[0]!.digest), 'utf8')) as Manifest
  const config = JSON.parse(readFileSync(blobFile(layout, manifest.config.digest), 'utf8')) as { rootfs: { diff_ids: string[] } }
  top = { ...manifest.layers[1]!, diffId: config.rootfs.diff_ids[1]! }
}, 180_000)

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

/** The store's file of chunk `i` of data/big.bin, as the top layer's tree has it. */
async function bigChunkFile(i: number): Promise<string> {
  const fileStore = new FileStore(store)
  const ref = await readLayerRef(fileStore, top.diffId)
  const entry = (await readTree(fileStore, ref!.tree)).entries.find((e) => e.path.toString() === 'data/big.bin')
  await fileStore.close()
  return path.join(store, objectKey('chunk', toHex(entry!.chunks[i]!.id)))
}

/** GETs a blob, reading the body whole: its bytes and whether the transfer completed. */
async function download(url: string): Promise<{ status: number; received: number; sha256: string; failed: string | null }> {
  const res = await fetch(url)
  const hash = createHash('sha256')
  let received = 0
  try {
    for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
      received += piece.length
      hash.update(piece)
    }
    return { status: res.status, received, sha256: `sha256:${hash.digest('hex')}`, failed: null }
  } catch (err) {
    return { status: res.status, received, sha256: '', failed: String((err as Error).cause ?? err) }
  }
}

describe('a damaged store', () => {
  // a server of its own per test: a blob served whole is then kept in the server's blob cache
  let serve: ServeProcess
  beforeEach(async () => {
    serve = await startServe(store)
  })
  afterEach(async () => {
    expect(await serve.stop()).toBe(0)
  })

  const blobUrl = () => `${serve.url}/v2/${REPO}/blobs/${top.digest}`

  it('a corrupted chunk breaks the blob response before it is whole, the log names the blob, the server goes on', async () => {
    const file = await bigChunkFile(300)
    const good = readFileSync(file)
    const bad = Buffer.from(good)
    bad[bad.length - 10]! ^= 0x40
    writeFileSync(file, bad)
    try {
      const got = await download(blobUrl())
      expect(got.status).toBe(200)
      expect(got.failed).not.toBeNull()
      expect(got.received).toBeLessThan(top.size)
      await serve.waitForLog(new RegExp(`warning: blob ${top.digest} \\(.*\\) in ${REPO}: response aborted after \\d+ of ${top.size} bytes: .*`))
      // skopeo, as a client, fails the copy
      const copy = toolStatus('skopeo', ['copy', '--src-tls-verify=false', `docker://${serve.host}/${REPO}:v1`, `oci:${path.join(dir, 'copy-damaged')}:v1`])
      expect(copy.status).not.toBe(0)
    } finally {
      writeFileSync(file, good)
    }
    // the server is up, and the same blob, repaired, comes whole
    const again = await download(blobUrl())
    expect(again).toMatchObject({ status: 200, received: top.size, sha256: top.digest, failed: null })
  }, 120_000)

  it('a blob that fails before its first byte is a 500 with the error body, naming the blob', async () => {
    const file = await bigChunkFile(0)
    renameSync(file, `${file}.away`)
    try {
      const res = await fetch(blobUrl())
      expect(res.status).toBe(500)
      expect(res.headers.get('docker-content-digest')).toBeNull()
      const body = (await res.json()) as { errors: Array<{ code: string; message: string }> }
      expect(body.errors[0]!.code).toBe('UNKNOWN')
      expect(body.errors[0]!.message).toContain(top.digest)
      await serve.waitForLog(new RegExp(`warning: GET /v2/${REPO}/blobs/${top.digest}: .*${top.digest}`))
    } finally {
      renameSync(`${file}.away`, file)
    }
  })

  it('a blob served whole is kept: eight pulls at once, and the next ones, are right even once the store lost a chunk', async () => {
    const all = await Promise.all(Array.from({ length: 8 }, () => download(blobUrl())))
    for (const got of all) expect(got).toMatchObject({ status: 200, received: top.size, sha256: top.digest, failed: null })
    const file = await bigChunkFile(50)
    renameSync(file, `${file}.away`)
    try {
      expect(await download(blobUrl())).toMatchObject({ status: 200, received: top.size, sha256: top.digest, failed: null })
      // a range of it too
      const res = await fetch(blobUrl(), { headers: { Range: 'bytes=1000-1999' } })
      expect(res.status).toBe(206)
      expect((await res.arrayBuffer()).byteLength).toBe(1000)
    } finally {
      renameSync(`${file}.away`, file)
    }
  }, 120_000)

  it('a cached blob changed on disk is caught by its digest: the response breaks, the copy is dropped, the next pull is whole', async () => {
    const cacheDir = path.join(dir, 'blob-cache')
    const cached = await startServe(store, ['--cache-dir', cacheDir])
    try {
      const url = `${cached.url}/v2/${REPO}/blobs/${top.digest}`
      expect(await download(url)).toMatchObject({ status: 200, received: top.size, sha256: top.digest, failed: null })
      const [name] = readdirSync(cacheDir).filter((f) => f.startsWith(top.digest.replace(':', '-')))
      const file = path.join(cacheDir, name!)
      const bytes = readFileSync(file)
      expect(bytes.length).toBe(top.size)
      bytes[bytes.length >> 1]! ^= 0x01
      writeFileSync(file, bytes)
      const got = await download(url)
      expect(got.failed).not.toBeNull()
      expect(got.received).toBeLessThan(top.size)
      await cached.waitForLog(new RegExp(`blob ${top.digest} .*cached copy of blob ${top.digest} does not match its digest`))
      // a range of it is checked too, against the whole: the next request fills the cache from the store again
      const res = await fetch(url, { headers: { Range: 'bytes=1000-1999' } })
      expect(res.status).toBe(206)
      expect(Buffer.from(await res.arrayBuffer())).toEqual(readFileSync(blobFile(layout, top.digest)).subarray(1000, 2000))
      expect(await download(url)).toMatchObject({ status: 200, received: top.size, sha256: top.digest, failed: null })
    } finally {
      expect(await cached.stop()).toBe(0)
    }
  }, 120_000)

  it('a chunk missing from the store mid-blob: the same as a corrupted one', async () => {
    const file = await bigChunkFile(100)
    renameSync(file, `${file}.away`)
    try {
      const got = await download(blobUrl())
      expect(got.failed).not.toBeNull()
      expect(got.received).toBeLessThan(top.size)
      await serve.waitForLog(new RegExp(`warning: blob ${top.digest} .*missing`))
    } finally {
      renameSync(`${file}.away`, file)
    }
    expect((await fetch(`${serve.url}/v2/${REPO}/manifests/v1`)).status).toBe(200)
  }, 120_000)
})

describe('access', () => {
  it('a non-loopback --listen without --htpasswd is refused; --insecure-public or --htpasswd lets it listen', async () => {
    const refused = await snapdir(['serve', '--store', store, '--listen', '0.0.0.0:0'])
    expect(refused.status).toBe(2)
    expect(refused.stderr).toMatch(/^snapdir: --listen 0\.0\.0\.0:0 is not a loopback address: give --htpasswd FILE .*--insecure-public/)
    expect(refused.stdout).toBe('')

    const open = await startServe(store, ['--listen', '0.0.0.0:0', '--insecure-public'])
    expect(open.url).toMatch(/^http:\/\/0\.0\.0\.0:\d+$/)
    expect(await open.stop('SIGINT')).toBe(0)

    const passwords = path.join(dir, 'htpasswd')
    tool(HTPASSWD, ['-B', '-b', '-c', passwords, 'bob', 'pw'])
    const authed = await startServe(store, ['--listen', '0.0.0.0:0', '--htpasswd', passwords])
    const port = new URL(authed.url).port
    expect((await fetch(`http://127.0.0.1:${port}/v2/`)).status).toBe(401)
    const ok = await fetch(`http://127.0.0.1:${port}/v2/${REPO}/tags/list`, { headers: { Authorization: `Basic ${Buffer.from('bob:pw').toString('base64')}` } })
    expect(await ok.json()).toEqual({ name: REPO, tags: ['v1'] })
    expect(await authed.stop()).toBe(0)
  }, 60_000)

  it('an htpasswd file with a hash that is not bcrypt is refused at start, naming the line', async () => {
    const passwords = path.join(dir, 'htpasswd-md5')
    tool(HTPASSWD, ['-B', '-b', '-c', passwords, 'bob', 'pw'])
    spawnSync(HTPASSWD, ['-m', '-b', passwords, 'carol', 'pw'])
    const r = await snapdir(['serve', '--store', store, '--htpasswd', passwords])
    expect(r.status).toBe(1)
    expect(r.stderr).toBe(`snapdir: --htpasswd ${passwords} line 2: the password of "carol" is not a bcrypt hash; make it with htpasswd -B\n`)
  })
})

describe('stopping', () => {
  it('SIGTERM with a download in flight: no new connections, the download finishes whole, then exit 0', async () => {
    const serve = await startServe(store)
    const { port } = new URL(serve.url)
    // a client that takes the headers and then reads nothing: the response stays in flight
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: `/v2/${REPO}/blobs/${top.digest}`, agent: false }, resolve).on('error', reject)
    })
    res.pause()
    expect(res.statusCode).toBe(200)
    serve.child.kill('SIGTERM')
    await serve.waitForLog('SIGTERM: finishing 1 request(s) in flight')
    // no longer taking connections
    const refused = await new Promise<string>((resolve) => {
      http.get({ host: '127.0.0.1', port, path: '/v2/', agent: false }, (r) => resolve(`answered ${r.statusCode}`)).on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
    })
    expect(refused).toBe('ECONNREFUSED')
    expect(serve.child.exitCode).toBeNull()
    // the download in flight completes, whole and right
    const hash = createHash('sha256')
    let received = 0
    for await (const piece of res as AsyncIterable<Buffer>) {
      received += piece.length
      hash.update(piece)
    }
    expect(received).toBe(top.size)
    expect(`sha256:${hash.digest('hex')}`).toBe(top.digest)
    // and the server exits by itself
    expect(await serve.exited, serve.log()).toBe(0)
    // its access line comes before the last line: the server waited for it. (Its byte count is not
    // checked: when the client reads the last bytes and hangs up before the server hears that its
    // last write went out, the server cannot know the response arrived whole, and says so.)
    const lines = serve.log().trimEnd().split('\n')
    expect(lines.at(-1), serve.log()).toMatch(/ stopped$/)
    const download = lines.filter((l) => l.includes(`"GET /v2/${REPO}/blobs/${top.digest}" 200 `))
    expect(download, serve.log()).toHaveLength(1)
  }, 120_000)
})
