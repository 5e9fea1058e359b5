// `snapdir mount` of a snapshot held in S3 (s3rver on loopback): the mount serves every byte right,
// fetches only the chunks a read touches, turns a store that stops answering into EIO in bounded time
// (and still unmounts), and a second mount with the same cache dir reads from the disk cache.
// An HTTP proxy sits between the mount and s3rver because what these tests assert is about requests:
// which chunk GETs went out (counted per chunk ID, with their bytes) and what happens when a GET is
// accepted and never answered; s3rver can neither report the one nor produce the other.
// The mount runs as its own process (startMount); this process reads it, always with async fs calls,
// so a hung mount fails a test on its timeout instead of blocking vitest.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest'
import { toHex } from '../../src/format/id.js'
import type { Tree } from '../../src/format/tree.js'
import { readTree } from '../../src/store/objects.js'
import { storeFromUrl } from '../../src/store/open-store.js'
import { bytes, ID_RE, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { isMounted, startMount, type MountProcess } from '../helpers/mount.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'

const STORE = 's3://mounts/team/app'
const TEST_TIMEOUT = 60_000

/** The snapshot's files: random (so no two chunks are shared) large ones, packed small ones, an inlined one. */
const FILES: Record<string, Buffer> = {
  'big-a.bin': bytes('mount-s3:a', 1_000_000),
  'big-b.bin': bytes('mount-s3:b', 700_000),
  'notes.txt': Buffer.from('a small file, inlined in the tree\n'),
  'empty': Buffer.alloc(0),
  'sub/big-c.bin': bytes('mount-s3:c', 300_000),
  'sub/small-1.dat': bytes('mount-s3:s1', 20_000),
  'sub/deeper/small-2.dat': bytes('mount-s3:s2', 50_000),
}

/** What the proxy saw: the chunk ID of every chunk GET, the bytes answered to them; and whether it stalls them. */
const seen = { chunkGets: [] as string[], chunkBytes: 0, stallChunks: false }
const stalled: http.ServerResponse[] = []

let server: S3Server
let proxy: http.Server
let endpoint: string
let env: Record<string, string>
let source: string
let id: string
let tree: Tree
const saved = { ...process.env }

/** The chunk ID in a path-style GetObject URL, or null for other requests. */
function chunkOf(url: string): string | null {
  return /\/chunks\/[0-9a-f]{2}\/([0-9a-f]{64})(?:\?|$)/.exec(url)?.[1] ?? null
}

beforeAll(async () => {
  server = await startS3Server(['mounts'])
  Object.assign(process.env, server.env) // credentials for the store this process opens
  const target = new URL(server.endpoint)
  proxy = http.createServer((req, res) => {
    const chunk = req.method === 'GET' ? chunkOf(req.url ?? '') : null
    if (chunk) seen.chunkGets.push(chunk)
    if (chunk && seen.stallChunks) {
      req.resume()
      stalled.push(res) // accepted, never answered
      return
    }
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers)
      if (chunk) r.on('data', (d: Buffer) => (seen.chunkBytes += d.length))
      r.pipe(res)
    })
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
  env = { ...server.env, AWS_ENDPOINT_URL: endpoint }

  source = mkdtempSync(path.join(os.tmpdir(), 'snapdir-mount-s3-src-'))
  for (const [name, data] of Object.entries(FILES)) {
    mkdirSync(path.dirname(path.join(source, name)), { recursive: true })
    writeFileSync(path.join(source, name), data)
  }
  id = (await snapdirOk(['push', '--store', STORE, '--s3-endpoint', endpoint, source], { env })).trim()
  expect(id).toMatch(ID_RE)
  // the tree straight from s3rver, so the test's own requests are not counted
  const store = storeFromUrl(STORE, { s3Endpoint: server.endpoint })
  await store.open()
  tree = await readTree(store, id)
  await store.close()
}, TEST_TIMEOUT)

afterAll(async () => {
  process.env = saved
  for (const res of stalled.splice(0)) res.destroy()
  proxy.closeAllConnections()
  await new Promise<void>((resolve) => proxy.close(() => resolve()))
  await server.close()
  rmSync(source, { recursive: true, force: true })
})

beforeEach(() => {
  Object.assign(seen, { chunkGets: [], chunkBytes: 0, stallChunks: false })
})
afterEach(() => {
  for (const res of stalled.splice(0)) res.destroy()
})

