// Images from a registry (Debian's docker-registry 2.8, started by the test) into Debian's containerd
// with the snapdir snapshotter: containerd's own pull, which unpacks every layer into our overlayfs
// snapshots (the non-lazy path), and `snapdir containerd pull docker://…`, which has the snapshotter
// serve the layers its store holds lazily and containerd unpack the others.
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { snapdirOk } from '../helpers/cli.js'
import { buildHelloLayout } from '../helpers/hello-image.js'
import { requireTools } from '../helpers/oci.js'
import { registryAvailable, startRegistry, type TestRegistry } from '../helpers/registry.js'
import { startServe } from '../helpers/serve.js'
import { startContainerd, startSnapshotter, type Containerd, type SnapshotterProcess } from '../helpers/snapshotter.js'

/** Container IDs of this run: runc keeps its state machine-wide (/run/containerd/runc). */
const RUN = randomBytes(4).toString('hex')
const cid = (name: string) => `${name}-${RUN}`

let dir: string
let registry: TestRegistry
let sn: SnapshotterProcess
let ctd: Containerd
const store = () => path.join(dir, 'store')
/** the image pushed into the snapshotter's store as well as into the registry */
let bothId: string

/** The mounts that name a path under `dir` (FUSE mount points, overlay layers). */
function mountsUnder(d: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .filter((l) => l.includes(d))
}

beforeAll(async () => {
  requireTools('containerd', 'ctr', 'runc', 'umoci', 'gcc')
  if (!registryAvailable()) throw new Error('docker-registry and htpasswd are needed (scripts/setup.sh installs them)')
  dir = mkdtempSync(path.join(os.tmpdir(), 'snapdir-test-ctd-registry-'))
  registry = await startRegistry()
  bothId = await pushedImage('both', store(), 'in the store and the registry\n', 'test/both:v1')
  sn = await startSnapshotter(path.join(dir, 'sn'), ['--store', store()])
  ctd = await startContainerd(path.join(dir, 'containerd'), sn.address)
}, 120_000)

afterAll(async () => {
  await ctd?.stop()
  await sn?.stop()
  await registry?.stop()
  for (const line of mountsUnder(dir)) if (line.includes('fuse.snapdir')) spawnSync('umount', ['-l', line.split(' ')[1]!])
  rmSync(dir, { recursive: true, force: true })
})

/** Builds the test image in its own directory, pushes it into `into` and returns its snapshot ID. */
async function pushedImage(name: string, into: string, first?: string, image?: string): Promise<string> {
  mkdirSync(path.join(dir, name))
  const layout = buildHelloLayout(path.join(dir, name), first === undefined ? {} : { first })
  return (await snapdirOk(['push', '--store', into, ...(image === undefined ? [] : ['--image', image]), layout])).trim()
}

describe("containerd's own pull from a registry", () => {
  test('ctr image pull --snapshotter snapdir unpacks into overlayfs snapshots, and ctr run works', async () => {
    // the image goes to the registry only (through a scratch store): containerd must fetch and unpack it
    const scratch = path.join(dir, 'scratch')
    const id = await pushedImage('plain', scratch, 'unpacked by containerd\n')
    await snapdirOk(['pull', '--store', scratch, '--id', id, registry.ref('test/plain:v1')])
    const ref = `${registry.host}/test/plain:v1`
    ctd.ctr(['image', 'pull', '--plain-http', '--snapshotter', 'snapdir', ref])

    const listed = ctd.ctr(['snapshots', '--snapshotter', 'snapdir', 'ls']).trim().split('\n').slice(1)
    expect(listed).toHaveLength(2)
    expect(listed.every((l) => /Committed\s*$/.test(l))).toBe(true)
    // overlayfs directories under our root, no FUSE mount: every layer was unpacked, none is lazy
    expect(mountsUnder(dir).filter((l) => l.includes('fuse.snapdir'))).toEqual([])
    const dirs = readdirSync(path.join(sn.root, 'snapshots'))
    expect(dirs).toHaveLength(2)
    expect(dirs.map((d) => readdirSync(path.join(sn.root, 'snapshots', d, 'fs')).sort())).toContainEqual(['bin', 'etc'])

    const run = ctd.ctrStatus(['run', '--rm', '--snapshotter', 'snapdir', ref, cid('r1')])
    expect(run.stderr).toBe('')
    expect(run.stdout).toBe('layer 2 says hi\n')
    expect(ctd.ctrStatus(['run', '--rm', '--snapshotter', 'snapdir', ref, cid('r2'), '/bin/hello', '/etc/doomed']).status).not.toBe(0)
    ctd.ctr(['images', 'rm', '--sync', ref])
    expect(readdirSync(path.join(sn.root, 'snapshots'))).toEqual([])
  }, 180_000)
})

