// Faults of the snapdir snapshotter behind Debian's containerd and runc (issue 18, "Bad input and
// faults"): the store down at start, mid-read and back (an S3 store on s3rver, taken down and brought
// back on the same port), a layer chunk corrupted in the store, and the snapshotter killed while
// containerd unpacks a layer into it. Every read is a container's, made
// by the program of the test image (`hello FILE size`), served by the layer's own mount process.
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { toHex } from '../../src/format/id.js'
import { FileStore } from '../../src/store/file-store.js'
import { readLayerRef } from '../../src/store/layer-refs.js'
import { objectKey, readTree } from '../../src/store/objects.js'
import { bytes, snapdirOk } from '../helpers/cli.js'
import { buildHelloLayout } from '../helpers/hello-image.js'
import { requireTools } from '../helpers/oci.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'
import { SnapshotsClient, snapshotterReached, startContainerd, startSnapshotter, type Containerd, type SnapshotterProcess } from '../helpers/snapshotter.js'

/** Container IDs of this run: runc keeps its state machine-wide (/run/containerd/runc). */
const RUN = randomBytes(4).toString('hex')
const cid = (name: string) => `${name}-${RUN}`

const MB = 1_000_000
const TIMEOUT = 2

function suiteDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'snapdir-test-faults-'))
}

/** The snapdir FUSE mounts under `dir`, by mount point. */
function fuseMounts(dir: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === 'fuse.snapdir' && f[1]!.startsWith(dir))
    .map((f) => f[1]!)
}

/** Resolves once `ok` holds, trying again as each try ends (`ms` at most). */
async function until(ok: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise((resolve) => setImmediate(resolve))
  }
}

const EIO_AFTER = /^read: Input\/output error after (\d+) ms$/m

