// `snapdir snapshotter` behind Debian's containerd (1.6) and runc, each started by the test on its own
// root, state and socket: an image imported with --snapshotter snapdir is unpacked into our overlayfs
// snapshots, a container runs on them and sees the top layer's files and none that it deleted, a
// snapshotter killed and started again serves the same snapshots, and removing the image removes
// its snapshots and their directories.
import { randomBytes } from 'node:crypto'
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { toHex } from '../../src/format/id.js'
import { FileStore } from '../../src/store/file-store.js'
import { LAYER_REFS, readLayerRef } from '../../src/store/layer-refs.js'
import { objectKey, readTree } from '../../src/store/objects.js'
import { buildHelloLayout } from '../helpers/hello-image.js'
import { requireTools } from '../helpers/oci.js'
import { snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { snapshotterReached, startContainerd, startSnapshotter, type Containerd, type SnapshotterProcess } from '../helpers/snapshotter.js'

/** The image as an OCI archive (hello.tar, beside its layout). */
function buildImage(dir: string): string {
  return path.join(buildHelloLayout(dir), '..', 'hello.tar')
}

/** A directory for a whole describe block (tempDir's go after each test), removed by its afterAll. */
function suiteDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'snapdir-test-ctd-'))
}

/** Container IDs of this run: runc keeps its state machine-wide (/run/containerd/runc), so a container a killed run left must not be in the way. */
const RUN = randomBytes(4).toString('hex')

const readOr = (file: string): string => {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}
const readlinkOr = (link: string): string => {
  try {
    return readlinkSync(link)
  } catch {
    return ''
  }
}
const cid = (name: string) => `${name}-${RUN}`

let dir: string
let sn: SnapshotterProcess
let ctd: Containerd

beforeAll(async () => {
  requireTools('containerd', 'ctr', 'runc', 'umoci', 'gcc')
  dir = suiteDir()
  sn = await startSnapshotter(path.join(dir, 'sn'))
  ctd = await startContainerd(path.join(dir, 'containerd'), sn.address)
}, 120_000)