/** The distinct chunk IDs a file of the snapshot is made of. */
function chunksOf(name: string): Set<string> {
  const entry = tree.entries.find((e) => e.path.equals(Buffer.from(name)))
  if (!entry) throw new Error(`${name} is not in the tree`)
  return new Set(entry.chunks.map((c) => toHex(c.id)))
}

interface MountJson {
  id: string
  fetched: number
  fetchedBytes: number
  diskHits: number
  memoryHits: number
  failures: number
  reads: number
  readErrors: number
}

function parseJson(stdout: string): MountJson {
  const lines = stdout.trim().split('\n')
  expect(lines).toHaveLength(1)
  return JSON.parse(lines[0]!) as MountJson
}

function mountArgs(...extra: string[]): string[] {
  return ['--store', STORE, '--s3-endpoint', endpoint, '--id', id, ...extra]
}

it('mount from S3: every file reads back byte for byte', async () => {
  const mp = tempDir('snapdir-mp-')
  const m = await startMount(mountArgs('--cache-dir', tempDir('snapdir-cache-')), mp, env)
  expect(seen.chunkGets).toEqual([]) // mounting reads the tree, no chunk

  const names = (await fs.readdir(mp, { recursive: true, withFileTypes: true }))
    .filter((d) => d.isFile())
    .map((d) => path.relative(mp, path.join(d.parentPath, d.name)))
    .sort()
  expect(names).toEqual(Object.keys(FILES).sort())
  expect(readdirSync(source, { recursive: true }).length).toBe((await fs.readdir(mp, { recursive: true })).length)
  for (const [name, data] of Object.entries(FILES)) {
    const got = await fs.readFile(path.join(mp, name))
    expect(got.length, name).toBe(data.length)
    expect(got.equals(data), `${name} differs`).toBe(true)
    expect(got.equals(readFileSync(path.join(source, name))), `${name} differs from the source`).toBe(true)
  }

  const r = await m.stop()
  expect(r.status, r.stderr).toBe(0)
  expect(isMounted(mp)).toBe(false)
}, TEST_TIMEOUT)

it('only the chunks a read touched were fetched', async () => {
  const mp = tempDir('snapdir-mp-')
  const m = await startMount(mountArgs('--cache-dir', tempDir('snapdir-cache-'), '--json'), mp, env)
  const got = await fs.readFile(path.join(mp, 'big-a.bin'))
  expect(got.equals(FILES['big-a.bin']!)).toBe(true)

  const want = chunksOf('big-a.bin')
  expect(want.size).toBeGreaterThan(3) // a 1 MB random file is cut into several chunks
  const r = await m.stop()
  expect(r.status, r.stderr).toBe(0)
  // each chunk of the file exactly once, and nothing else
  expect(seen.chunkGets).toHaveLength(want.size)
  expect(new Set(seen.chunkGets)).toEqual(want)
  for (const other of ['big-b.bin', 'sub/big-c.bin']) for (const c of chunksOf(other)) expect(seen.chunkGets).not.toContain(c)

  const stats = parseJson(r.stdout)
  expect(stats).toMatchObject({ id, fetched: want.size, fetchedBytes: seen.chunkBytes, diskHits: 0, failures: 0, readErrors: 0 })
  expect(stats.reads).toBeGreaterThan(0)
}, TEST_TIMEOUT)

/** Mounts with chunk GETs stalled, reads big-b.bin (which must fail with EIO in bounded time), unmounts. */
async function stallReadUnmount(): Promise<MountProcess> {
  const mp = tempDir('snapdir-mp-')
  const m = await startMount(mountArgs('--timeout', '2', '--no-cache'), mp, env)
  seen.stallChunks = true

  const started = Date.now()
  const err = await fs.readFile(path.join(mp, 'big-b.bin')).then(
    () => null,
    (e: NodeJS.ErrnoException) => e,
  )
  const elapsed = Date.now() - started
  expect(err?.code).toBe('EIO')
  expect(elapsed).toBeGreaterThanOrEqual(1_500)
  // within the timeout once: the kernel's retry of the failed read-ahead must not wait it out again
  expect(elapsed).toBeLessThan(3_800)
  // requests went out (and were held), and the failure names the file and one of its chunks
  expect(seen.chunkGets.length).toBeGreaterThan(0)
  const logged = /snapdir mount: EIO reading big-b\.bin at offset (\d+): .*did not answer for chunk ([0-9a-f]{64}) within 2 s/.exec(m.stderr())
  expect(logged, m.stderr()).not.toBeNull()
  expect(chunksOf('big-b.bin').has(logged![2]!)).toBe(true)

  const u = await snapdir(['umount', mp], { env })
  expect(u.status, u.stderr).toBe(0)
  expect(u.stdout + u.stderr).toBe('')
  expect(isMounted(mp)).toBe(false)
  // the FUSE session of the mount process ends
  const deadline = Date.now() + 5_000
  while (!m.stderr().includes(`snapdir mount: unmounted ${mp}\n`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  expect(m.stderr()).toContain(`snapdir mount: unmounted ${mp}\n`)
  return m
}

/** The mount process's exit, or null if it is still running after `ms`. */
function exitWithin(m: MountProcess, ms: number): Promise<{ status: number; stdout: string; stderr: string } | null> {
  return Promise.race([m.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), ms).unref())])
}

