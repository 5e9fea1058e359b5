// `snapdir diff`: each kind of change found at its path and nothing else reported (many unchanged
// files, some sharing a pack group with an edited one, so their refs change but not their bytes);
// the bytes a sync would move checked against what `snapdir sync --json` copies to a store holding
// the first snapshot, on file and S3 stores; an image with one layer rebuilt reported layer by layer;
// a package unpacked with dpkg-deb into a copy of a tree checked against `diff -rq` and `dpkg-deb -c`.
import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, cpSync, lutimesSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bytes, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { LayoutBuilder, OCI, sha256 } from '../helpers/oci.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'

interface PathDiff {
  path: string
  status: 'A' | 'D' | 'M'
  type: string
  changes: string[]
  size?: [number | null, number | null]
}
interface TreeDiff {
  paths: PathDiff[]
  counts: { added: number; removed: number; changed: number }
  entries: { from: number; to: number }
  parts: { from: number; to: number; shared: number; decoded: number }
}
interface Count {
  objects: number
  bytes: number
}
interface DiffJson {
  tree: TreeDiff
  images: Array<{
    ref: string | null
    manifest: [string | null, string | null]
    config: [string | null, string | null]
    configFields: string[]
    layers: Array<{ index: number; status: string; from: { diffId: string } | null; to: { diffId: string } | null; diff?: TreeDiff }>
  }>
  counts: { added: number; removed: number; changed: number }
  sync: Count & { chunks: Count; treeParts: Count; trees: Count; recipes: Count; missingChunks: number }
}
interface SyncJson {
  objects: { copied: number }
  bytes: { copied: number }
}

let server: S3Server
beforeAll(async () => {
  server = await startS3Server(['diff'])
})
afterAll(async () => {
  await server.close()
})

const push = async (store: string, dir: string): Promise<string> => (await snapdirOk(['push', '--store', store, dir], { env: server.env })).trim()
const diffJson = async (store: string, a: string, b: string): Promise<DiffJson> =>
  JSON.parse(await snapdirOk(['diff', '--json', '--store', store, a, b], { env: server.env })) as DiffJson
const syncJson = async (id: string, from: string, to: string): Promise<SyncJson> =>
  JSON.parse(await snapdirOk(['sync', '--json', '--id', id, '--from', from, '--to', to], { env: server.env })) as SyncJson
const changed = (d: TreeDiff): Record<string, string> => Object.fromEntries(d.paths.map((p) => [p.path, `${p.status} ${p.changes.join(',')}`.trim()]))

/** Every mtime but the `times` file's set to one fixed time: an edit would otherwise change its file's and its parent's. */
function pinTimes(dir: string): void {
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (e.name !== 'times') lutimesSync(path.join(e.parentPath, e.name), 1_600_000_000, 1_600_000_000)
  }
  utimesSync(dir, 1_600_000_000, 1_600_000_000)
}

/** 400 small files in 20 directories (several tree parts and pack groups), a large file, and one path per kind of change. */
function makeTree(dir: string): void {
  for (let d = 0; d < 20; d++) {
    mkdirSync(path.join(dir, `dir${d}`), { recursive: true })
    for (let f = 0; f < 20; f++) writeFileSync(path.join(dir, `dir${d}`, `file${f}`), bytes(`small ${d} ${f}`, 500 + 37 * f))
  }
  writeFileSync(path.join(dir, 'large'), bytes('large', 600_000))
  writeFileSync(path.join(dir, 'dir3', 'content'), 'before\n')
  writeFileSync(path.join(dir, 'mode'), 'mode\n', { mode: 0o644 })
  writeFileSync(path.join(dir, 'owner'), 'owner\n')
  writeFileSync(path.join(dir, 'times'), 'times\n')
  writeFileSync(path.join(dir, 'xattrs'), 'xattrs\n')
  symlinkSync('mode', path.join(dir, 'target'))
  writeFileSync(path.join(dir, 'type'), 'a file, then a directory\n')
  execFileSync('mknod', [path.join(dir, 'device'), 'c', '1', '3'])
  writeFileSync(path.join(dir, 'removed'), 'removed\n')
  utimesSync(path.join(dir, 'times'), 1_500_000_000, 1_500_000_000)
  pinTimes(dir)
}

