// The rootfs and layers views of a pushed image, judged against umoci's own unpack of the same image:
// the flattened root file system must be the same entries with the same bytes, modes, owners, times,
// xattrs, link targets and hardlink identity; the layers must stack in the kernel's overlayfs to that
// same root file system.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { manifest, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { startMount } from '../helpers/mount.js'
import { blobFile, buildViewsImage, firstManifest, requireTools, tool } from '../helpers/oci.js'

requireTools('umoci', 'setfattr', 'getfattr', 'mknod')

const TAG = 'v1'
let shared = ''
let image = ''
let store = ''
let id = ''
let reference = ''

beforeAll(async () => {
  shared = mkdtempSync(path.join(os.tmpdir(), 'snapdir-views-'))
  image = path.join(shared, 'image')
  buildViewsImage(image, TAG, path.join(shared, 'build-bundle'), shared)
  tool('umoci', ['unpack', '--image', `${image}:${TAG}`, path.join(shared, 'reference-bundle')])
  reference = path.join(shared, 'reference-bundle', 'rootfs')
  store = path.join(shared, 'store')
  id = (await snapdirOk(['push', '--store', store, image])).trim()
})

afterAll(() => {
  if (shared) rmSync(shared, { recursive: true, force: true })
})

function mountpoint(): string {
  const mnt = path.join(tempDir(), 'mnt')
  mkdirSync(mnt)
  return mnt
}

/** The oracle's entries of a directory, keyed by path, for messages that name what differs. */
function entriesOf(dir: string): Map<string, Record<string, unknown>> {
  return new Map((JSON.parse(manifest(dir)) as Array<Record<string, unknown>>).map((e) => [e.path as string, e]))
}

describe('snapdir mount --view rootfs', () => {
  it('the image has what the test means it to have', () => {
    const { manifest: m } = firstManifest(image)
    expect(m.layers).toHaveLength(5)
    const top = tool('tar', ['-tzf', blobFile(image, m.layers[4]!.digest)])
    expect(top).toContain('opt/app/.wh..wh..opq')
    const ref = entriesOf(reference)
    expect(ref.get('opt/app/new')).toBeDefined()
    expect(ref.get('opt/app/a'), 'the opaque directory hides layer 4').toBeUndefined()
    expect(ref.get('etc/added'), 'whited out in layer 5').toBeUndefined()
    expect(ref.get('dev/char0')).toMatchObject({ type: 'char', rdev_major: 1, rdev_minor: 3 })
    expect(ref.get('bin/tool-again')?.hardlink_group).toBe(ref.get('bin/tool')?.hardlink_group)
  })

  it('serves the config and a root file system equal to umoci unpack of the same image', async () => {
    const mnt = mountpoint()
    const m = await startMount(['--store', store, '--id', id, '--view', 'rootfs'], mnt)
    expect(m.stderr()).toContain('rootfs view')
    const { manifest: man } = firstManifest(image)
    expect(readFileSync(path.join(mnt, 'config.json'))).toEqual(readFileSync(blobFile(image, man.config.digest)))
    expect(manifest(path.join(mnt, 'rootfs'))).toBe(manifest(reference))
  })
})

describe('snapdir mount --view layers', () => {
  it('shows whiteouts as overlayfs does, and the layers stack in overlayfs to the rootfs umoci unpacks', async () => {
    const mnt = mountpoint()
    await startMount(['--store', store, '--id', id, '--view', 'layers'], mnt)
    const layers = path.join(mnt, 'layers')
    const whiteout = statSync(path.join(layers, '1', 'etc', 'doomed'))
    expect(whiteout.isCharacterDevice() && whiteout.rdev === 0, 'a whiteout is a char device 0/0').toBe(true)
    expect(tool('getfattr', ['--only-values', '-n', 'trusted.overlay.opaque', path.join(layers, '4', 'opt', 'app')])).toBe('y')
    expect(tool('ls', ['-A', path.join(layers, '4', 'opt', 'app')]).split('\n').filter(Boolean)).toEqual(['new'])

    const merged = path.join(tempDir(), 'merged')
    mkdirSync(merged)
    const lower = [4, 3, 2, 1, 0].map((i) => path.join(layers, String(i))).join(':')
    tool('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${lower}`, merged])
    try {
      const got = entriesOf(merged)
      const want = entriesOf(reference)
      // the root directory's own attributes come from the top layer in overlayfs; compare the rest
      got.delete('')
      want.delete('')
      expect([...got.keys()].sort()).toEqual([...want.keys()].sort())
      for (const [p, e] of want) expect(got.get(p), p).toEqual(e)
    } finally {
      spawnSync('umount', [merged])
    }
  })
})

describe('choosing the image', () => {
  it('refuses a view of a snapshot that is not an image, and an image the layout does not have', async () => {
    const plain = path.join(tempDir(), 'plain')
    mkdirSync(plain)
    const plainId = (await snapdirOk(['push', '--store', store, plain])).trim()
    const notImage = await snapdir(['mount', '--store', store, '--id', plainId, '--view', 'rootfs', mountpoint()])
    expect(notImage.status).toBe(1)
    expect(notImage.stderr).toMatch(/not an image: neither an OCI image layout .* nor a Docker archive/)

    const noSuch = await snapdir(['mount', '--store', store, '--id', id, '--view', 'rootfs', '--ref', 'nope', mountpoint()])
    expect(noSuch.status).toBe(1)
    expect(noSuch.stderr).toContain(`has no image "nope" (it has ${TAG})`)

    const tagged = mountpoint()
    await startMount(['--store', store, '--id', id, '--view', 'rootfs', '--ref', TAG], tagged)
    expect(readFileSync(path.join(tagged, 'rootfs', 'opt', 'app', 'new'), 'utf8')).toBe('the only file of the opaque directory\n')

    const misuse = await snapdir(['mount', '--store', store, '--id', id, '--ref', TAG, mountpoint()])
    expect(misuse.status).toBe(2)
    const badPlatform = await snapdir(['mount', '--store', store, '--id', id, '--view', 'rootfs', '--platform', 'linux', mountpoint()])
    expect(badPlatform.status).toBe(2)
  })
})