afterAll(async () => {
  await ctd?.stop()
  await sn?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const snapshots = () =>
  ctd
    .ctr(['snapshots', '--snapshotter', 'snapdir', 'ls'])
    .trim()
    .split('\n')
    .slice(1)
    .filter((l) => l.trim() !== '')

describe('containerd with snapdir as its snapshotter', () => {
  test('import unpacks into our snapshots; a container runs on them; a restart of the snapshotter keeps them; rm removes them', async () => {
    const archive = buildImage(dir)
    ctd.ctr(['images', 'import', '--snapshotter', 'snapdir', '--base-name', 'test/hello', archive])
    // one committed snapshot per layer, the second on the first
    const listed = snapshots()
    expect(listed).toHaveLength(2)
    expect(listed.every((l) => /Committed\s*$/.test(l))).toBe(true)
    expect(listed.some((l) => /^sha256:\S+\s+sha256:\S+\s+Committed/.test(l))).toBe(true)

    const run = (id: string, ...args: string[]) => ctd.ctrStatus(['run', '--rm', '--snapshotter', 'snapdir', 'test/hello:v1', id, ...args])
    const first = run(cid('c1'))
    expect(first.stderr).toBe('')
    expect(first.stdout).toBe('layer 2 says hi\n')
    const deleted = run(cid('c2'), '/bin/hello', '/etc/doomed')
    expect(deleted.status).not.toBe(0)
    expect(deleted.stdout + deleted.stderr).toMatch(/No such file/)

    // killed and started again: the same snapshots, and containers still start on them
    await sn.kill()
    sn = await startSnapshotter(path.join(dir, 'sn'))
    // containerd's connection to the old socket failed; it dials again on its own backoff
    await snapshotterReached(ctd)
    expect(snapshots()).toEqual(listed)
    expect(run(cid('c3')).stdout).toBe('layer 2 says hi\n')

    // the containers' active snapshots are gone with them; the image's go with the image
    ctd.ctr(['images', 'rm', '--sync', 'test/hello:v1'])
    expect(snapshots()).toEqual([])
    const left = readdirSync(path.join(sn.root, 'snapshots'))
    expect(left).toEqual([])
    expect(existsSync(path.join(sn.root, 'metadata.json'))).toBe(true)
  }, 240_000)
})

describe('containerd with snapdir serving layers lazily from a store', () => {
  let lz: string
  let lsn: SnapshotterProcess
  let lctd: Containerd
  const store = () => path.join(lz, 'store')
  const fuseMounts = () =>
    readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .filter((l) => l.includes('fuse.snapdir') && l.includes(lz))
  /** `snapdir mount` processes of the snapshotter's store, as pids */
  const mountProcesses = () =>
    readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((pid) => {
        const argv = readOr(`/proc/${pid}/cmdline`).split('\0')
        return argv.includes('mount') && argv.includes(store())
      })
  const servesFuse = (pid: string) => {
    try {
      return readdirSync(`/proc/${pid}/fd`).some((fd) => readlinkOr(`/proc/${pid}/fd/${fd}`) === '/dev/fuse')
    } catch {
      return false
    }
  }

  beforeAll(async () => {
    lz = suiteDir()
    lsn = await startSnapshotter(path.join(lz, 'sn'), ['--store', path.join(lz, 'store')])
    lctd = await startContainerd(path.join(lz, 'containerd'), lsn.address)
  }, 120_000)

  afterAll(async () => {
    lctd?.ctrStatus(['tasks', 'rm', '--force', cid('long')])
    await lctd?.stop()
    await lsn?.stop()
    for (const line of fuseMounts()) spawnSync('umount', ['-l', line.split(' ')[1]!])
    rmSync(lz, { recursive: true, force: true })
  })

  test('containerd pull commits every layer as a FUSE mount; a container runs, and keeps running across a snapshotter restart', async () => {
    const layout = buildHelloLayout(lz)
    const id = (await snapdirOk(['push', '--store', store(), layout])).trim()
    // the mount process the snapshotter started ahead, waiting for its first lazy layer
    const ahead = mountProcesses()
    expect(ahead).toHaveLength(1)
    expect(servesFuse(ahead[0]!)).toBe(false)
    const pulled = JSON.parse(await snapdirOk(['containerd', 'pull', '--store', store(), '--id', id, '--address', lctd.address, '--json', 'test/lazy:v1'])) as {
      layers: Array<{ lazy: boolean }>
    }
    expect(pulled.layers.map((l) => l.lazy)).toEqual([true, true])
    // containerd fetched no layer: its content store has the manifest and config only
    expect(lctd.ctr(['content', 'ls', '-q']).trim().split('\n')).toHaveLength(2)
    expect(fuseMounts()).toHaveLength(2)
    // the first layer was mounted by it: no Node start and loading while containerd's Prepare waited
    expect(servesFuse(ahead[0]!)).toBe(true)
    const run = lctd.ctrStatus(['run', '--rm', '--snapshotter', 'snapdir', 'test/lazy:v1', cid('l1')])
    expect(run.stdout).toBe('layer 2 says hi\n')
    expect(lctd.ctrStatus(['run', '--rm', '--snapshotter', 'snapdir', 'test/lazy:v1', cid('l2'), '/bin/hello', '/etc/doomed']).status).not.toBe(0)

    // a container that keeps running while the snapshotter is killed and started again
    lctd.ctr(['run', '-d', '--snapshotter', 'snapdir', 'test/lazy:v1', cid('long'), '/bin/hello', '/etc/msg', 'wait'])
    await lsn.kill()
    lsn = await startSnapshotter(path.join(lz, 'sn'), ['--store', store()])
    await lsn.waitForLog(/lazy layers checked: 2 still mounted, 0 mounted again, 0 cannot be served now/) // the mounts outlived it
    expect(lctd.ctr(['tasks', 'exec', '--exec-id', 'e1', cid('long'), '/bin/hello', '/etc/msg'])).toBe('layer 2 says hi\n')
    await snapshotterReached(lctd)
    lctd.ctr(['tasks', 'rm', '--force', cid('long')])
    lctd.ctr(['containers', 'rm', cid('long')])

    // the image removed: its snapshots go, and their mounts with them
    lctd.ctr(['images', 'rm', '--sync', 'test/lazy:v1'])
    expect(lctd.ctr(['snapshots', '--snapshotter', 'snapdir', 'ls']).trim().split('\n').slice(1)).toEqual([])
    expect(fuseMounts()).toEqual([])
    expect(readdirSync(path.join(lsn.root, 'snapshots'))).toEqual([])
  }, 240_000)

  test("an image of a store the snapshotter does not serve: its layers streamed from that store and unpacked by containerd, and it runs; a damaged one fails the pull naming the chunk, and leaves no image", async () => {
    const other = tempDir()
    const layout = buildHelloLayout(other, { first: 'from another store\n' })
    const otherStore = path.join(other, 'store')
    const id = (await snapdirOk(['push', '--store', otherStore, layout])).trim()

    // a copy of that store with a chunk of /bin/hello gone
    const damagedStore = path.join(other, 'damaged')
    cpSync(otherStore, damagedStore, { recursive: true })
    const fileStore = new FileStore(damagedStore)
    let gone: string | undefined
    for await (const key of fileStore.list(LAYER_REFS)) {
      const ref = await readLayerRef(fileStore, `sha256:${key.slice(LAYER_REFS.length)}`)
      const hello = (await readTree(fileStore, ref!.tree)).entries.find((e) => e.path.toString() === 'bin/hello')
      if (hello !== undefined) gone = toHex(hello.chunks[0]!.id)
    }
    rmSync(path.join(damagedStore, objectKey('chunk', gone!)))
    const r = await snapdir(['containerd', 'pull', '--store', damagedStore, '--id', id, '--address', lctd.address, 'test/damaged:v1'])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(new RegExp(`${gone!}`))
    expect(lctd.ctr(['images', 'ls', '-q'])).not.toContain('test/damaged')

    const pulled = JSON.parse(await snapdirOk(['containerd', 'pull', '--store', otherStore, '--id', id, '--address', lctd.address, '--json', 'test/other:v1'])) as {
      layers: Array<{ lazy: boolean; applied: boolean }>
    }
    expect(pulled.layers.map((l) => [l.lazy, l.applied])).toEqual([
      [false, true],
      [false, true],
    ])
    expect(fuseMounts()).toEqual([])
    const run = lctd.ctrStatus(['run', '--rm', '--snapshotter', 'snapdir', 'test/other:v1', cid('o1')])
    expect(run.stdout).toBe('layer 2 says hi\n')
    lctd.ctr(['images', 'rm', '--sync', 'test/other:v1'])
  }, 120_000)
})
