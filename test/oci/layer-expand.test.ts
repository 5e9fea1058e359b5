// Layer expansion against real tars: GNU tar (pax, xattrs), gzip and zstd build layers from a directory
// this test makes; the expanded tree is checked against tree-manifest.py's description of the directory
// (an oracle that shares no code with snapdir) and against `snapdir id` / `snapdir push` of it. Crafted
// tars (python's tarfile) try to escape the layer and must be refused or neutralised.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { hashBytes } from '../../src/chunk/hash.js'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { toHex } from '../../src/format/id.js'
import { decodeTree, encodeTree, type Tree, type TreeEntry } from '../../src/format/tree.js'
import { expandLayer, layerCompression, type ExpandedLayer } from '../../src/oci/layer-expand.js'
import { whiteoutOf } from '../../src/oci/layer-whiteouts.js'
import { FileStore } from '../../src/store/file-store.js'
import { MemoryStore } from '../../src/store/memory-store.js'
import { getChunk } from '../../src/store/chunks.js'
import { readTree } from '../../src/store/objects.js'
import type { Store } from '../../src/store/store.js'
import { SnapdirError } from '../../src/util/errors.js'
import { manifest, snapdirOk, tempDir } from '../helpers/cli.js'

const TAR = 'application/vnd.oci.image.layer.v1.tar'
const TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'
const TAR_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd'
const LONG_DIR = 'long-' + 'd'.repeat(120)

// The source directory, standard library only. Every kind of entry a layer carries, files on both
// sides of inlineMax (4096) and packMax (65536), enough 5 KiB files for several pack groups,
// hardlinks to an inline, a packed and a whole-cut file, whiteouts, and nanosecond mtimes.
const MAKE_DIR = String.raw`
import os, random, sys
root = sys.argv[1].encode()
r = random.Random(7)
def p(rel): return os.path.join(root, rel)
os.mkdir(root)
def write(rel, data, mode=0o644, uid=0, gid=0):
    with open(p(rel), 'wb') as f: f.write(data)
    os.chown(p(rel), uid, gid); os.chmod(p(rel), mode)
for d in [b'a', b'a/b', b'small', b'hl', b'dev', b'opq', b'opq/keep', b'names', b'${LONG_DIR}', b'sticky', b'sgid']:
    os.mkdir(p(d))
os.chmod(p(b'a/b'), 0o750); os.chown(p(b'a/b'), 1234, 5678)
os.chmod(p(b'sticky'), 0o1777); os.chmod(p(b'sgid'), 0o2775)
write(b'empty', b'')
write(b'inline.txt', b'hello layer\n' * 8)
write(b'inline-max', r.randbytes(4096))
write(b'packed-min', r.randbytes(4097))
write(b'packed-20k', r.randbytes(20 * 1024))
write(b'packed-max', r.randbytes(65535))
write(b'whole-min', r.randbytes(65536))
write(b'big.bin', r.randbytes(1536 * 1024))
write(b'zeros', bytes(700 * 1024))
for i in range(300): write(b'small/f%03d' % i, r.randbytes(5 * 1024 + i))
write(b'suid', b'#!/bin/sh\n', 0o4755, 1234, 5678)
write(b'sgid/file', b'x', 0o2711)
write(b'owned-big-ids', b'ids past the octal fields\n', 0o600, 3000000, 4000000)
write(b'names/caf\xe9', b'not utf-8 name\n')
write(b'${LONG_DIR}/file-with-a-long-name-past-one-hundred-bytes', b'long\n')
write(b'${LONG_DIR}/not-utf8-\xff\xfe-' + b'n' * 40, b'long and not utf-8: a PAX path of raw bytes\n')
write(b'xattrs', b'xattrs here\n')
os.setxattr(p(b'xattrs'), b'user.text', b'plain')
os.setxattr(p(b'xattrs'), b'user.binary', b'\x01\x80\xff\x00\x0a=bin')
os.setxattr(p(b'a'), b'user.dir', b'on a dir')
write(b'.wh.gone', b'')
write(b'opq/.wh..wh..opq', b'')
os.link(p(b'big.bin'), p(b'hl/big-link'))
os.link(p(b'inline.txt'), p(b'hl/inline-link'))
os.link(p(b'packed-20k'), p(b'a/packed-link'))
os.symlink(b'inline.txt', p(b'rel-link'))
os.symlink(b'./${LONG_DIR}/file-with-a-long-name-past-one-hundred-bytes', p(b'long-target-link'))
os.symlink(b'../../../etc/passwd', p(b'escaping-link'))
os.mknod(p(b'dev/null'), 0o20666, os.makedev(1, 3))
os.mknod(p(b'dev/loop0'), 0o60660, os.makedev(7, 0))
os.mknod(p(b'dev/big'), 0o20600, os.makedev(300, 70000))
os.mkfifo(p(b'dev/fifo'), 0o640)
ns = 1600000000_123456789
for dirpath, dirs, files in os.walk(root, topdown=False):
    for n in files + dirs:
        ns += 1000000007
        os.utime(os.path.join(dirpath, n), ns=(ns, ns), follow_symlinks=False)
os.utime(root, ns=(ns + 5, ns + 5))
`