// s3rver runs in this process: every ctr call here is asynchronous, or s3rver could not answer the
// reads it waits for
describe('the store down at start, mid-read, and back', () => {
  let dir: string
  let s3: S3Server
  let sn: SnapshotterProcess
  let ctd: Containerd
  const STORE = 's3://snap/images'

  /** the snapshotter on the S3 store, its layer mounts' chunk cache in `cache` */
  const start = (cache: string) =>
    startSnapshotter(path.join(dir, 'sn'), ['--store', STORE, '--s3-endpoint', s3.endpoint, '--timeout', String(TIMEOUT), '--cache-dir', path.join(dir, cache)], s3.env)
  const ok = async (args: string[]) => {
    const r = await ctd.ctrAsync(args)
    if (r.status !== 0) throw new Error(`ctr ${args.join(' ')} exited ${r.status}: ${r.stderr}${r.stdout}`)
    return r.stdout
  }

  beforeAll(async () => {
    requireTools('containerd', 'ctr', 'runc', 'umoci', 'gcc')
    dir = suiteDir()
    s3 = await startS3Server(['snap'])
    sn = await start('cache')
    ctd = await startContainerd(path.join(dir, 'containerd'), sn.address)
    mkdirSync(path.join(dir, 'lazy'))
    const layout = buildHelloLayout(path.join(dir, 'lazy'), { files: { 'data/a.bin': bytes('faults:a', MB), 'data/b.bin': bytes('faults:b', MB) } })
    const id = (await snapdirOk(['push', '--store', STORE, '--s3-endpoint', s3.endpoint, layout], { env: s3.env })).trim()
    await snapdirOk(['containerd', 'pull', '--store', STORE, '--s3-endpoint', s3.endpoint, '--id', id, '--address', ctd.address, 'test/lazy:v1'], { env: s3.env })
  }, 120_000)

  afterAll(async () => {
    await ctd?.ctrAsync(['tasks', 'rm', '--force', cid('long')])
    await ctd?.stop()
    await sn?.stop()
    for (const mp of fuseMounts(dir)) spawnSync('umount', ['-l', mp])
    await s3?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  test('a read that needs a chunk fails with EIO within --timeout while the store is down, and works again once it is back', async () => {
    await ok(['run', '-d', '--snapshotter', 'snapdir', 'test/lazy:v1', cid('long'), '/bin/hello', '/etc/msg', 'wait'])
    let n = 0
    const size = (file: string) => ctd.ctrAsync(['tasks', 'exec', '--exec-id', `e${++n}`, cid('long'), '/bin/hello', file, 'size'])
    expect((await size('/data/a.bin')).stdout).toBe(`${MB} bytes\n`)

    await s3.stop()
    // a.bin's chunks are cached; b.bin's were never fetched
    expect((await size('/data/a.bin')).stdout).toBe(`${MB} bytes\n`)
    const failed = await size('/data/b.bin')
    expect(failed.status).not.toBe(0)
    const took = Number(EIO_AFTER.exec(failed.stdout)?.[1])
    expect(took, failed.stdout + failed.stderr).toBeGreaterThan(0)
    expect(took).toBeLessThanOrEqual((TIMEOUT + 1) * 1000)

    await s3.start()
    // a chunk that timed out fails at once for one more --timeout; the read works after that
    await until(async () => (await size('/data/b.bin')).stdout === `${MB} bytes\n`, (TIMEOUT + 20) * 1000, 'b.bin readable again')
    await ok(['tasks', 'rm', '--force', cid('long')])
    await ok(['containers', 'rm', cid('long')])
  }, 120_000)

  test('the snapshotter starts while the store is down: the lazy layers it cannot mount are reported and fail their calls, the rest work; they serve again once the store is back', async () => {
    // an image containerd unpacked itself (no layer of it in the store)
    mkdirSync(path.join(dir, 'plain'))
    buildHelloLayout(path.join(dir, 'plain'), { first: 'a plain image\n' })
    await ok(['images', 'import', '--snapshotter', 'snapdir', '--base-name', 'test/plain', path.join(dir, 'plain', 'hello.tar')])

    // the machine restarted while the store is down: the layer mounts and their cache are gone
    await s3.stop()
    await sn.kill()
    const lazy = fuseMounts(dir)
    expect(lazy).toHaveLength(2)
    for (const mp of lazy) expect(spawnSync('umount', [mp]).status).toBe(0)
    sn = await start('cache-after-reboot')
    // it serves at once; the layers are checked behind the calls
    await sn.waitForLog(/lazy layers checked: 0 still mounted, 0 mounted again, 2 cannot be served now/)
    const reported = sn.log().split('\n').filter((l) => /snapshot sha256:[0-9a-f]{64} cannot be served now/.test(l))
    expect(reported, sn.log()).toHaveLength(2)
    await snapshotterReached(ctd)

    const run = (image: string, name: string) => ctd.ctrAsync(['run', '--rm', '--snapshotter', 'snapdir', image, cid(name)])
    expect((await run('test/plain:v1', 'p1')).stdout).toBe('layer 2 says hi\n')
    // not a container on empty layers: the call that needs them fails, naming the layer
    const refused = await run('test/lazy:v1', 'l1')
    expect(refused.status).not.toBe(0)
    expect(refused.stderr).toMatch(/snapshot sha256:[0-9a-f]{64} \(layer sha256:[0-9a-f]{64}\) cannot be served now/)
    expect(fuseMounts(dir)).toEqual([])

    await s3.start()
    expect((await run('test/lazy:v1', 'l2')).stdout).toBe('layer 2 says hi\n')
    expect(fuseMounts(dir)).toHaveLength(2)
    expect(sn.log()).toMatch(/mounted lazy layer sha256:[0-9a-f]{64} again/)
  }, 120_000)

  test('a store that takes connections and never answers does not hold up the start: the snapshotter serves while its lazy layers are still being checked', async () => {
    await sn.kill()
    for (const mp of fuseMounts(dir)) expect(spawnSync('umount', [mp]).status).toBe(0)
    await s3.stop()
    // on the store's port: connections taken, never answered
    const sockets = new Set<Socket>()
    const blackHole = createServer((socket) => {
      sockets.add(socket)
      socket.on('error', () => {})
    })
    await new Promise<void>((resolve) => blackHole.listen(Number(new URL(s3.endpoint).port), '127.0.0.1', resolve))
    try {
      sn = await start('cache-stalled')
      await snapshotterReached(ctd)
      expect((await ctd.ctrAsync(['run', '--rm', '--snapshotter', 'snapdir', 'test/plain:v1', cid('p2')])).stdout).toBe('layer 2 says hi\n')
      // the layer mounts are still waiting for the store
      expect(sn.log()).not.toMatch(/lazy layers checked/)
      expect(sockets.size).toBeGreaterThan(0)
    } finally {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => blackHole.close(() => resolve()))
    }
    await sn.waitForLog(/lazy layers checked: 0 still mounted, 0 mounted again, 2 cannot be served now/, 60_000)
    await s3.start()
    expect((await ctd.ctrAsync(['run', '--rm', '--snapshotter', 'snapdir', 'test/lazy:v1', cid('l3')])).stdout).toBe('layer 2 says hi\n')
  }, 120_000)
})

describe('a layer chunk corrupted in the store', () => {
  let dir: string
  let sn: SnapshotterProcess
  let ctd: Containerd

  beforeAll(async () => {
    requireTools('containerd', 'ctr', 'runc', 'umoci', 'gcc')
    dir = suiteDir()
  })

  afterAll(async () => {
    await ctd?.stop()
    await sn?.stop()
    for (const mp of fuseMounts(dir)) spawnSync('umount', ['-l', mp])
    rmSync(dir, { recursive: true, force: true })
  })

  test("the container's read fails with EIO, and the layer mount's log names the chunk and the file", async () => {
    const store = path.join(dir, 'store')
    mkdirSync(path.join(dir, 'img'))
    const layout = buildHelloLayout(path.join(dir, 'img'), { files: { 'data/c.bin': bytes('faults:c', 600_000), 'data/d.bin': bytes('faults:d', 600_000) } })
    const id = (await snapdirOk(['push', '--store', store, layout])).trim()
    sn = await startSnapshotter(path.join(dir, 'sn'), ['--store', store])
    ctd = await startContainerd(path.join(dir, 'containerd'), sn.address)
    const pulled = JSON.parse(await snapdirOk(['containerd', 'pull', '--store', store, '--id', id, '--address', ctd.address, '--json', 'test/damaged:v1'])) as {
      layers: Array<{ diffId: string }>
    }

    // one byte of the second chunk of data/c.bin, as the top layer's tree has it
    const fileStore = new FileStore(store)
    const ref = await readLayerRef(fileStore, pulled.layers[1]!.diffId)
    const entry = (await readTree(fileStore, ref!.tree)).entries.find((e) => e.path.toString() === 'data/c.bin')
    const chunk = toHex(entry!.chunks[1]!.id)
    const file = path.join(store, objectKey('chunk', chunk))
    const stored = readFileSync(file)
    stored[stored.length - 10] = stored[stored.length - 10]! ^ 0x40
    writeFileSync(file, stored)

    const run = (name: string, file: string) => ctd.ctrStatus(['run', '--rm', '--snapshotter', 'snapdir', 'test/damaged:v1', cid(name), '/bin/hello', file, 'size'])
    const damaged = run('c1', '/data/c.bin')
    expect(damaged.status).not.toBe(0)
    expect(damaged.stdout).toMatch(EIO_AFTER)
    // the rest of the layer reads
    expect(run('d1', '/data/d.bin').stdout).toBe('600000 bytes\n')

    const logs = readdirSync(path.join(sn.root, 'logs')).map((f) => readFileSync(path.join(sn.root, 'logs', f), 'utf8'))
    const lines = logs.join('\n').split('\n').filter((l) => l.includes('EIO reading'))
    expect(lines.length).toBeGreaterThan(0)
    for (const line of lines) expect(line).toMatch(new RegExp(`EIO reading /?data/c\\.bin at offset \\d+: .*${chunk}`))
    ctd.ctr(['images', 'rm', '--sync', 'test/damaged:v1'])
    expect(fuseMounts(dir)).toEqual([])
  }, 120_000)
})

describe('the snapshotter killed while containerd unpacks', () => {
  let dir: string
  let sn: SnapshotterProcess
  let ctd: Containerd

  beforeAll(async () => {
    requireTools('containerd', 'ctr', 'runc', 'umoci', 'gcc')
    dir = suiteDir()
  })

  afterAll(async () => {
    await ctd?.stop()
    await sn?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  test("kill -9 during an unpack: containerd's calls work again once it is back and has redialled, the image imports and runs, and Cleanup leaves no mount and no directory no snapshot names", async () => {
    mkdirSync(path.join(dir, 'img'))
    // a layer big enough that containerd is still writing it when the kill lands
    buildHelloLayout(path.join(dir, 'img'), { files: { 'data/big.bin': randomBytes(48 * MB) } })
    const archive = path.join(dir, 'img', 'hello.tar')
    sn = await startSnapshotter(path.join(dir, 'sn'))
    ctd = await startContainerd(path.join(dir, 'containerd'), sn.address)

    const imported = ctd.ctrAsync(['images', 'import', '--snapshotter', 'snapdir', '--base-name', 'test/big', archive])
    // the second layer's snapshot is prepared: containerd now writes the layer into it
    await sn.waitForLog(/Prepare key=\S+ sha256:[0-9a-f]{64} parent=\S+ ok/, 60_000)
    await sn.kill()
    expect(sn.log()).not.toMatch(/Commit .* parent=/) // it landed before the layer's commit
    const failed = await imported
    expect(failed.status).not.toBe(0)

    sn = await startSnapshotter(path.join(dir, 'sn'))
    // containerd fails its calls with the old connection's error until it has dialled again (at most 3 s later)
    expect(await snapshotterReached(ctd)).toBeLessThan(10_000)
    const again = await ctd.ctrAsync(['images', 'import', '--snapshotter', 'snapdir', '--base-name', 'test/big', archive])
    expect(again.status, again.stderr + sn.log()).toBe(0)
    const run = await ctd.ctrAsync(['run', '--rm', '--snapshotter', 'snapdir', 'test/big:v1', cid('big'), '/bin/hello', '/data/big.bin', 'size'])
    expect(run.stdout).toBe(`${48 * MB} bytes\n`)

    const client = new SnapshotsClient(sn.address)
    try {
      // what the killed unpack left (its active snapshot, the first layer committed under its lease)
      // is containerd's garbage: its gc removes it from the snapshotter once it can reach it again
      await until(async () => (await client.list()).length === 2, 60_000, `containerd's gc removing the killed unpack's snapshots: ${JSON.stringify(await client.list())}`)
      await client.cleanup()
      const records = await client.list()
      // nothing mounted from our root is left behind (containerd's unpack mounts, overlays on our directories)
      expect(readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l.includes(sn.root))).toEqual([])
      // each directory is a snapshot's, and each committed layer is there once
      expect(readdirSync(path.join(sn.root, 'snapshots')).length).toBe(records.length)
      expect(records.filter((r) => r.kind === 'COMMITTED')).toHaveLength(2)
    } finally {
      client.close()
    }
  }, 180_000)
})
