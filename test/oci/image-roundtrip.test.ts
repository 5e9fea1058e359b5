// OCI image layouts through the CLI, judged by the reference tools: an image built with umoci is
// pushed and pulled, and the pulled layout must be the same bytes (every blob, index.json), must copy
// with skopeo (which re-checks every digest) and must unpack with umoci to the same root file system.
// Bad layouts are refused by push with one line naming the blob, before the store exists.
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ID_RE, listFiles, manifest, snapdir, snapdirOk, tempDir, type RunResult } from '../helpers/cli.js'
import { blobFile, blobHashes, editFirstManifest, firstManifest, flipByte, requireTools, sha256, tool, toolStatus, umociImageWithReference } from '../helpers/oci.js'

const TAG = 'v1'
requireTools('umoci', 'skopeo', 'setfattr')

/** One image for the whole file (umoci takes a moment); each test copies what it changes. */
let shared = ''
let image = ''
let imageRootfs = ''

beforeAll(() => {
  const built = umociImageWithReference('snapdir-oci-', TAG)
  shared = built.shared
  image = built.image
  imageRootfs = built.rootfs
})

afterAll(() => {
  if (shared) rmSync(shared, { recursive: true, force: true })
})

function copyOfImage(): string {
  const copy = path.join(tempDir(), 'image')
  cpSync(image, copy, { recursive: true, preserveTimestamps: true })
  return copy
}

async function pushAndPull(layout: string): Promise<{ id: string; pulled: string; store: string }> {
  const t = tempDir()
  const store = path.join(t, 'store')
  const id = (await snapdirOk(['push', '--store', store, layout])).trim()
  expect(id).toMatch(ID_RE)
  const pulled = path.join(t, 'pulled')
  await snapdirOk(['pull', '--store', store, '--id', id, pulled])
  return { id, pulled, store }
}

/** The pulled layout is the pushed one, blob for blob, and each blob still hashes to its name. */
function expectSameLayout(pulled: string, original: string): void {
  const blobs = blobHashes(pulled)
  expect(blobs).toEqual(blobHashes(original))
  for (const b of blobs) expect(b.sha256, `blob ${b.name}`).toBe(b.name)
  expect(readFileSync(path.join(pulled, 'index.json'))).toEqual(readFileSync(path.join(original, 'index.json')))
  expect(readFileSync(path.join(pulled, 'oci-layout'))).toEqual(readFileSync(path.join(original, 'oci-layout')))
  expect(manifest(pulled), 'modes, owners and times too').toBe(manifest(original))
}