function run(cmd: string, args: string[], input?: Buffer): Buffer {
  const r = spawnSync(cmd, args, { input, maxBuffer: 256 * 1024 * 1024 })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.toString()}`)
  return r.stdout
}

function makeSource(dir: string): void {
  run('python3', ['-c', MAKE_DIR, dir])
}

/** A pax tar of the directory's content, names relative to it ('./…'), as layer builders write them. */
function tarOf(dir: string, out: string, extra: string[] = []): void {
  run('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', ...extra, '-C', dir, '-cf', out, '.'])
}

function compress(tar: string, tool: 'gzip' | 'zstd'): string {
  const out = `${tar}.${tool === 'gzip' ? 'gz' : 'zst'}`
  fs.writeFileSync(out, run(tool, ['-c', tar]))
  return out
}

async function openMemory(): Promise<MemoryStore> {
  const store = new MemoryStore()
  await store.open({ create: true })
  return store
}

/** A file's content from the store's chunks (or the tree, if inline). */
async function content(store: Store, e: TreeEntry): Promise<Buffer> {
  if (e.inline) return e.inline
  const parts: Buffer[] = []
  for (const r of e.chunks) {
    const { raw: chunk } = await getChunk(store, toHex(r.id))
    for (let i = 0; i < r.count; i++) parts.push(chunk.subarray(r.offset, r.offset + r.length))
  }
  return Buffer.concat(parts)
}

function treeId(tree: Tree): string {
  return toHex(hashBytes(encodeTree(tree).root))
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

interface ManifestEntry {
  path_hex: string
  type: string
  mode: string
  uid: number
  gid: number
  mtime_ns: number | string
  xattrs: Record<string, string>
  size?: number
  sha256?: string
  target_hex?: string
  rdev_major?: number
  rdev_minor?: number
  hardlink_group?: number
}

/**
 * Checks every entry of the tree against the oracle's description of the directory. `seconds`: the tar
 * kept whole seconds of mtimes, rounded (Go's archive/tar outside PAX) or truncated (GNU tar's gnu
 * format); `noXattrs`: its format has no xattrs.
 */
async function expectMatchesManifest(
  tree: Tree, store: Store, dir: string, options: { seconds?: 'round' | 'floor'; noXattrs?: boolean } = {},
): Promise<void> {
  // mtime_ns as a string: nanoseconds since 1970 do not fit a double
  const lines = JSON.parse(manifest(dir).replace(/"mtime_ns":(-?\d+)/g, '"mtime_ns":"$1"')) as ManifestEntry[]
  const byPath = new Map(tree.entries.map((e) => [e.path.toString('hex'), e]))
  expect(tree.entries.map((e) => e.path.toString('hex'))).toEqual(lines.map((m) => m.path_hex))
  const groups = new Map<number, string>()
  for (const m of lines) {
    let e = byPath.get(m.path_hex)!
    const where = `${Buffer.from(m.path_hex, 'hex').toString()}`
    if (m.hardlink_group !== undefined) {
      // the first name of the group carries the inode, the others name it
      const first = groups.get(m.hardlink_group)
      if (first === undefined) {
        groups.set(m.hardlink_group, m.path_hex)
        expect(e.type, where).not.toBe('hardlink')
      } else {
        expect(e.type, where).toBe('hardlink')
        expect(e.target!.toString('hex'), where).toBe(first)
        e = byPath.get(first)!
      }
    }
    expect(e.type, where).toBe(m.type)
    expect(e.mode.toString(8).padStart(4, '0'), where).toBe(m.mode)
    expect([e.uid, e.gid], where).toEqual([m.uid, m.gid])
    const ns = BigInt(m.mtime_ns)
    if (options.seconds) {
      const sec = (options.seconds === 'round' ? ns + 500_000_000n : ns) / 1_000_000_000n
      expect([e.mtimeSec, e.mtimeNsec], where).toEqual([Number(sec), 0])
    }
    else expect(BigInt(e.mtimeSec) * 1_000_000_000n + BigInt(e.mtimeNsec), where).toBe(ns)
    expect(Object.fromEntries(e.xattrs.map(([k, v]) => [k.toString(), v.toString('hex')])), where).toEqual(options.noXattrs ? {} : m.xattrs)
    if (m.type === 'file') {
      expect(e.size, where).toBe(m.size)
      expect(sha256(await content(store, e)), where).toBe(m.sha256)
    }
    if (m.type === 'symlink') expect(e.target!.toString('hex'), where).toBe(m.target_hex)
    if (m.type === 'char' || m.type === 'block') {
      const rdev = e.rdev
      const major = (Math.floor(rdev / 0x100) & 0xfff) + Math.floor(rdev / 0x1000_0000_0000) * 0x1000
      const minor = (rdev & 0xff) + (Math.floor(rdev / 0x100000) & 0xffffff) * 0x100
      expect([major, minor], where).toEqual([m.rdev_major, m.rdev_minor])
    }
  }
}

async function expectFailure(p: Promise<unknown>, code: string, message: RegExp): Promise<SnapdirError> {
  const err = await p.then(() => null, (e: unknown) => e)
  expect(err).toBeInstanceOf(SnapdirError)
  expect((err as SnapdirError).code).toBe(code)
  expect((err as SnapdirError).message).toMatch(message)
  return err as SnapdirError
}

describe('layer expansion of real tars', () => {
  it('expands tar, tar+gzip and tar+zstd into the tree the directory has, chunked as push chunks it', async () => {
    const tmp = tempDir()
    const src = path.join(tmp, 'src')
    makeSource(src)
    const tar = path.join(tmp, 'layer.tar')
    tarOf(src, tar)
    const gz = compress(tar, 'gzip')
    const zst = compress(tar, 'zstd')

    const store = await openMemory()
    const plain = await expandLayer({ blob: tar, mediaType: TAR, params: DEFAULT_CHUNKER, store })
    const tarBytes = fs.readFileSync(tar)
    expect(plain.diffId).toBe(`sha256:${sha256(tarBytes)}`)
    expect(plain.digest).toBe(plain.diffId)
    expect(plain.stats.tarBytes).toBe(tarBytes.length)
    await expectMatchesManifest(plain.tree, store, src)
    // a valid tree: it survives its own encoding and validation
    expect(treeId(decodeTree(encodeTree(plain.tree), 'expanded'))).toBe(treeId(plain.tree))

    // The same tree and ID as `snapdir id` of the directory: same entries, same chunks, packing included.
    const id = (await snapdirOk(['id', src])).trim()
    expect(treeId(plain.tree)).toBe(id)

    for (const [blob, mediaType] of [[gz, TAR_GZIP], [zst, TAR_ZSTD]] as const) {
      const other = await openMemory()
      const layer = await expandLayer({ blob, mediaType, params: DEFAULT_CHUNKER, store: other, name: path.basename(blob) })
      expect(layer.diffId).toBe(plain.diffId)
      expect(layer.digest).toBe(`sha256:${sha256(fs.readFileSync(blob))}`)
      expect(treeId(layer.tree)).toBe(id)
      expect(layer.stats.chunksWritten).toBe(plain.stats.chunksWritten)
    }

    // A compressed blob typed as plain tar is read for what it is (containerd detects by magic too).
    expect(treeId((await expandLayer({ blob: gz, mediaType: TAR, params: DEFAULT_CHUNKER })).tree)).toBe(id)

    // push of the directory: the large random file has the very chunk IDs the layer gave it
    const storeDir = path.join(tmp, 'store')
    const pushed = (await snapdirOk(['push', '--store', storeDir, src])).trim()
    expect(pushed).toBe(id)
    const fileStore = new FileStore(storeDir)
    await fileStore.open()
    const pushedTree = await readTree(fileStore, pushed)
    const big = (t: Tree): TreeEntry => t.entries.find((e) => e.path.toString() === 'big.bin')!
    expect(big(plain.tree).chunks.length).toBeGreaterThan(3)
    expect(big(plain.tree).chunks).toEqual(big(pushedTree).chunks)
    // and every chunk the layer wrote is one push wrote
    for await (const key of store.list('chunks/')) expect(await fileStore.has(key), key).toBe(true)
    await fileStore.close()
    // expansion writes chunks only, never a tree
    const trees: string[] = []
    for await (const key of store.list('trees/')) trees.push(key)
    expect(trees).toEqual([])
  })

  it('reads GNU-format tars: long names and link targets in L/K records, base-256 ids', async () => {
    const tmp = tempDir()
    const src = path.join(tmp, 'src')
    makeSource(src)
    const tar = path.join(tmp, 'gnu.tar')
    run('tar', ['--format=gnu', '-C', src, '-cf', tar, '.'])
    const store = await openMemory()
    const layer = await expandLayer({ blob: tar, mediaType: TAR, params: DEFAULT_CHUNKER, store })
    await expectMatchesManifest(layer.tree, store, src, { seconds: 'floor', noXattrs: true })
  })

  it('keeps whiteouts as plain empty files and tells what they hide', async () => {
    const tmp = tempDir()
    const src = path.join(tmp, 'src')
    makeSource(src)
    const tar = path.join(tmp, 'layer.tar')
    tarOf(src, tar)
    const { tree } = await expandLayer({ blob: tar, mediaType: TAR, params: DEFAULT_CHUNKER })
    const at = (p: string): TreeEntry | undefined => tree.entries.find((e) => e.path.toString() === p)
    expect(at('.wh.gone')).toMatchObject({ type: 'file', size: 0, chunks: [] })
    expect(at('opq/.wh..wh..opq')).toMatchObject({ type: 'file', size: 0 })
    expect(at('opq/keep')?.type).toBe('dir')
    expect(whiteoutOf(Buffer.from('.wh.gone'))).toEqual({ kind: 'whiteout', hides: Buffer.from('gone') })
    expect(whiteoutOf(Buffer.from('a/b/.wh.c d'))).toEqual({ kind: 'whiteout', hides: Buffer.from('a/b/c d') })
    expect(whiteoutOf(Buffer.from('opq/.wh..wh..opq'))).toEqual({ kind: 'opaque', dir: Buffer.from('opq') })
    expect(whiteoutOf(Buffer.from('.wh..wh..opq'))).toEqual({ kind: 'opaque', dir: Buffer.alloc(0) })
    expect(whiteoutOf(Buffer.from('x/.wh..wh.plnk'))).toEqual({ kind: 'meta' })
    expect(whiteoutOf(Buffer.from('x/.wh.'))).toEqual({ kind: 'meta' })
    expect(whiteoutOf(Buffer.from('x/a.wh.b'))).toBeNull()
    expect(whiteoutOf(Buffer.from('.wh'))).toBeNull()
  })

  it('gives files the same chunks in layers whose bytes differ (order, owners, times)', async () => {
    const tmp = tempDir()
    const src = path.join(tmp, 'src')
    makeSource(src)
    const a = path.join(tmp, 'a.tar')
    const b = path.join(tmp, 'b.tar')
    tarOf(src, a)
    tarOf(src, b, ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=2001-02-03 04:05:06'])
    const la = await expandLayer({ blob: a, mediaType: TAR, params: DEFAULT_CHUNKER })
    const lb = await expandLayer({ blob: compress(b, 'gzip'), mediaType: TAR_GZIP, params: DEFAULT_CHUNKER })
    expect(la.diffId).not.toBe(lb.diffId)
    expect(treeId(la.tree)).not.toBe(treeId(lb.tree))
    const files = (l: ExpandedLayer): string[] =>
      l.tree.entries.filter((e) => e.type === 'file').map((e) => `${e.path.toString('hex')} ${e.inline?.toString('hex') ?? ''} ${JSON.stringify(e.chunks)}`)
    expect(files(lb)).toEqual(files(la))
  })
})

describe('layer expansion of an image umoci builds (Go archive/tar)', () => {
  it('expands its layer to the directory it packed, with the digest and diff_id the image names', async () => {
    const tmp = tempDir()
    const src = path.join(tmp, 'src')
    makeSource(src)
    const layout = path.join(tmp, 'layout')
    const bundle = path.join(tmp, 'bundle')
    run('umoci', ['init', '--layout', layout])
    run('umoci', ['new', '--image', `${layout}:t`])
    run('umoci', ['unpack', '--image', `${layout}:t`, bundle])
    const rootfs = path.join(bundle, 'rootfs')
    run('cp', ['-a', `${src}/.`, rootfs])
    // umoci refuses to pack whiteout-named files that are not its own
    fs.rmSync(path.join(rootfs, '.wh.gone'))
    fs.rmSync(path.join(rootfs, 'opq', '.wh..wh..opq'))
    for (const dir of [rootfs, path.join(rootfs, 'opq')]) fs.utimesSync(dir, 1_700_000_000, 1_700_000_000)
    run('umoci', ['repack', '--image', `${layout}:t`, bundle])

    const blob = (digest: string): string => path.join(layout, 'blobs', ...digest.split(':'))
    const json = (digest: string): Record<string, unknown> => JSON.parse(fs.readFileSync(blob(digest), 'utf8')) as Record<string, unknown>
    const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
    const manifestDoc = json(index.manifests[0]!.digest) as { config: { digest: string }; layers: Array<{ digest: string; mediaType: string }> }
    const config = json(manifestDoc.config.digest) as { rootfs: { diff_ids: string[] } }
    expect(manifestDoc.layers).toHaveLength(1)
    const desc = manifestDoc.layers[0]!
    const store = await openMemory()
    const layer = await expandLayer({ blob: blob(desc.digest), mediaType: desc.mediaType, params: DEFAULT_CHUNKER, store, name: desc.digest })
    expect(layer.digest).toBe(desc.digest)
    expect(layer.diffId).toBe(config.rootfs.diff_ids[0])
    // Go's tar writer rounds to whole seconds unless asked for PAX: compare at that precision
    await expectMatchesManifest(layer.tree, store, rootfs, { seconds: 'round' })

    // every file has the chunks GNU tar's layer of the same directory gives it
    const tar = path.join(tmp, 'gnu.tar')
    tarOf(rootfs, tar)
    const gnu = await expandLayer({ blob: tar, mediaType: TAR, params: DEFAULT_CHUNKER })
    const files = (t: Tree): string[] =>
      t.entries.filter((e) => e.type === 'file').map((e) => `${e.path.toString('hex')} ${e.inline?.toString('hex') ?? ''} ${JSON.stringify(e.chunks)}`)
    expect(files(layer.tree)).toEqual(files(gnu.tree))
  })
})

// Crafted tars: python's tarfile writes what GNU tar would refuse to.
const CRAFT = String.raw`
import io, sys, tarfile
out, spec = sys.argv[1], eval(sys.argv[2])
with tarfile.open(out, 'w', format=tarfile.PAX_FORMAT) as t:
    for kind, name, arg in spec:
        i = tarfile.TarInfo(name)
        i.mtime = 1700000000
        data = None
        if kind == 'file':
            data = arg.encode(); i.size = len(data); i.mode = 0o644
        elif kind == 'dir':
            i.type = tarfile.DIRTYPE; i.mode = 0o755
        elif kind == 'symlink':
            i.type = tarfile.SYMTYPE; i.linkname = arg
        elif kind == 'hardlink':
            i.type = tarfile.LNKTYPE; i.linkname = arg
        t.addfile(i, io.BytesIO(data) if data is not None else None)