it('a store that stops answering becomes EIO after a bounded time; unmount still works and the mount process exits', async () => {
  const m = await stallReadUnmount()
  // the chunk GETs are still hanging at the store: they must not keep the process alive
  const r = await exitWithin(m, 5_000)
  expect(r, `mount process still running 5 s after umount: ${m.stderr()}`).not.toBeNull()
  expect(r!.status, r!.stderr).toBe(0)
}, TEST_TIMEOUT)

it('a second mount with the same cache dir reads from the disk cache, not the store', async () => {
  const cache = tempDir('snapdir-cache-')
  const mp = tempDir('snapdir-mp-')
  const want = chunksOf('big-b.bin')

  const first = await startMount(mountArgs('--cache-dir', cache, '--json'), mp, env)
  expect((await fs.readFile(path.join(mp, 'big-b.bin'))).equals(FILES['big-b.bin']!)).toBe(true)
  const r1 = await first.stop()
  expect(r1.status, r1.stderr).toBe(0)
  expect(parseJson(r1.stdout)).toMatchObject({ fetched: want.size, diskHits: 0, failures: 0 })
  expect(seen.chunkGets).toHaveLength(want.size)

  seen.chunkGets = []
  const second = await startMount(mountArgs('--cache-dir', cache, '--json'), mp, env)
  expect((await fs.readFile(path.join(mp, 'big-b.bin'))).equals(FILES['big-b.bin']!)).toBe(true)
  const r2 = await second.stop()
  expect(r2.status, r2.stderr).toBe(0)
  expect(seen.chunkGets).toEqual([])
  const stats = parseJson(r2.stdout)
  expect(stats).toMatchObject({ id, fetched: 0, fetchedBytes: 0, diskHits: want.size, failures: 0, readErrors: 0 })
}, TEST_TIMEOUT)

/** How long an fs call on the mount takes to fail, and with what code (null: it did not fail). */
async function failureOf(op: () => Promise<unknown>): Promise<{ code: string | null; ms: number }> {
  const started = Date.now()
  const code = await op().then(
    () => null,
    (e: NodeJS.ErrnoException) => e.code ?? String(e),
  )
  return { code, ms: Date.now() - started }
}

it('--timeout 5: every read of a store that stopped answering is EIO within the timeout plus one second', async () => {
  const mp = tempDir('snapdir-mp-')
  const m = await startMount(mountArgs('--timeout', '5', '--no-cache'), mp, env)
  seen.stallChunks = true
  const readAt = (name: string, offset: number, length: number) => async () => {
    const fh = await fs.open(path.join(mp, name))
    try {
      await fh.read(Buffer.alloc(length), 0, length, offset)
    } finally {
      await fh.close()
    }
  }
  const reads: Array<[string, () => Promise<unknown>]> = [
    ['a whole file', () => fs.readFile(path.join(mp, 'big-a.bin'))],
    ['4 KiB in the middle of another file', readAt('sub/big-c.bin', 200_000, 4096)],
    ['1 MiB across several chunks of a third', readAt('big-b.bin', 0, 1 << 20)],
    ['the first file again (its chunk just failed)', () => fs.readFile(path.join(mp, 'big-a.bin'))],
  ]
  for (const [what, op] of reads) {
    const { code, ms } = await failureOf(op)
    expect(code, what).toBe('EIO')
    expect(ms, `${what}: EIO after ${ms} ms`).toBeLessThan(6_000)
  }
  const r = await m.stop()
  expect(r.status, r.stderr).toBe(0)
}, TEST_TIMEOUT)
