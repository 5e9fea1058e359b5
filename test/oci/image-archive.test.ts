// Image archives (one file holding an image) through push and pull, judged by the reference tools:
// skopeo writes oci-archive: and docker-archive: tarballs of a umoci-built image; snapdir pushes them,
// pulls them back as archives that skopeo reads again, and umoci unpacks to the rootfs umoci unpacks
// from the original. Damaged and hostile archives are refused with nothing stored that names them.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { countObjects, ID_RE, manifest, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { startMount } from '../helpers/mount.js'
import { blobHashes, requireTools, sha256, tool, umociImageWithReference } from '../helpers/oci.js'

requireTools('umoci', 'skopeo', 'setfattr', 'tar', 'gzip')

const TAG = 'v1'
const REPO_TAG = 'example.com/app:v1'
let shared = ''
let image = ''
let rootfs = ''
let ociArchive = ''
let dockerArchive = ''

beforeAll(() => {
  const built = umociImageWithReference('snapdir-archive-', TAG)
  shared = built.shared
  image = built.image
  rootfs = built.rootfs
  ociArchive = path.join(shared, 'app-oci.tar')
  dockerArchive = path.join(shared, 'app-docker.tar')
  tool('skopeo', ['copy', '--quiet', `oci:${image}:${TAG}`, `oci-archive:${ociArchive}:${TAG}`])
  tool('skopeo', ['copy', '--quiet', `oci:${image}:${TAG}`, `docker-archive:${dockerArchive}:${REPO_TAG}`])
})

afterAll(() => {
  if (shared) rmSync(shared, { recursive: true, force: true })
})

/** What umoci unpacks from an image that skopeo reads from `source` (any transport:reference). */
function rootfsVia(source: string): string {
  const t = tempDir()
  tool('skopeo', ['copy', '--quiet', source, `oci:${path.join(t, 'layout')}:${TAG}`])
  tool('umoci', ['unpack', '--image', `${path.join(t, 'layout')}:${TAG}`, path.join(t, 'bundle')])
  return manifest(path.join(t, 'bundle', 'rootfs'))
}

/** The members of a tar archive that are files, with the sha256 of each. */
function memberHashes(archive: string): Record<string, string> {
  const dir = path.join(tempDir(), 'members')
  mkdirSync(dir)
  tool('tar', ['-xf', archive, '-C', dir])
  const out: Record<string, string> = {}
  const walk = (rel: string): void => {
    for (const e of spawnSync('ls', ['-A', path.join(dir, rel)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) {
      const p = rel ? `${rel}/${e}` : e
      const full = path.join(dir, p)
      if (spawnSync('test', ['-d', full]).status === 0) walk(p)
      else out[p] = sha256(readFileSync(full))
    }
  }
  walk('')
  return out
}

describe('push of an image archive', () => {
  it('an oci-archive comes back as the same layout, and as an archive skopeo reads to the same rootfs', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const out = JSON.parse(await snapdirOk(['push', '--json', '--store', store, ociArchive])) as { id: string; layers: { expanded: number }; revision: { name: string; image?: unknown } }
    expect(out.id).toMatch(ID_RE)
    expect(out.revision.name).toBe('app-oci')
    expect(out.layers.expanded).toBe(3)
    expect((await snapdirOk(['push', '--store', store, ociArchive])).trim(), 'the same archive gives the same ID').toBe(out.id)

    const pulled = path.join(t, 'pulled')
    await snapdirOk(['pull', '--store', store, '--id', out.id, pulled])
    expect(blobHashes(pulled).every((b) => b.name === b.sha256)).toBe(true)
    const members = memberHashes(ociArchive)
    expect(Object.keys(members).filter((m) => m.startsWith('blobs/')).length).toBe(blobHashes(pulled).length)
    for (const b of blobHashes(pulled)) expect(members[`blobs/sha256/${b.name}`], b.name).toBe(b.sha256)

    const archive = path.join(t, 'again.tar')
    await snapdirOk(['pull', '--tar', '--store', store, '--id', out.id, archive])
    expect(memberHashes(archive)).toEqual(members)
    expect(rootfsVia(`oci-archive:${archive}:${TAG}`)).toBe(rootfs)
  })

  it('a docker-archive, gzip-compressed too, pulls back as an archive skopeo reads; its rootfs view equals umoci unpack', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const gz = path.join(t, 'app-docker.tar.gz')
    spawnSync('sh', ['-c', `gzip -c '${dockerArchive}' > '${gz}'`])
    const id = (await snapdirOk(['push', '--store', store, dockerArchive])).trim()
    expect((await snapdirOk(['push', '--store', store, gz])).trim(), 'compressed or not, the same contents').toBe(id)
    const revisions = (await snapdirOk(['revisions', '--store', store])).trim().split('\n').map((l) => JSON.parse(l) as { name: string })
    expect(revisions.map((r) => r.name)).toEqual(['app-docker', 'app-docker'])
    expect(countObjects(path.join(store, 'refs', 'layers')), 'one expanded tree per layer').toBe(3)

    const archive = path.join(t, 'pulled.tar')
    await snapdirOk(['pull', '--tar', '--store', store, '--id', id, archive])
    expect(memberHashes(archive)).toEqual(memberHashes(dockerArchive))
    expect(rootfsVia(`docker-archive:${archive}`)).toBe(rootfs)

    const mnt = path.join(t, 'mnt')
    mkdirSync(mnt)
    await startMount(['--store', store, '--id', id, '--view', 'rootfs', '--ref', REPO_TAG], mnt)
    expect(manifest(path.join(mnt, 'rootfs'))).toBe(rootfs)
  })
})