describe('snapdir containerd pull of a registry image', () => {
  interface Pulled {
    name: string
    layers: Array<{ diffId: string; lazy: boolean; applied: boolean }>
  }
  const pull = async (ref: string) => JSON.parse(await snapdirOk(['containerd', 'pull', '--address', ctd.address, '--json', ref])) as Pulled
  const fuseMounts = () => mountsUnder(dir).filter((l) => l.includes('fuse.snapdir'))
  const content = () => ctd.ctr(['content', 'ls', '-q']).trim().split('\n').filter((l) => l !== '')

  test("an image the snapshotter's store holds comes in all lazy: no layer fetched, each a FUSE mount, and it runs", async () => {
    await snapdirOk(['pull', '--store', store(), '--id', bothId, registry.ref('test/both:v1')])
    const before = content()
    const pulled = await pull(registry.ref('test/both:v1'))
    expect(pulled.name).toBe(`${registry.host}/test/both:v1`)
    expect(pulled.layers.map((l) => [l.lazy, l.applied])).toEqual([
      [true, false],
      [true, false],
    ])
    // containerd got the manifest and the config, no layer
    expect(content().filter((d) => !before.includes(d))).toHaveLength(2)
    expect(fuseMounts()).toHaveLength(2)
    const run = ctd.ctrStatus(['run', '--rm', '--snapshotter', 'snapdir', pulled.name, cid('both')])
    expect(run.stdout).toBe('layer 2 says hi\n')
    ctd.ctr(['images', 'rm', '--sync', pulled.name])
    expect(fuseMounts()).toEqual([])
  }, 180_000)

  test("an image snapdir serve offers from the snapshotter's own store is a registry image whose layers are all lazy", async () => {
    const serve = await startServe(store())
    try {
      const pulled = await pull(`docker://${serve.host}/test/both:v1`)
      expect(pulled.layers.map((l) => l.lazy)).toEqual([true, true])
      expect(fuseMounts()).toHaveLength(2)
      expect(ctd.ctrStatus(['run', '--rm', '--snapshotter', 'snapdir', pulled.name, cid('served')]).stdout).toBe('layer 2 says hi\n')
      ctd.ctr(['images', 'rm', '--sync', pulled.name])
      expect(fuseMounts()).toEqual([])
    } finally {
      expect(await serve.stop()).toBe(0)
    }
  }, 180_000)

  test('an image only in the registry: its layers fetched into containerd and applied by its diff service, committed as overlayfs snapshots, and it runs', async () => {
    const scratch = path.join(dir, 'scratch-only')
    const id = await pushedImage('only', scratch, 'only in the registry\n')
    await snapdirOk(['pull', '--store', scratch, '--id', id, registry.ref('test/only:v1')])
    const pulled = await pull(registry.ref('test/only:v1'))
    expect(pulled.layers.map((l) => [l.lazy, l.applied])).toEqual([
      [false, true],
      [false, true],
    ])
    expect(fuseMounts()).toEqual([])
    // the layers are containerd's content now, labelled with their diff_ids as containerd's unpacker does
    const info = ctd.ctr(['content', 'ls'])
    for (const l of pulled.layers) expect(info).toContain(`containerd.io/uncompressed=${l.diffId}`)
    const run = ctd.ctrStatus(['run', '--rm', '--snapshotter', 'snapdir', pulled.name, cid('only')])
    expect(run.stderr).toBe('')
    expect(run.stdout).toBe('layer 2 says hi\n')
    const first = ctd.ctrStatus(['run', '--rm', '--snapshotter', 'snapdir', pulled.name, cid('only2'), '/bin/hello', '/etc/doomed'])
    expect(first.status).not.toBe(0)
    // a second pull finds every layer there
    expect((await pull(registry.ref('test/only:v1'))).layers.map((l) => [l.lazy, l.applied])).toEqual([
      [false, false],
      [false, false],
    ])
    ctd.ctr(['images', 'rm', '--sync', pulled.name])
    expect(readdirSync(path.join(sn.root, 'snapshots'))).toEqual([])
  }, 180_000)
})
