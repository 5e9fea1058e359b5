// A store written before format 2 (test/fixtures/format1-store: config version 1, format 1 trees
// with small files inline, an image with an expanded layer), pushed by the last snapdir that wrote
// format 1 from the sources test/tools/format1-source.py writes. This snapdir must still verify, pull,
// mount and sync it, and a push to it upgrades its config to version 2 and writes format 2 trees
// beside the old ones, which stay readable.
import { cpSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { listFiles, manifest, requireBuild, ROOT, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { startMount } from '../helpers/mount.js'
import { tool } from '../helpers/oci.js'

requireBuild()

const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'format1-store')
const DIR_ID = 'e4c7a151e3f34a7412c42cefc8675571f9b89580ac883171d67afcb107161935'
const IMAGE_ID = '56fb8a6f15613ae65c70b4a8a2b7efd4494325657a6bd4745b86f0f8a7f359b0'

/** A copy of the fixture store (tests never change the checked-in one) and the sources it was pushed from. */
function setup(): { t: string; store: string; src: string; image: string } {
  const t = tempDir()
  const store = path.join(t, 'store')
  cpSync(FIXTURE, store, { recursive: true })
  tool('python3', [path.join(ROOT, 'test', 'tools', 'format1-source.py'), path.join(t, 'sources')])
  return { t, store, src: path.join(t, 'sources', 'src'), image: path.join(t, 'sources', 'image') }
}

const config = (store: string): { version: number; chunker: { inlineMax: number } } =>
  JSON.parse(readFileSync(path.join(store, 'config'), 'utf8')) as { version: number; chunker: { inlineMax: number } }

describe('a format 1 store', () => {
  it('is the store the fixture says: version 1, trees with inline content, no tree parts', () => {
    expect(config(FIXTURE)).toMatchObject({ version: 1, chunker: { inlineMax: 4096 } })
    expect(listFiles(FIXTURE).filter((f) => f.startsWith('tree-parts'))).toEqual([])
  })

  it('verifies and pulls back the directory and the image byte for byte, and does not change the store', async () => {
    const { t, store, src, image } = setup()
    const before = listFiles(store)
    for (const id of [DIR_ID, IMAGE_ID]) expect(await snapdir(['verify', '--store', store, '--id', id])).toMatchObject({ status: 0 })
    await snapdirOk(['pull', '--store', store, '--id', DIR_ID, path.join(t, 'dir')])
    expect(manifest(path.join(t, 'dir'))).toBe(manifest(src))
    await snapdirOk(['pull', '--store', store, '--id', IMAGE_ID, path.join(t, 'img')])
    expect(manifest(path.join(t, 'img'))).toBe(manifest(image))
    expect(listFiles(store)).toEqual(before)
    expect(config(store).version).toBe(1)
  })

  it('mounts: the tree view reads back byte for byte, inline files included, and the rootfs view of the image', async () => {
    const { t, store, src } = setup()
    const mnt = path.join(t, 'mnt')
    mkdirSync(mnt)
    const m = await startMount(['--store', store, '--id', DIR_ID, '--no-cache'], mnt)
    for (const rel of ['small.txt', 'edge-4096', 'data/mid.bin', 'data/large.bin', 'deep/er/note.txt', 'empty']) {
      expect(readFileSync(path.join(mnt, rel)).equals(readFileSync(path.join(src, rel))), rel).toBe(true)
    }
    await m.stop()
    const rootfs = await startMount(['--store', store, '--id', IMAGE_ID, '--no-cache', '--view', 'rootfs'], mnt)
    expect(readdirSync(path.join(mnt, 'rootfs', 'usr', 'lib')).sort()).toEqual(['libbig.so', 'libsmall.so'])
    expect(readFileSync(path.join(mnt, 'rootfs', 'etc', 'hostname'), 'utf8')).toBe('format1\n')
    expect(readFileSync(path.join(mnt, 'rootfs', 'usr', 'lib', 'libsmall.so'))).toHaveLength(3000)
    await rootfs.stop()
  })

  it('syncs into a new store as it is (same IDs, format 1 trees), which then verifies and pulls', async () => {
    const { t, store, src } = setup()
    const to = path.join(t, 'to')
    for (const id of [DIR_ID, IMAGE_ID]) await snapdirOk(['sync', '--from', store, '--to', to, '--id', id])
    expect(config(to)).toMatchObject({ version: 2, chunker: { inlineMax: 0 } })
    for (const id of [DIR_ID, IMAGE_ID]) expect(await snapdir(['verify', '--store', to, '--id', id])).toMatchObject({ status: 0 })
    await snapdirOk(['pull', '--store', to, '--id', DIR_ID, path.join(t, 'dir')])
    expect(manifest(path.join(t, 'dir'))).toBe(manifest(src))
  })

  it('a push to it upgrades its config to version 2 and writes format 2 trees; the old snapshots still pull', async () => {
    const { t, store, src } = setup()
    const id = (await snapdirOk(['push', '--store', store, src])).trim()
    expect(id).not.toBe(DIR_ID)
    expect(config(store)).toMatchObject({ version: 2, chunker: { inlineMax: 0 } })
    expect(listFiles(store).filter((f) => f.startsWith('tree-parts/')).length).toBeGreaterThan(0)
    expect((await snapdirOk(['id', src])).trim()).toBe(id)
    expect((await snapdirOk(['id', '--store', path.join(FIXTURE), src])).trim()).toBe(id)
    for (const [i, pulled] of [id, DIR_ID].entries()) {
      await snapdirOk(['pull', '--store', store, '--id', pulled, path.join(t, `out${i}`)])
      expect(manifest(path.join(t, `out${i}`))).toBe(manifest(src))
    }
  })

  it('a store of a newer version (3) is refused in one line by push and by sync to it, and gains no files', async () => {
    const { t, store, src } = setup()
    const newer = path.join(t, 'newer')
    mkdirSync(newer)
    writeFileSync(path.join(newer, 'config'), JSON.stringify({ ...config(store), version: 3 }))
    for (const args of [['push', '--store', newer, src], ['sync', '--from', store, '--to', newer, '--id', DIR_ID]]) {
      const r = await snapdir(args)
      expect(r.status, r.stderr).toBe(1)
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1)
      expect(r.stderr).toMatch(/config has version 3; this snapdir reads versions 1 to 2 \(a newer snapdir wrote it\)/)
      expect(listFiles(newer)).toEqual(['config'])
    }
  })

  it('a mount of a store of a newer version (3) fails in one line and leaves nothing mounted, though its trees load', async () => {
    // the format is checked beside the mount's first reads: the version must still decide
    const { t, store } = setup()
    writeFileSync(path.join(store, 'config'), JSON.stringify({ ...config(store), version: 3 }))
    const mnt = path.join(t, 'mnt')
    mkdirSync(mnt)
    for (const view of ['tree', 'rootfs']) {
      const r = await snapdir(['mount', '--store', store, '--id', view === 'tree' ? DIR_ID : IMAGE_ID, '--no-cache', '--view', view, mnt])
      expect(r.status, r.stderr).toBe(1)
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1)
      expect(r.stderr).toMatch(/config has version 3; this snapdir reads versions 1 to 2 \(a newer snapdir wrote it\)/)
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(` ${mnt} `)
    }
  })
})