describe('an image built with umoci', () => {
  it('has what the test means it to have: 3 layers, a whiteout, setuid, symlink, hardlinks, an xattr, another owner', () => {
    const { manifest: m } = firstManifest(image)
    expect(m.layers).toHaveLength(3)
    const layer2 = tool('tar', ['-tzf', blobFile(image, m.layers[1]!.digest)])
    expect(layer2).toContain('etc/.wh.doomed')
    expect(layer2).toContain('var/.wh.cache')
    const entries = JSON.parse(imageRootfs) as Array<Record<string, unknown>>
    const entry = (p: string): Record<string, unknown> => entries.find((e) => e.path === p) ?? { missing: p }
    expect(entry('bin/tool')).toMatchObject({ mode: '4755', hardlink_group: expect.any(Number) as number })
    expect(entry('bin/tool-again').hardlink_group).toBe(entry('bin/tool').hardlink_group)
    expect(entry('bin/hello-link')).toMatchObject({ type: 'symlink', target: '../etc/hello' })
    expect(entry('etc/hello')).toMatchObject({ uid: 1000, xattrs: { 'user.snapdir.test': Buffer.from('layer-one').toString('hex') } })
    expect(entry('etc/hello-hardlink').hardlink_group).toBe(entry('etc/hello').hardlink_group)
    expect(entry('etc/added')).toMatchObject({ type: 'file' })
    expect(imageRootfs).not.toContain('doomed')
    expect(imageRootfs).not.toContain('var/cache')
  })

  it('push then pull gives back the same layout; skopeo copies it and umoci unpacks it to the same rootfs', async () => {
    const { pulled } = await pushAndPull(image)
    expectSameLayout(pulled, image)

    const t = tempDir()
    tool('skopeo', ['copy', '--quiet', `oci:${pulled}:${TAG}`, `oci:${path.join(t, 'copied')}:${TAG}`])
    expect(blobHashes(path.join(t, 'copied'))).toEqual(
      // skopeo copies what the tag references, not the blobs umoci left behind
      blobHashes(pulled).filter((b) => existsSync(blobFile(path.join(t, 'copied'), `sha256:${b.name}`))),
    )
    tool('skopeo', ['copy', '--quiet', `oci:${pulled}:${TAG}`, `dir:${path.join(t, 'as-dir')}`])
    expect(firstManifest(image).manifest.layers.every((l) => existsSync(path.join(t, 'as-dir', l.digest.slice(7))))).toBe(true)

    tool('umoci', ['unpack', '--image', `${pulled}:${TAG}`, path.join(t, 'bundle')])
    expect(manifest(path.join(t, 'bundle', 'rootfs'))).toBe(imageRootfs)
  })

  it('a layout skopeo wrote with Docker schema2 types (--format v2s2) round-trips byte-exact', async () => {
    const docker = path.join(tempDir(), 'docker-types')
    tool('skopeo', ['copy', '--quiet', '--format', 'v2s2', `oci:${image}:${TAG}`, `oci:${docker}:${TAG}`])
    expect(firstManifest(docker).descriptor.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json')
    const { pulled } = await pushAndPull(docker)
    // skopeo 1.9 writes these layouts but finds only OCI-typed manifests by tag, so it cannot read one
    // back; the pulled blobs hashing to their names is the check here
    expectSameLayout(pulled, docker)
  })

  it('pushing the same image twice stores nothing new the second time', async () => {
    const store = path.join(tempDir(), 'store')
    const first = (await snapdirOk(['push', '--store', store, image])).trim()
    const objects = listFiles(path.join(store, 'chunks'))
    expect((await snapdirOk(['push', '--store', store, image])).trim()).toBe(first)
    expect(listFiles(path.join(store, 'chunks'))).toEqual(objects)
  })
})

/**
 * The failure contract of the CLI: exit 1, nothing on stdout, one line on stderr that starts with
 * `snapdir: ` and names each of `mentions`.
 */
function expectOneLine(r: RunResult, ...mentions: string[]): string {
  const shown = `stderr was:\n${r.stderr}`
  expect(r.status, shown).toBe(1)
  expect(r.stdout, shown).toBe('')
  const lines = r.stderr.split('\n').filter((l) => l !== '')
  expect(lines, shown).toHaveLength(1)
  expect(lines[0]).toMatch(/^snapdir: OCI image layout /)
  for (const m of mentions) expect(lines[0]).toContain(m)
  return lines[0]!
}

/** Pushes a bad layout twice: into no store (which must not be created) and into one (which must not change). */
async function expectRefused(layout: string, ...mentions: string[]): Promise<void> {
  const t = tempDir()
  const store = path.join(t, 'store')
  expectOneLine(await snapdir(['push', '--store', store, layout]), layout, ...mentions)
  expect(existsSync(store), 'a refused push must not create the store').toBe(false)

  const seeded = path.join(t, 'seeded')
  const seed = path.join(t, 'seed')
  mkdirSync(seed)
  writeFileSync(path.join(seed, 'a.txt'), 'an earlier snapshot\n')
  await snapdirOk(['push', '--store', seeded, seed])
  const before = listFiles(seeded)
  expectOneLine(await snapdir(['push', '--store', seeded, layout]), ...mentions)
  expect(listFiles(seeded), 'a refused push must not add anything to the store').toEqual(before)
}

describe('push refuses a bad layout: exit 1, one line naming the blob, nothing stored', () => {
  it('a layer with a flipped byte (skopeo refuses it too)', async () => {
    const layout = copyOfImage()
    const { descriptor, manifest: m } = firstManifest(layout)
    const layer = m.layers[1]!.digest
    flipByte(layout, layer, 40)
    const computed = `sha256:${sha256(readFileSync(blobFile(layout, layer)))}`
    await expectRefused(layout, `layer ${layer} of manifest ${descriptor.digest} does not match its digest`, computed)
    const reference = toolStatus('skopeo', ['copy', '--quiet', `oci:${layout}:${TAG}`, `oci:${path.join(tempDir(), 'copy')}:${TAG}`])
    expect(reference.status, 'skopeo, the reference, must refuse the same layout').not.toBe(0)
    expect(reference.stderr).toMatch(/digest did not match/i)
  })

  it('a manifest naming a missing blob', async () => {
    const layout = copyOfImage()
    const absent = `sha256:${sha256('a layer that was never written')}`
    const edited = editFirstManifest(layout, (m) => {
      m.layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: absent, size: 30 })
    })
    await expectRefused(layout, `layer ${absent} of manifest ${edited} is missing`)
  })

  it('a layer with an unknown media type', async () => {
    const layout = copyOfImage()
    let layer = ''
    const edited = editFirstManifest(layout, (m) => {
      m.layers[0]!.mediaType = 'application/vnd.example.layer.v1.tar+lz4'
      layer = m.layers[0]!.digest
    })
    await expectRefused(layout, `layer ${layer} of manifest ${edited} has media type "application/vnd.example.layer.v1.tar+lz4"`)
  })

  it('a truncated index.json', async () => {
    const layout = copyOfImage()
    const index = readFileSync(path.join(layout, 'index.json'))
    writeFileSync(path.join(layout, 'index.json'), index.subarray(0, Math.floor(index.length / 2)))
    await expectRefused(layout, 'index.json is not valid JSON')
  })
})