`

function craft(dir: string, name: string, spec: Array<[string, string, string]>): string {
  const out = path.join(dir, name)
  run('python3', ['-c', CRAFT, out, JSON.stringify(spec)])
  return out
}

describe('layer expansion of hostile and broken layers', () => {
  const expand = (blob: string, mediaType = TAR, store?: Store): Promise<ExpandedLayer> =>
    expandLayer({ blob, mediaType, params: DEFAULT_CHUNKER, ...(store ? { store } : {}), name: path.basename(blob) })
  const paths = (l: ExpandedLayer): string[] => l.tree.entries.map((e) => e.path.toString())

  it("refuses '..' components and hardlinks out of the layer or to what is not before them", async () => {
    const tmp = tempDir()
    await expectFailure(expand(craft(tmp, 'dotdot.tar', [['file', '../evil', 'x']])), 'ERR_UNSAFE_PATH', /dotdot\.tar: entry '\.\.\/evil' has a '\.\.' component/)
    await expectFailure(expand(craft(tmp, 'deep.tar', [['dir', 'a', ''], ['file', 'a/../../evil', 'x']])), 'ERR_UNSAFE_PATH', /'\.\.' component/)
    await expectFailure(expand(craft(tmp, 'hl-out.tar', [['file', 'x', 'x'], ['hardlink', 'h', '../x']])), 'ERR_UNSAFE_PATH', /hl-out\.tar: hardlink 'h' target '\.\.\/x' has a '\.\.' component/)
    await expectFailure(expand(craft(tmp, 'hl-missing.tar', [['hardlink', 'h', 'nope']])), 'ERR_UNSAFE_PATH', /hardlink 'h' names 'nope', which is not earlier in the layer/)
    await expectFailure(expand(craft(tmp, 'hl-later.tar', [['hardlink', 'h', 'later'], ['file', 'later', 'x']])), 'ERR_UNSAFE_PATH', /not earlier in the layer/)
    await expectFailure(expand(craft(tmp, 'hl-dir.tar', [['dir', 'd', ''], ['hardlink', 'h', 'd']])), 'ERR_UNSAFE_PATH', /names directory 'd'/)
  })

  it('never goes through a symlink, keeps escaping symlinks as symlinks, strips leading slashes', async () => {
    const tmp = tempDir()
    await expectFailure(
      expand(craft(tmp, 'through.tar', [['symlink', 'etc', '/etc'], ['file', 'etc/passwd', 'root::0:0::/:/bin/sh']])),
      'ERR_UNSAFE_PATH', /through\.tar: 'etc\/passwd' lies under 'etc', which is a symlink, not a directory/)
    await expectFailure(expand(craft(tmp, 'under-file.tar', [['file', 'f', 'x'], ['file', 'f/g', 'y']])), 'ERR_UNSAFE_PATH', /which is a file/)

    const store = await openMemory()
    const layer = await expand(craft(tmp, 'ok.tar', [
      ['symlink', 'out', '../../../../etc/shadow'],
      ['file', '/abs/path', 'absolute'],
      ['file', '//./x/.//y', 'messy'],
      ['hardlink', 'h', '/abs/path'],
    ]), TAR, store)
    expect(paths(layer)).toEqual(['', 'abs', 'abs/path', 'h', 'out', 'x', 'x/y'])
    const at = (p: string): TreeEntry => layer.tree.entries.find((e) => e.path.toString() === p)!
    expect(at('out')).toMatchObject({ type: 'symlink', target: Buffer.from('../../../../etc/shadow') })
    expect(at('abs')).toMatchObject({ type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeSec: 0 })
    expect(at('h')).toMatchObject({ type: 'hardlink', target: Buffer.from('abs/path') })
    expect((await content(store, at('x/y'))).toString()).toBe('messy')
  })

  it('applies PAX global headers to the entries after them', async () => {
    const tmp = tempDir()
    const out = path.join(tmp, 'global.tar')
    run('python3', ['-c', String.raw`
