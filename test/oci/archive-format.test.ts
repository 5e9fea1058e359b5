// pull --tar --format: an image pushed as one kind of archive comes back as the other, judged by the
// reference readers: skopeo inspects it (config and layer digests as the image's own: the config's
// digest, and for a Docker archive each layer's diff_id) and copies it to a layout that umoci unpacks
// to the rootfs umoci unpacks from the original; a dockerd of the test's own loads the Docker archives.
// Layers stored as recipes (gzip) and raw (zstd at a level snapdir does not reproduce) both go through;
// a damaged one leaves nothing behind.
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { manifest, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { startDockerd } from '../helpers/dockerd.js'
import { blobFile, firstManifest, requireTools, tool, umociImageWithReference } from '../helpers/oci.js'

requireTools('umoci', 'skopeo', 'setfattr', 'tar', 'dockerd', '/usr/bin/docker')

const TAG = 'v1'
const REPO_TAG = 'example.com/app:v1'
let shared = ''
let rootfs = ''
let configDigest = ''
let diffIds: string[] = []
const archives = { oci: '', zstd: '', docker: '' }

beforeAll(() => {
  const built = umociImageWithReference('snapdir-format-', TAG)
  shared = built.shared
  rootfs = built.rootfs
  const { manifest: m } = firstManifest(built.image)
  configDigest = m.config.digest
  diffIds = (JSON.parse(readFileSync(blobFile(built.image, configDigest), 'utf8')) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids
  archives.oci = path.join(shared, 'app-oci.tar')
  archives.zstd = path.join(shared, 'app-zstd.tar')
  archives.docker = path.join(shared, 'app-docker.tar')
  // the OCI archives name the image by its whole reference, which a Docker archive can tag it with
  tool('skopeo', ['copy', '--quiet', `oci:${built.image}:${TAG}`, `oci-archive:${archives.oci}:${REPO_TAG}`])
  // zstd level 19 (klauspost's SpeedBestCompression), which snapdir does not reproduce: the layers stay
  // raw, so the decompressing path is the one tested
  tool('skopeo', ['copy', '--quiet', '--dest-compress-format', 'zstd', '--dest-compress-level', '19', `oci:${built.image}:${TAG}`, `oci-archive:${archives.zstd}:${REPO_TAG}`])
  tool('skopeo', ['copy', '--quiet', `oci:${built.image}:${TAG}`, `docker-archive:${archives.docker}:${REPO_TAG}`])
})

afterAll(() => {
  if (shared) rmSync(shared, { recursive: true, force: true })
})

interface RawManifest {
  config: { digest: string; mediaType: string }
  layers: Array<{ digest: string; mediaType: string }>
}

function rawManifest(source: string): RawManifest {
  return JSON.parse(tool('skopeo', ['inspect', '--raw', source])) as RawManifest
}

/** What umoci unpacks from an image that skopeo reads from `source`. */
function rootfsVia(source: string): string {
  const t = tempDir()
  tool('skopeo', ['copy', '--quiet', source, `oci:${path.join(t, 'layout')}:${TAG}`])
  tool('umoci', ['unpack', '--image', `${path.join(t, 'layout')}:${TAG}`, path.join(t, 'bundle')])
  return manifest(path.join(t, 'bundle', 'rootfs'))
}

/** Pushes `archive` to a new store, pulls it with --format `format`; returns the store, ID and archive written. */
async function convert(archive: string, format: string): Promise<{ store: string; id: string; out: string }> {
  const t = tempDir()
  const store = path.join(t, 'store')
  const id = (await snapdirOk(['push', '--store', store, archive])).trim()
  const out = path.join(t, `out-${format}.tar`)
  await snapdirOk(['pull', '--tar', '--format', format, '--store', store, '--id', id, out])
  return { store, id, out }
}

/** Every member of a Docker archive named `<hex>.tar|json` hashes to its name. */
function expectNamesAreDigests(archive: string): void {
  const dir = path.join(tempDir(), 'members')
  mkdirSync(dir)
  tool('tar', ['-xf', archive, '-C', dir])
  const named = readdirSync(dir).filter((n) => /^[0-9a-f]{64}\.(tar|json)$/.test(n))
  expect(named.length).toBe(1 + new Set(diffIds).size)
  for (const n of named) expect(createHash('sha256').update(readFileSync(path.join(dir, n))).digest('hex'), n).toBe(n.slice(0, 64))
}

describe('pull --tar --format docker-archive of a pushed OCI archive', () => {
  it('gzip layers (stored as recipes) come back uncompressed, named and digested by their diff_ids', async () => {
    const { store, id, out } = await convert(archives.oci, 'docker-archive')
    const m = rawManifest(`docker-archive:${out}`)
    expect(m.config.digest).toBe(configDigest)
    expect(m.layers.map((l) => l.digest)).toEqual(diffIds)
    expectNamesAreDigests(out)
    expect(rootfsVia(`docker-archive:${out}`)).toBe(rootfs)
    const again = path.join(tempDir(), 'again.tar')
    await snapdirOk(['pull', '--tar', '--format', 'docker-archive', '--store', store, '--id', id, again])
    expect(readFileSync(again).equals(readFileSync(out)), 'the same snapshot gives the same archive').toBe(true)
  })

  it('zstd layers (stored raw) too; a damaged one fails with one line and leaves no archive and no temporary file', async () => {
    const { store, id, out } = await convert(archives.zstd, 'docker-archive')
    // the premise: these layers are kept raw, so the decompressing path is the one tested here
    const pushed = JSON.parse(await snapdirOk(['push', '--json', '--store', store, archives.zstd])) as { layerStorage: Array<{ raw?: string }> }
    expect(pushed.layerStorage.every((l) => l.raw !== undefined), 'zstd layers are stored raw; if they become recipes, test the raw path with another layer').toBe(true)
    const m = rawManifest(`docker-archive:${out}`)
    expect(m.config.digest).toBe(configDigest)
    expect(m.layers.map((l) => l.digest)).toEqual(diffIds)
    expect(rootfsVia(`docker-archive:${out}`)).toBe(rootfs)

    // every chunk of the store removed but the tree, index, manifest and config: the layers cannot be read
    const chunks = path.join(store, 'chunks')
    const files = readdirSync(chunks, { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
    const big = files.map((e) => path.join(e.parentPath, e.name)).sort((a, b) => readFileSync(b).length - readFileSync(a).length)[0]!
    unlinkSync(big)
    const t = tempDir()
    const tmp = path.join(t, 'tmp')
    mkdirSync(tmp)
    const target = path.join(t, 'damaged.tar')
    const r = await snapdir(['pull', '--tar', '--format', 'docker-archive', '--store', store, '--id', id, target], { env: { ...process.env, TMPDIR: tmp } })
    expect(r.status, r.stderr).toBe(1)
    expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1)
    expect(r.stderr).toMatch(/missing|damaged|chunk/)
    expect(readdirSync(t).sort()).toEqual(['tmp'])
    expect(readdirSync(tmp)).toEqual([])
  })
})

describe('pull --tar --format oci-archive of a pushed Docker archive', () => {
  it('an OCI layout whose layers are the uncompressed tars, tagged as the Docker archive was; and back again', async () => {
    const { out } = await convert(archives.docker, 'oci-archive')
    const m = rawManifest(`oci-archive:${out}:${TAG}`)
    expect(m.config.digest).toBe(configDigest)
    expect(m.layers.map((l) => l.digest)).toEqual(diffIds)
    expect(m.layers.every((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar')).toBe(true)
    const dir = path.join(tempDir(), 'layout')
    mkdirSync(dir)
    tool('tar', ['-xf', out, '-C', dir])
    const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ annotations: Record<string, string> }> }
    expect(index.manifests.map((d) => d.annotations)).toEqual([{ 'io.containerd.image.name': REPO_TAG, 'org.opencontainers.image.ref.name': TAG }])
    expect(rootfsVia(`oci-archive:${out}:${TAG}`)).toBe(rootfs)

    // pushed in turn, it comes back as a Docker archive with the same digests and tag
    const back = await convert(out, 'docker-archive')
    expect(rawManifest(`docker-archive:${back.out}`).layers.map((l) => l.digest)).toEqual(diffIds)
    const docker = JSON.parse(tool('tar', ['-xOf', back.out, 'manifest.json'])) as Array<{ RepoTags: string[] }>
    expect(docker.map((i) => i.RepoTags)).toEqual([[REPO_TAG]])
  })
})

describe('--format and what it is given', () => {
  it('the format pushed is the snapshot byte for byte; a snapshot that is no image, or --format without --tar, is bad usage', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const id = (await snapdirOk(['push', '--store', store, archives.docker])).trim()
    const plain = path.join(t, 'plain.tar')
    const same = path.join(t, 'same.tar')
    await snapdirOk(['pull', '--tar', '--store', store, '--id', id, plain])
    await snapdirOk(['pull', '--tar', '--format', 'docker-archive', '--store', store, '--id', id, same])
    expect(readFileSync(same).equals(readFileSync(plain))).toBe(true)

    const src = path.join(t, 'src')
    mkdirSync(src)
    const dirId = (await snapdirOk(['push', '--store', store, src])).trim()
    const cases: Array<[string[], RegExp]> = [
      [['--tar', '--format', 'oci-archive', '--id', dirId, path.join(t, 'x.tar')], /is not an image/],
      [['--format', 'oci-archive', '--id', id, path.join(t, 'x')], /--format is for an archive/],
      [['--tar', '--platform', 'linux/amd64', '--id', id, path.join(t, 'x.tar')], /--platform/],
      [['--tar', '--format', 'zip', '--id', id, path.join(t, 'x.tar')], /zip/],
    ]
    for (const [args, pattern] of cases) {
      const r = await snapdir(['pull', '--store', store, ...args])
      expect(r.status, r.stderr).toBe(2)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr).toMatch(pattern)
    }
    expect(existsSync(path.join(t, 'x.tar')) || existsSync(path.join(t, 'x'))).toBe(false)
  })
})

describe('docker load', () => {
  it('loads the Docker archives written from OCI archives (recipes and raw layers): tagged, the image ID the config digest, the layers the diff_ids', async () => {
    const fromGzip = await convert(archives.oci, 'docker-archive')
    const fromZstd = await convert(archives.zstd, 'docker-archive')
    const dockerd = await startDockerd()
    try {
      for (const out of [fromGzip.out, fromZstd.out]) {
        expect(dockerd.docker(['load', '-i', out])).toContain(`Loaded image: ${REPO_TAG}`)
        const inspect = JSON.parse(dockerd.docker(['image', 'inspect', REPO_TAG])) as Array<{ Id: string; RootFS: { Layers: string[] } }>
        expect(inspect[0]!.Id).toBe(configDigest)
        expect(inspect[0]!.RootFS.Layers).toEqual(diffIds)
        dockerd.docker(['image', 'rm', REPO_TAG])
      }
    } finally {
      await dockerd.stop()
    }
  }, 180_000)
})