describe('archives as ctr image export and docker save (Docker 25+) write them', () => {
  it('an OCI layout with a Docker manifest.json beside it is pushed as the OCI layout, layers expanded', async () => {
    const t = tempDir()
    const dir = path.join(t, 'export')
    mkdirSync(dir)
    tool('tar', ['-xf', ociArchive, '-C', dir])
    // what ctr and docker add for `docker load`: the Docker archive's manifest.json, naming OCI blobs
    const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
    const m = JSON.parse(readFileSync(path.join(dir, 'blobs', 'sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as { config: { digest: string }; layers: Array<{ digest: string }> }
    const blob = (d: string): string => `blobs/sha256/${d.slice(7)}`
    writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify([{ Config: blob(m.config.digest), RepoTags: [REPO_TAG], Layers: m.layers.map((l) => blob(l.digest)) }]))
    const archive = path.join(t, 'export.tar')
    tool('tar', ['-cf', archive, '-C', dir, '.'])

    const store = path.join(t, 'store')
    const out = JSON.parse(await snapdirOk(['push', '--json', '--store', store, archive])) as { id: string; layers: { expanded: number }; revision: { image: { layers: unknown[] } } }
    expect(out.layers.expanded).toBe(3)
    expect(out.revision.image.layers).toHaveLength(3)
    const pulled = path.join(t, 'pulled')
    await snapdirOk(['pull', '--store', store, '--id', out.id, pulled])
    expect(readFileSync(path.join(pulled, 'manifest.json'))).toEqual(readFileSync(path.join(dir, 'manifest.json')))
    expect(rootfsVia(`oci:${pulled}:${TAG}`)).toBe(rootfs)
  })
})

describe('pull --tar of any snapshot', () => {
  it('gives back the directory as an archive; a file merely named like a digest is not judged by its name', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    mkdirSync(path.join(src, 'sub'), { recursive: true })
    writeFileSync(path.join(src, `${'ab'.repeat(32)}.tar`), 'named like a Docker layer, but no image here\n')
    writeFileSync(path.join(src, 'sub', 'big.bin'), Buffer.alloc(200_000, 3))
    spawnSync('ln', ['-s', 'sub/big.bin', path.join(src, 'link')])
    spawnSync('ln', [path.join(src, 'sub', 'big.bin'), path.join(src, 'hard')])
    const store = path.join(t, 'store')
    const id = (await snapdirOk(['push', '--store', store, src])).trim()
    const archive = path.join(t, 'out.tar')
    await snapdirOk(['pull', '--tar', '--store', store, '--id', id, archive])
    const back = path.join(t, 'back')
    mkdirSync(back)
    tool('tar', ['-xpf', archive, '-C', back])
    tool('touch', ['-r', src, back]) // the archive holds no entry for the root itself
    expect(manifest(back)).toBe(manifest(src))
    const again = await snapdir(['pull', '--tar', '--store', store, '--id', id, archive])
    expect(again.status, 'an existing file is not overwritten (bad input: exit 2)').toBe(2)
  })
})

describe('bad archives', () => {
  /** Exit 1 with one line naming the archive; no revision and no layer ref in the store. */
  async function expectRefused(archive: string, pattern: RegExp, status = 1): Promise<void> {
    const store = path.join(tempDir(), 'store')
    const r = await snapdir(['push', '--store', store, archive])
    expect(r.status, r.stderr).toBe(status)
    expect(r.stdout).toBe('')
    const lines = r.stderr.trim().split('\n')
    expect(lines, r.stderr).toHaveLength(1)
    expect(lines[0]).toContain(archive)
    expect(lines[0]).toMatch(pattern)
    expect(countObjects(path.join(store, 'refs')), 'nothing may reference what was refused').toBe(0)
  }

  it('a truncated or corrupt compressed archive, and a file that is no tar', async () => {
    const t = tempDir()
    const gz = path.join(t, 'app.tar.gz')
    spawnSync('sh', ['-c', `gzip -c '${dockerArchive}' > '${gz}'`])
    const data = readFileSync(gz)
    const truncated = path.join(t, 'truncated.tar.gz')
    writeFileSync(truncated, data.subarray(0, data.length >> 1))
    await expectRefused(truncated, /gzip stream is truncated/)
    const corrupt = path.join(t, 'corrupt.tar.gz')
    const flipped = Buffer.from(data)
    flipped[data.length >> 1]! ^= 0xff
    writeFileSync(corrupt, flipped)
    await expectRefused(corrupt, /gzip stream is corrupt|tar/)
    const junk = path.join(t, 'junk.tar')
    writeFileSync(junk, Buffer.alloc(4096, 'not a tar '))
    await expectRefused(junk, /is neither a directory nor a tar archive/, 2)
  })

  it("entries that would land outside ('..', absolute names) are refused", async () => {
    const t = tempDir()
    for (const [name, member] of [['dotdot.tar', '../escaped'], ['absolute.tar', '/tmp/escaped']] as const) {
      const archive = path.join(t, name)
      const script = `import io, sys, tarfile\nt = tarfile.open(sys.argv[1], "w")\ni = tarfile.TarInfo(sys.argv[2]); i.size = 2\nt.addfile(i, io.BytesIO(b"x\\n")); t.close()`
      tool('python3', ['-c', script, archive, member])
      await expectRefused(archive, /refused/)
    }
    expect(existsSync(path.join(t, '..', 'escaped'))).toBe(false)
  })

  it('a docker-archive whose layer does not match the diff_id its config gives', async () => {
    const t = tempDir()
    const dir = path.join(t, 'unpacked')
    mkdirSync(dir)
    tool('tar', ['-xf', dockerArchive, '-C', dir])
    const docker = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Array<{ Layers: string[] }>
    const layer = path.join(dir, docker[0]!.Layers[0]!)
    // a file's content changed in place: still a valid tar, but not the one the diff_id names
    const bytes = readFileSync(layer)
    const at = bytes.indexOf('hello from layer 1')
    expect(at).toBeGreaterThan(0)
    bytes.write('jello', at)
    writeFileSync(layer, bytes)
    const archive = path.join(t, 'tampered.tar')
    tool('tar', ['-cf', archive, '-C', dir, '.'])
    await expectRefused(archive, /not to its digest/)
  })
})