import io, sys, tarfile
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT, pax_headers={'uid': '4242', 'comment': 'git archive writes one'}) as t:
    i = tarfile.TarInfo('plain'); i.mtime = 1700000000; i.uid = 7
    t.addfile(i, io.BytesIO(b''))
    i = tarfile.TarInfo('own'); i.mtime = 1700000000; i.uid = 7; i.pax_headers = {'uid': '99', 'mtime': '1700000000.5'}
    t.addfile(i, io.BytesIO(b''))
`, out])
    const layer = await expand(out)
    const at = (p: string): TreeEntry => layer.tree.entries.find((e) => e.path.toString() === p)!
    expect(at('plain')).toMatchObject({ uid: 4242, mtimeSec: 1700000000, mtimeNsec: 0 })
    expect(at('own')).toMatchObject({ uid: 99, mtimeSec: 1700000000, mtimeNsec: 500_000_000 })
  })

  it('applies later entries over earlier ones as extraction does', async () => {
    const tmp = tempDir()
    const store = await openMemory()
    const layer = await expand(craft(tmp, 'dups.tar', [
      ['file', 'f', 'first'],
      ['hardlink', 'keeps-old', 'f'],
      ['file', 'f', 'second'],
      ['dir', 'd', ''],
      ['file', 'd/child', 'gone with d'],
      ['file', 'd', 'd is a file now'],
      ['hardlink', 'z-first', 'f'],
    ]), TAR, store)
    expect(paths(layer)).toEqual(['', 'd', 'f', 'keeps-old', 'z-first'])
    const at = (p: string): TreeEntry => layer.tree.entries.find((e) => e.path.toString() === p)!
    expect((await content(store, at('f'))).toString()).toBe('second')
    // the hardlink made before f was replaced still has the old inode
    expect(at('keeps-old').type).toBe('file')
    expect((await content(store, at('keeps-old'))).toString()).toBe('first')
    expect(at('z-first')).toMatchObject({ type: 'hardlink', target: Buffer.from('f') })
    expect(at('d').type).toBe('file')
  })

  it('names the blob on corrupt gzip, truncated tar, gzip or zstd, and unknown media types; writes no tree', async () => {
    const tmp = tempDir()
    const src = path.join(tmp, 'src')
    fs.mkdirSync(src)
    fs.writeFileSync(path.join(src, 'big'), Buffer.alloc(3 * 1024 * 1024, 'abcdefgh'))
    fs.writeFileSync(path.join(src, 'small'), 'small\n')
    const tar = path.join(tmp, 'good.tar')
    tarOf(src, tar)
    const tarBytes = fs.readFileSync(tar)
    const gz = fs.readFileSync(compress(tar, 'gzip'))
    const zst = fs.readFileSync(compress(tar, 'zstd'))
    const write = (name: string, data: Buffer): string => {
      const p = path.join(tmp, name)
      fs.writeFileSync(p, data)
      return p
    }
    const store = await openMemory()

    const corrupt = Buffer.from(gz)
    for (let i = 20; i < corrupt.length - 20; i += 7) corrupt[i]! ^= 0x55
    await expectFailure(expand(write('corrupt.tar.gz', corrupt), TAR_GZIP, store), 'ERR_SOURCE', /^layer corrupt\.tar\.gz: the gzip stream is corrupt/)
    await expectFailure(expand(write('cut.tar.gz', gz.subarray(0, gz.length >> 1)), TAR_GZIP, store), 'ERR_SOURCE', /^layer cut\.tar\.gz: the gzip stream is truncated/)
    await expectFailure(expand(write('cut.tar.zst', zst.subarray(0, zst.length >> 1)), TAR_ZSTD, store), 'ERR_SOURCE', /^layer cut\.tar\.zst: the zstd stream is truncated/)
    await expectFailure(expand(write('cut.tar', tarBytes.subarray(0, 1024 * 1024 + 100)), TAR, store), 'ERR_SOURCE', /^layer cut\.tar: the tar is truncated/)
    // cut right after the last entry's data: every entry whole, the end-of-archive blocks missing
    const crafted = fs.readFileSync(craft(tmp, 'one.tar', [['file', 'a', 'x'.repeat(600)]]))
    await expectFailure(expand(write('no-end.tar', crafted.subarray(0, 512 * 3)), TAR, store), 'ERR_SOURCE', /^layer no-end\.tar: the tar is truncated/)
    await expectFailure(expand(write('garbage.tar', Buffer.alloc(4096, 'garbage!')), TAR, store), 'ERR_SOURCE', /^layer garbage\.tar: the tar is corrupt/)
    await expectFailure(expand(write('plain-as-gzip', tarBytes), TAR_GZIP, store), 'ERR_SOURCE', /is not gzip data, although its media type .*tar\+gzip says so/)
    await expectFailure(expand(tar, 'application/vnd.oci.image.config.v1+json', store), 'ERR_SOURCE', /media type 'application\/vnd\.oci\.image\.config\.v1\+json' is not a tar layer/)
    await expectFailure(expand(path.join(tmp, 'missing.tar'), TAR, store), 'ERR_SOURCE', /cannot read .*missing\.tar/)
    const trees: string[] = []
    for await (const key of store.list('trees/')) trees.push(key)
    expect(trees).toEqual([])
    // the good one still expands
    expect((await expand(tar)).tree.entries.map((e) => e.path.toString())).toEqual(['', 'big', 'small'])
  })

  it('holds a bounded amount of memory on a zstd bomb, and stops when aborted', async () => {
    const tmp = tempDir()
    const src = path.join(tmp, 'src')
    fs.mkdirSync(src)
    fs.writeFileSync(path.join(src, 'zeros'), '')
    fs.truncateSync(path.join(src, 'zeros'), 512 * 1024 * 1024)
    const tar = path.join(tmp, 'bomb.tar')
    tarOf(src, tar)
    const zst = compress(tar, 'zstd')
    fs.rmSync(tar)
    expect(fs.statSync(zst).size).toBeLessThan(1024 * 1024)
    // 512 MiB out of well under 1 MiB in: a decompressor that emits all the output of an input chunk
    // at once would hold it all
    const base = process.memoryUsage().rss
    let peak = base
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10)
    try {
      const layer = await expand(zst, TAR_ZSTD)
      expect(layer.stats.tarBytes).toBeGreaterThan(512 * 1024 * 1024)
      const zeros = layer.tree.entries.find((e) => e.path.toString() === 'zeros')!
      // runs of zero chunks collapse into counted refs, as push writes them
      expect(zeros.chunks.length).toBeLessThan(5)
    } finally {
      clearInterval(timer)
    }
    expect(peak - base).toBeLessThan(256 * 1024 * 1024)

    const abort = new AbortController()
    setTimeout(() => abort.abort(), 100)
    await expectFailure(
      expandLayer({ blob: zst, mediaType: TAR_ZSTD, params: DEFAULT_CHUNKER, signal: abort.signal, name: 'bomb' }),
      'ERR_ABORTED', /^layer bomb: expansion aborted/)
  })

  it('passes a store failure through, with no write left running', async () => {
    const tmp = tempDir()
    const src = path.join(tmp, 'src')
    makeSource(src)
    const tar = path.join(tmp, 'layer.tar')
    tarOf(src, tar)
    class FailingStore extends MemoryStore {
      attempts = 0
      settled = 0
      override async put(key: string, data: Buffer): Promise<void> {
        try {
          // the first writes are slow, the sixth fails at once: the failure is known while they still run
          if (++this.attempts > 5) throw new SnapdirError('ERR_STORE_IO', `${this.url}: disk full`)
          await new Promise((r) => setTimeout(r, 300))
          return await super.put(key, data)
        } finally {
          this.settled++
        }
      }
    }
    const store = new FailingStore()
    await store.open({ create: true })
    await expectFailure(expand(tar, TAR, store), 'ERR_STORE_IO', /disk full/)
    // every write that was started has ended by the time the expansion reports the failure
    expect(store.attempts).toBeGreaterThan(5)
    expect(store.settled).toBe(store.attempts)
  })

  it('knows the compression of every layer media type', () => {
    expect(layerCompression('application/vnd.oci.image.layer.v1.tar')).toBe('none')
    expect(layerCompression('application/vnd.oci.image.layer.v1.tar+gzip')).toBe('gzip')
    expect(layerCompression('application/vnd.oci.image.layer.nondistributable.v1.tar+zstd')).toBe('zstd')
    expect(layerCompression('application/vnd.docker.image.rootfs.diff.tar.gzip')).toBe('gzip')
    expect(layerCompression('application/vnd.docker.image.rootfs.diff.tar')).toBe('none')
    expect(layerCompression('application/vnd.oci.image.manifest.v1+json')).toBeNull()
    expect(layerCompression('application/x-tar')).toBeNull()
  })
})