function editTree(dir: string): void {
  writeFileSync(path.join(dir, 'dir3', 'content'), 'after!\n') // same size, other bytes: its pack group is cut again
  writeFileSync(path.join(dir, 'large'), Buffer.concat([bytes('large', 300_000), Buffer.from('x'), bytes('large', 600_000).subarray(300_001)]))
  chmodSync(path.join(dir, 'mode'), 0o600)
  chownSync(path.join(dir, 'owner'), 1234, 5678)
  utimesSync(path.join(dir, 'times'), 1_500_000_000, 1_500_000_001)
  execFileSync('setfattr', ['-n', 'user.snapdir.diff', '-v', 'yes', path.join(dir, 'xattrs')])
  unlinkSync(path.join(dir, 'target'))
  symlinkSync('owner', path.join(dir, 'target'))
  unlinkSync(path.join(dir, 'type'))
  mkdirSync(path.join(dir, 'type'))
  unlinkSync(path.join(dir, 'device'))
  execFileSync('mknod', [path.join(dir, 'device'), 'c', '1', '5'])
  rmSync(path.join(dir, 'removed'))
  writeFileSync(path.join(dir, 'dir7', 'added'), 'added\n')
  pinTimes(dir)
}

const EXPECTED = {
  'dir3/content': 'M content',
  large: 'M content',
  mode: 'M mode',
  owner: 'M owner',
  times: 'M times',
  xattrs: 'M xattrs',
  target: 'M target',
  type: 'M type,mode',
  device: 'M device',
  removed: 'D',
  'dir7/added': 'A',
}

