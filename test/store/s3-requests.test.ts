// Requests against an S3 server, counted and made to fail on purpose: a proxy in front of s3rver answers the first
// requests with 503 SlowDown (what S3 says when throttling), or every request with 403. A fault
// injector is the only way to produce these on demand; the server behind it is real.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { push } from '../../src/snapshot/push.js'
import { verify } from '../../src/snapshot/verify.js'
import { FileStore } from '../../src/store/file-store.js'
import { storeFromUrl } from '../../src/store/open-store.js'
import { isSweepStore } from '../../src/store/store.js'
import { sync } from '../../src/sync/sync.js'
import { bytes, noise } from '../helpers/bytes.js'
import { tempDir } from '../helpers/cli.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'

let server: S3Server
let proxy: http.Server
let endpoint: string
const faults = { status: 0, remaining: 0, seen: 0 }
/** every request the proxy got: method, URL, how many <Key> its body names, the status answered */
const requests: Array<{ method: string; url: string; keys: number; status: number }> = []
const saved = { ...process.env }

beforeAll(async () => {
  server = await startS3Server(['retry'])
  Object.assign(process.env, server.env)
  const target = new URL(server.endpoint)
  proxy = http.createServer((req, res) => {
    faults.seen++
    const seen = { method: req.method ?? '', url: req.url ?? '', keys: 0, status: 0 }
    requests.push(seen)
    const body: Buffer[] = []
    req.on('data', (d: Buffer) => body.push(d))
    req.on('end', () => (seen.keys = Buffer.concat(body).toString('latin1').split('<Key>').length - 1))
    res.on('finish', () => (seen.status = res.statusCode))
    if (faults.remaining > 0) {
      faults.remaining--
      const code = faults.status === 503 ? 'SlowDown' : 'AccessDenied'
      req.resume()
      res.writeHead(faults.status, { 'content-type': 'application/xml' })
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected</Message></Error>`)
      return
    }
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers)
      r.pipe(res)
    })
    req.pipe(up)
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
})

afterAll(async () => {
  process.env = saved
  await new Promise<void>((resolve) => proxy.close(() => resolve()))
  await server.close()
})

it('throttling (503 SlowDown) is retried until the request goes through', async () => {
  const store = storeFromUrl('s3://retry/p', { s3Endpoint: endpoint })
  await store.open()
  Object.assign(faults, { status: 503, remaining: 3, seen: 0 })
  await store.put('chunks/aa/x', Buffer.from('payload'))
  expect(faults.seen).toBe(4)
  expect((await store.get('chunks/aa/x')).toString()).toBe('payload')
  await store.close()
})

it('re-syncing a snapshot the destination holds completely costs one request', async () => {
  const dir = tempDir()
  mkdirSync(path.join(dir, 'src'))
  writeFileSync(path.join(dir, 'src', 'f'), bytes('resync', 300_000))
  const local = new FileStore(path.join(dir, 'store'))
  const { id } = await push(local, path.join(dir, 'src'))
  const dest = storeFromUrl('s3://retry/mirror', { s3Endpoint: endpoint })
  Object.assign(faults, { status: 0, remaining: 0, seen: 0 })
  const first = await sync(local, dest, id)
  expect(first.objects.copied).toBeGreaterThan(1)
  faults.seen = 0
  const again = await sync(local, dest, id)
  expect(again).toMatchObject({ alreadyComplete: true, objects: { checked: 1, copied: 0, skipped: 1 } })
  expect(faults.seen).toBe(1)
  await dest.close()
})

it('syncing a one-file edit checks the parts and chunks the edit changed, not every chunk of the tree', async () => {
  const dir = tempDir()
  const src = path.join(dir, 'src')
  // 3,000 small files (packed, about 50 tree parts) and 200 files cut on their own (a chunk or more each)
  for (let d = 0; d < 30; d++) {
    mkdirSync(path.join(src, `d${d}`), { recursive: true })
    for (let f = 0; f < 100; f++) writeFileSync(path.join(src, `d${d}`, `f${f}`), `file ${f} of directory ${d}\n`)
    for (let f = 0; f < 4; f++) writeFileSync(path.join(src, `d${d}`, `large${f}`), noise(`large ${d} ${f}`, 70_000))
  }
  const local = new FileStore(path.join(dir, 'store'))
  const before = await push(local, src, { name: 'edited' })
  const dest = storeFromUrl('s3://retry/edit', { s3Endpoint: endpoint })
  Object.assign(faults, { status: 0, remaining: 0, seen: 0 })
  const first = await sync(local, dest, before.id)
  const firstRequests = faults.seen
  writeFileSync(path.join(src, 'd17', 'f50'), 'edited\n')
  const after = await push(local, src, { name: 'edited' })
  faults.seen = 0
  const edit = await sync(local, dest, after.id)
  // before sync asked about every part it holds: one request per chunk of the tree and per part
  expect(first.objects.checked).toBeGreaterThan(150)
  expect(firstRequests).toBeGreaterThan(150)
  expect(edit.objects.copied).toBeGreaterThan(1)
  expect(edit.objects.copied).toBeLessThan(10)
  expect(faults.seen).toBeLessThan(40)
  // and the destination holds the edited snapshot whole
  const check = await verify(dest, after.id)
  expect(check).toMatchObject({ damaged: [], damagedLayers: [] })
  expect(check.chunksChecked).toBeGreaterThan(150)
  await dest.close()
})

it('a 4xx answer is not retried: one request, one clear error naming the store', async () => {
  const store = storeFromUrl('s3://retry/p', { s3Endpoint: endpoint })
  await store.open()
  Object.assign(faults, { status: 403, remaining: 100, seen: 0 })
  await expect(store.get('chunks/aa/x')).rejects.toThrow(/store s3:\/\/retry\/p: cannot read chunks\/aa\/x: .*\(HTTP 403: access denied, check the credentials for this store\)/)
  expect(faults.seen).toBe(1)
  faults.remaining = 0
  await store.close()
})

it("deleteMany (gc's sweep, a failed push taking back its store) sends at most 1000 keys a DeleteObjects request, S3's limit", async () => {
  const store = storeFromUrl('s3://retry/batches', { s3Endpoint: endpoint })
  await store.open()
  if (!isSweepStore(store)) throw new Error('an S3 store is a SweepStore')
  const keys = Array.from({ length: 2500 }, (_, i) => `chunks/${String(i % 256).padStart(2, '0')}/k${i}`)
  for (let at = 0; at < keys.length; at += 50) await Promise.all(keys.slice(at, at + 50).map((k) => store.put(k, Buffer.from(k))))
  requests.length = 0
  await store.deleteMany(keys)
  const deletes = requests.filter((r) => r.method === 'POST' && /[?&]delete\b/.test(r.url))
  expect(deletes).toHaveLength(requests.length)
  // (s3rver sometimes answers one 500, which the SDK retries: count what went through)
  const done = deletes.filter((r) => r.status === 200)
  expect(done.map((r) => r.keys).sort((a, b) => b - a), JSON.stringify(requests)).toEqual([1000, 1000, 500])
  for (const r of deletes) expect(r.keys).toBeLessThanOrEqual(1000)
  const left: string[] = []
  for await (const k of store.list('chunks/')) left.push(k)
  expect(left).toEqual([])
  await store.close()
}, 120_000)