describe('snapdir diff', () => {
  it('reports each kind of change at its path and nothing else; the sync figure is what sync copies (file store)', async () => {
    const t = tempDir('snapdir-diff-')
    const src = path.join(t, 'src')
    const store = path.join(t, 'store')
    makeTree(src)
    const id1 = await push(store, src)
    editTree(src)
    const id2 = await push(store, src)

    const d = await diffJson(store, id1, id2)
    expect(changed(d.tree)).toEqual(EXPECTED)
    expect(d.tree.counts).toEqual({ added: 1, removed: 1, changed: 9, kinds: { type: 1, content: 2, mode: 2, owner: 1, times: 1, xattrs: 1, target: 1, device: 1 } })
    expect(d.tree.paths.find((p) => p.path === 'dir3/content')?.size).toEqual([7, 7])
    // the unchanged parts were not decoded
    expect(d.tree.parts.shared).toBeGreaterThan(0)
    expect(d.tree.parts.decoded).toBeLessThan(d.tree.parts.from + d.tree.parts.to)

    const human = await snapdirOk(['diff', '--store', store, id1, id2])
    expect(human).toMatch(/^M {2}dir3\/content {2}content \(7 -> 7 bytes\)$/m)
    expect(human).toMatch(/^D {2}removed/m)
    expect(human).toMatch(/^A {2}dir7\/added/m)
    expect(human).toMatch(/^1 added, 1 removed, 9 changed \(/m)
    expect(human.trim().split('\n')).toHaveLength(Object.keys(EXPECTED).length + 2)

    // a store holding id1 (synced there alone), then id2 synced to it: what diff said would move
    const dest = path.join(t, 'dest')
    await syncJson(id1, store, dest)
    const s = await syncJson(id2, store, dest)
    expect(d.sync.objects).toBe(s.objects.copied)
    expect(d.sync.bytes).toBe(s.bytes.copied)
    expect(d.sync.chunks.objects).toBeGreaterThanOrEqual(2) // the large file's changed chunk and a pack group's
    expect(d.sync.trees.objects).toBe(1)

    // the same snapshot: nothing, nothing to move
    const same = await diffJson(store, id2, id2)
    expect(same.tree.paths).toEqual([])
    expect(same.sync.objects).toBe(0)
    // the other way round: each change mirrored
    const back = await diffJson(store, id2, id1)
    expect(changed(back.tree)).toEqual({ ...EXPECTED, removed: 'A', 'dir7/added': 'D' })
  })

  it('on an S3 store: the same changes, and the sync figure is what sync copies to an S3 store holding the first', async () => {
    const t = tempDir('snapdir-diff-s3-')
    const src = path.join(t, 'src')
    makeTree(src)
    const store = 's3://diff/store'
    const id1 = await push(store, src)
    editTree(src)
    const id2 = await push(store, src)
    const d = await diffJson(store, id1, id2)
    expect(changed(d.tree)).toEqual(EXPECTED)
    await syncJson(id1, store, 's3://diff/dest')
    const s = await syncJson(id2, store, 's3://diff/dest')
    expect([d.sync.objects, d.sync.bytes]).toEqual([s.objects.copied, s.bytes.copied])
  })

  it('an image with one layer rebuilt: the other layers unchanged, the rebuilt one diffed file by file, the sync figure what sync copies', async () => {
    const t = tempDir('snapdir-diff-image-')
    const layerDir = (name: string, files: Record<string, string>): string => {
      const dir = path.join(t, name)
      for (const [f, content] of Object.entries(files)) {
        mkdirSync(path.dirname(path.join(dir, f)), { recursive: true })
        writeFileSync(path.join(dir, f), content)
      }
      return dir
    }
    const tar = (dir: string): Buffer =>
      execFileSync('tar', ['--sort=name', '--mtime=@1600000000', '--owner=0', '--group=0', '--numeric-owner', '--format=pax', '--pax-option=delete=atime,delete=ctime', '-C', dir, '-cf', '-', '.'], { maxBuffer: 1 << 26 })
    const base = tar(layerDir('l0', { 'etc/os-release': 'ID=test\n', 'usr/lib/big': bytes('lib', 300_000).toString('latin1') }))
    const top = tar(layerDir('l2', { 'opt/app/run': '#!/bin/sh\necho app\n' }))
    const middle = tar(layerDir('l1', { 'etc/conf': 'version 1\n', 'etc/keep': 'kept\n' }))
    const middle2 = tar(layerDir('l1b', { 'etc/conf': 'version 2, longer\n', 'etc/keep': 'kept\n', 'etc/new': 'new\n' }))
    const image = (dir: string, layers: Buffer[], env: string): string => {
      const b = new LayoutBuilder(dir)
      const config = b.blob(
        { architecture: 'amd64', os: 'linux', config: { Env: [env] }, rootfs: { type: 'layers', diff_ids: layers.map((l) => `sha256:${sha256(l)}`) } },
        OCI.config,
      )
      b.writeIndex([b.manifest({ config, layers: layers.map((l) => b.blob(l, OCI.layerTar)) })])
      return dir
    }
    const store = path.join(t, 'store')
    const id1 = await push(store, image(path.join(t, 'image1'), [base, middle, top], 'V=1'))
    const id2 = await push(store, image(path.join(t, 'image2'), [base, middle2, top], 'V=2'))

    const d = await diffJson(store, id1, id2)
    expect(d.images).toHaveLength(1)
    const [img] = d.images
    expect(img!.ref).toBe('tag0')
    expect(img!.manifest[0]).not.toBe(img!.manifest[1])
    expect(img!.configFields).toEqual(['config.Env', 'rootfs'])
    expect(img!.layers.map((l) => l.status)).toEqual(['unchanged', 'changed', 'unchanged'])
    const layer = img!.layers[1]!
    expect(layer.from?.diffId).toBe(`sha256:${sha256(middle)}`)
    expect(layer.to?.diffId).toBe(`sha256:${sha256(middle2)}`)
    expect(changed(layer.diff!)).toEqual({ 'etc/conf': 'M content', 'etc/new': 'A' })
    // the bundle: the rebuilt layer's blob, the config and the manifest are new blobs, index.json names another manifest
    const bundle = changed(d.tree)
    expect(Object.values(bundle).filter((s) => s === 'A')).toHaveLength(3)
    expect(Object.values(bundle).filter((s) => s === 'D')).toHaveLength(3)
    expect(bundle['index.json']).toMatch(/^M content/)

    const human = await snapdirOk(['diff', '--store', store, id1, id2])
    expect(human).toMatch(/^ {2}layer 1 sha256:[0-9a-f]{64}: unchanged$/m)
    expect(human).toMatch(/^ {2}layer 2 sha256:[0-9a-f]{64} -> sha256:[0-9a-f]{64}: changed, 1 added, 0 removed, 1 changed$/m)
    expect(human).toMatch(/^ {4}M {2}etc\/conf {2}content \(10 -> 18 bytes\)$/m)

    const dest = path.join(t, 'dest')
    await syncJson(id1, store, dest)
    const s = await syncJson(id2, store, dest)
    expect([d.sync.objects, d.sync.bytes]).toEqual([s.objects.copied, s.bytes.copied])
    expect(d.sync.trees.objects).toBe(2) // the bundle's and the rebuilt layer's
    expect(d.sync.recipes.objects).toBe(1)
  })

  it('a package unpacked into a copy of a tree: added and changed paths are what diff -rq and dpkg-deb -c say', async () => {
    const t = tempDir('snapdir-diff-deb-')
    // a small root: some of this machine's /etc and a share directory, copied with their metadata
    const root = path.join(t, 'root')
    mkdirSync(path.join(root, 'usr', 'share', 'doc'), { recursive: true })
    mkdirSync(path.join(root, 'usr', 'bin'), { recursive: true })
    cpSync('/etc/apt', path.join(root, 'etc', 'apt'), { recursive: true, preserveTimestamps: true, verbatimSymlinks: true })
    writeFileSync(path.join(root, 'usr', 'bin', 'existing'), 'an existing tool\n')
    writeFileSync(path.join(root, 'usr', 'bin', 'replaced'), 'the old version\n')
    // a package built here with dpkg-deb: new files, a file over an existing one, an existing directory
    const pkg = path.join(t, 'pkg')
    mkdirSync(path.join(pkg, 'DEBIAN'), { recursive: true })
    writeFileSync(path.join(pkg, 'DEBIAN', 'control'), 'Package: snapdir-diff-test\nVersion: 1.0\nArchitecture: all\nMaintainer: snapdir <snapdir@localhost>\nDescription: a test package\n')
    mkdirSync(path.join(pkg, 'usr', 'bin'), { recursive: true })
    mkdirSync(path.join(pkg, 'usr', 'share', 'doc', 'snapdir-diff-test'), { recursive: true })
    writeFileSync(path.join(pkg, 'usr', 'bin', 'new-tool'), bytes('tool', 90_000), { mode: 0o755 })
    writeFileSync(path.join(pkg, 'usr', 'bin', 'replaced'), 'the new version\n')
    writeFileSync(path.join(pkg, 'usr', 'share', 'doc', 'snapdir-diff-test', 'copyright'), 'public domain\n')
    symlinkSync('new-tool', path.join(pkg, 'usr', 'bin', 'new-link'))
    const deb = path.join(t, 'test.deb')
    execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', pkg, deb], { stdio: 'pipe' })

    const copy = path.join(t, 'copy')
    execFileSync('cp', ['-a', root, copy])
    execFileSync('dpkg-deb', ['-x', deb, copy])
    const store = path.join(t, 'store')
    const id1 = await push(store, root)
    const id2 = await push(store, copy)
    const d = await diffJson(store, id1, id2)

    // diff -rq: "Only in DIR: NAME" for a new top (whose contents are all new), "Files A and B differ"
    const out = execFileSync('sh', ['-c', `diff -rq --no-dereference '${root}' '${copy}' || true`], { encoding: 'utf8' }).trim().split('\n')
    const rel = (p: string): string => path.relative(copy, p)
    const onlyInCopy = out.flatMap((l) => {
      const m = /^Only in (.*): (.*)$/.exec(l)
      return m && m[1]!.startsWith(copy) ? [rel(path.join(m[1]!, m[2]!))] : []
    })
    const differ = out.flatMap((l) => {
      const m = /^Files (.*) and (.*) differ$/.exec(l)
      return m ? [rel(m[2]!)] : []
    })
    expect(out.filter((l) => !/^(Only in|Files .* differ)/.test(l))).toEqual([])
    const added = d.tree.paths.filter((p) => p.status === 'A').map((p) => p.path)
    // each path diff -rq names as only in the copy is added, with everything under it, and nothing else is
    const under = (p: string, top: string): boolean => p === top || p.startsWith(`${top}/`)
    expect(added.every((p) => onlyInCopy.some((top) => under(p, top)))).toBe(true)
    expect(onlyInCopy.every((top) => added.includes(top))).toBe(true)
    for (const top of onlyInCopy) {
      const all = execFileSync('find', [path.join(copy, top)], { encoding: 'utf8' }).trim().split('\n').map(rel)
      expect(added.filter((p) => under(p, top)).sort()).toEqual(all.sort())
    }
    // content changed exactly where diff -rq says files differ
    expect(d.tree.paths.filter((p) => p.changes.includes('content')).map((p) => p.path)).toEqual(differ)
    expect(differ).toEqual(['usr/bin/replaced'])
    // every path the package lists is added or changed, or an existing directory left as it was
    const listed = execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8' }).trim().split('\n')
      .map((l) => /\.\/(\S*?)\/?(?: -> .*)?$/.exec(l)![1]!).filter((p) => p !== '')
    const reported = new Set(d.tree.paths.map((p) => p.path))
    for (const p of listed) expect(reported.has(p) || statSync(path.join(root, p), { throwIfNoEntry: false })?.isDirectory()).toBe(true)
    // and every path reported is the package's, or a directory whose times it set
    for (const p of d.tree.paths) expect(listed.includes(p.path) || (p.type === 'dir' && p.changes.every((k) => k === 'times' || k === 'mode' || k === 'owner'))).toBe(true)
    expect(added.sort()).toEqual(['usr/bin/new-link', 'usr/bin/new-tool', 'usr/share/doc/snapdir-diff-test', 'usr/share/doc/snapdir-diff-test/copyright'])
  })

  it('a malformed ID is one line and exit 2; an unknown one names it, exit 1', async () => {
    const t = tempDir('snapdir-diff-bad-')
    const src = path.join(t, 'src')
    mkdirSync(src)
    writeFileSync(path.join(src, 'f'), 'f\n')
    const store = path.join(t, 'store')
    const id = await push(store, src)
    const bad = await snapdir(['diff', '--store', store, id, 'abc'])
    expect(bad.status).toBe(2)
    expect(bad.stderr).toBe("snapdir: snapshot ID prefix 'abc' is too short: give at least 8 hex digits\n")
    expect(bad.stdout).toBe('')
    const unknown = 'f'.repeat(64)
    const missing = await snapdir(['diff', '--store', store, unknown, id])
    expect(missing.status).toBe(1)
    expect(missing.stderr).toBe(`snapdir: snapshot ${unknown} is not in ${store}\n`)
    const usage = await snapdir(['diff', '--store', store, id])
    expect(usage.status).toBe(2)
    expect(usage.stderr.trim().split('\n')).toHaveLength(1)
    expect(readFileSync(path.join(store, 'config'), 'utf8')).toMatch(/snapdir-store/)
  })
})
