// snapdir stats: three umoci images in one store, two sharing a base layer and a third whose only
// layer is that base rebuilt (other mtimes, one file edited in the middle), judged against figures
// computed here without snapdir's code: layer sizes from the manifests, file contents from the
// layer tars (python's tarfile), object sizes and raw lengths from the store's files.
import { spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DedupStats } from '../../src/oci/dedup-stats.js'
import { bytes, listFiles, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { blobFile, editFirstManifest, firstManifest, requireTools, sha256, tool } from '../helpers/oci.js'

requireTools('umoci', 'python3', 'gzip')

const BIG = 1_000_000
// the store's default: files up to this size live in the tree (docs/FORMAT.md)
const INLINE_MAX = 4096
let shared = ''
let store = ''
const layouts: Record<'a' | 'b' | 'c', string> = { a: '', b: '', c: '' }
const ids: Record<'a' | 'b' | 'c', string> = { a: '', b: '', c: '' }

/**
 * The base's files: one large file (cut on its own), files packed together (4 KiB to 64 KiB), files
 * inline in the tree (up to 4 KiB), a hardlink; all stamped with `mtime`. `edit` changes 100 bytes in
 * the middle of the large file.
 */
function writeBase(rootfs: string, mtime: number, edit: boolean): void {
  const lib = path.join(rootfs, 'usr', 'lib')
  mkdirSync(lib, { recursive: true })
  const big = Buffer.concat([bytes('big', BIG / 2), Buffer.from('text that compresses well\n'.repeat(BIG / 2 / 26 + 1)).subarray(0, BIG / 2)])
  if (edit) bytes('edit', 100).copy(big, BIG / 2 - 50)
  writeFileSync(path.join(lib, 'big.so'), big)
  for (let i = 0; i < 40; i++) writeFileSync(path.join(lib, `packed-${i}`), bytes(`packed-${i}`, 5000 + i * 1000))
  for (let i = 0; i < 20; i++) writeFileSync(path.join(lib, `inline-${i}`), `small file ${i}\n`.repeat(i + 1))
  tool('ln', [path.join(lib, 'packed-0'), path.join(lib, 'packed-0-again')])
  for (const name of readdirSync(lib)) utimesSync(path.join(lib, name), mtime, mtime)
}

/** A layout with one image, tag `tag`, whose first layer is the base; `build` adds layers. */
function buildImage(layout: string, bundle: string, tag: string, addLayers: (rootfs: string) => void): void {
  tool('umoci', ['unpack', '--image', `${layout}:base`, bundle])
  addLayers(path.join(bundle, 'rootfs'))
  tool('umoci', ['repack', '--image', `${layout}:${tag}`, bundle])
  tool('umoci', ['rm', '--image', `${layout}:base`])
  tool('umoci', ['gc', '--layout', layout])
}

beforeAll(async () => {
  shared = mkdtempSync(path.join(os.tmpdir(), 'snapdir-stats-'))
  const at = (name: string): string => path.join(shared, name)
  // the shared base, then a and b on top of copies of it, each with a layer of its own
  tool('umoci', ['init', '--layout', at('base')])
  tool('umoci', ['new', '--image', `${at('base')}:base`])
  tool('umoci', ['unpack', '--image', `${at('base')}:base`, at('base-bundle')])
  writeBase(path.join(at('base-bundle'), 'rootfs'), 1_600_000_000, false)
  tool('umoci', ['repack', '--image', `${at('base')}:base`, at('base-bundle')])
  for (const tag of ['a', 'b'] as const) {
    layouts[tag] = at(tag)
    cpSync(at('base'), layouts[tag], { recursive: true })
    buildImage(layouts[tag], at(`${tag}-bundle`), tag, (rootfs) => {
      mkdirSync(path.join(rootfs, 'app'))
      writeFileSync(path.join(rootfs, 'app', 'main'), bytes(`app-${tag}`, 200_000))
      // the same file in both images' own layers: file level counts it once, layer level twice
      writeFileSync(path.join(rootfs, 'app', 'common'), bytes('common', 30_000))
    })
  }
  // c: the base rebuilt from the same files, other mtimes, one edit in the large file
  layouts.c = at('c')
  tool('umoci', ['init', '--layout', layouts.c])
  tool('umoci', ['new', '--image', `${layouts.c}:base`])
  buildImage(layouts.c, at('c-bundle'), 'c', (rootfs) => writeBase(rootfs, 1_700_000_000, true))

  store = at('store')
  for (const tag of ['a', 'b', 'c'] as const) ids[tag] = (await snapdirOk(['push', '--store', store, '--name', `image-${tag}`, layouts[tag]])).trim()
})

afterAll(() => {
  if (shared) rmSync(shared, { recursive: true, force: true })
})

interface Layer {
  digest: string
  size: number
  diffId: string
  blob: string
}

function layersOf(layout: string): Layer[] {
  const { manifest } = firstManifest(layout)
  const config = JSON.parse(readFileSync(blobFile(layout, manifest.config.digest), 'utf8')) as { rootfs: { diff_ids: string[] } }
  return manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, diffId: config.rootfs.diff_ids[i]!, blob: blobFile(layout, l.digest) }))
}

/** Each distinct layer (by diff_id) read with python's tarfile: its regular files' bytes, and the distinct contents of all. */
function tarContents(layers: Layer[]): { layerBytes: number; files: number; distinctFiles: number; distinctBytes: number; distinctSmallBytes: number } {
  const distinct = [...new Map(layers.map((l) => [l.diffId, l.blob])).values()]
  const script = [
    'import hashlib, json, sys, tarfile',
    'seen = {}; layer_bytes = 0; files = 0',
    'for blob in sys.argv[1:]:',
    '    with tarfile.open(blob, "r:*") as t:',
    '        for m in t:',
    '            if not m.isreg(): continue',  // hardlinks (LNKTYPE) are not isreg: each inode once
    '            data = t.extractfile(m).read()',
    '            layer_bytes += len(data); files += 1',
    '            seen[hashlib.sha256(data).hexdigest()] = len(data)',
    'print(json.dumps({"layerBytes": layer_bytes, "files": files, "distinctFiles": len(seen), "distinctBytes": sum(seen.values()),',
    `  "distinctSmallBytes": sum(n for n in seen.values() if n <= ${INLINE_MAX})}))`,
  ].join('\n')
  return JSON.parse(tool('python3', ['-c', script, ...distinct])) as ReturnType<typeof tarContents>
}

/** Every object file under store/<dir>: its size and the raw length its header records. */
function storeObjects(dir: string): { count: number; stored: number; raw: number } {
  const root = path.join(store, dir)
  const names = listFiles(root).filter((f) => !f.includes('.tmp-'))
  let stored = 0
  let raw = 0
  for (const name of names) {
    const data = readFileSync(path.join(root, name))
    expect(data.subarray(0, 4).toString()).toBe('SDO1')
    stored += data.length
    raw += Number(data.readBigUInt64LE(8))
  }
  return { count: names.length, stored, raw }
}

async function statsJson(args: string[]): Promise<DedupStats> {
  return JSON.parse(await snapdirOk(['stats', '--json', '--store', store, ...args])) as DedupStats
}

describe('snapdir stats', () => {
  it('counts every image push by default, each level checked against the layers themselves', async () => {
    const s = await statsJson([])
    const all = [...layersOf(layouts.a), ...layersOf(layouts.b), ...layersOf(layouts.c)]
    expect(s.images.map((i) => [i.name, i.ref, i.id, i.layers])).toEqual([
      ['image-a', 'a', ids.a, 2],
      ['image-b', 'b', ids.b, 2],
      ['image-c', 'c', ids.c, 1],
    ])
    for (const [i, tag] of (['a', 'b', 'c'] as const).entries()) {
      const layers = layersOf(layouts[tag])
      expect(s.images[i]!.layerBlobBytes).toBe(layers.reduce((a, l) => a + l.size, 0))
      expect(s.images[i]!.contentBytes).toBe(tarContents(layers).layerBytes)
    }

    // registry: the shared base blob once
    const blobs = new Map(all.map((l) => [l.digest, l.size]))
    expect(blobs.size).toBe(4)
    expect(s.registry).toEqual({ layers: 4, bytes: [...blobs.values()].reduce((a, b) => a + b, 0) })

    // whole layer: 5 layers used, 4 distinct; c's rebuilt base is another layer
    const tars = tarContents(all)
    expect(s.wholeLayer).toMatchObject({ layers: 4, files: tars.files, bytes: tars.layerBytes })

    // whole file: the rebuilt base's unchanged files and the common app file count once
    // format 2 trees hold no file content: small files are packed into chunks like the rest
    expect(tars.distinctSmallBytes).toBeGreaterThan(0)
    expect(s.wholeFile).toMatchObject({ files: tars.distinctFiles, bytes: tars.distinctBytes, inlineBytes: 0 })
    expect(s.wholeFile.bytes).toBeLessThan(s.wholeLayer.bytes - BIG / 2)

    // chunk: the edited large file shares all its chunks but those around the edit
    expect(s.chunk.rawBytes).toBeLessThan(s.wholeFile.bytes - BIG / 2)
    // every byte of a chunk belongs to a file: never more than the distinct chunked files hold
    expect(s.chunk.rawBytes).toBeLessThanOrEqual(s.wholeFile.bytes - s.wholeFile.inlineBytes)
    expect(s.chunk.trees).toBe(4)

    // the store holds exactly the layers' objects and the layouts', nothing counted twice or missed
    const chunks = storeObjects('chunks')
    const trees = storeObjects('trees')
    const parts = storeObjects('tree-parts')
    // (the layer blobs umoci's pgzip wrote are recipes: their tar framing is chunks of its own)
    expect(s.blobs.recipes).toBe(storeObjects('recipes').count)
    expect(s.blobs.raw).toEqual([])
    expect(s.chunk.chunks + s.bundles.chunks + s.blobs.framingChunks).toBe(chunks.count)
    expect(s.chunk.chunkStoredBytes + s.bundles.chunkStoredBytes + s.blobs.framingStoredBytes).toBe(chunks.stored)
    expect(s.chunk.trees + s.bundles.trees).toBe(trees.count)
    // a tree's stored bytes are its root's and its parts' (format 2), each part counted once
    expect(parts.count).toBeGreaterThanOrEqual(trees.count)
    expect(s.chunk.treeStoredBytes + s.bundles.treeStoredBytes).toBe(trees.stored + parts.stored)
    expect(s.chunk.storedBytes).toBe(s.chunk.chunkStoredBytes + s.chunk.treeStoredBytes)
    // a chunk's length is the furthest byte a file reads of it: checked against the headers
    expect(s.chunk.rawBytes + s.bundles.chunkRawBytes + s.blobs.framingRawBytes).toBe(chunks.raw)

    // the stored estimates shrink level by level, and each file's shares cover every chunk it uses
    expect(s.wholeLayer.storedEstimate).toBeGreaterThan(s.wholeFile.storedEstimate)
    expect(s.wholeFile.storedEstimate).toBeGreaterThanOrEqual(s.chunk.chunkStoredBytes)
  })

  it('counts only the snapshots given, and the shared base once', async () => {
    const s = await statsJson([ids.a, ids.b, ids.a])
    expect(s.images.map((i) => i.id)).toEqual([ids.a, ids.b])
    const layers = [...layersOf(layouts.a), ...layersOf(layouts.b)]
    expect(layersOf(layouts.a)[0]!.digest).toBe(layersOf(layouts.b)[0]!.digest)
    expect(s.registry.layers).toBe(3)
    expect(s.registry.bytes).toBe([...new Map(layers.map((l) => [l.digest, l.size])).values()].reduce((a, b) => a + b, 0))
    expect(s.wholeLayer.layers).toBe(3)
    expect(s.wholeLayer.bytes).toBe(tarContents(layers).layerBytes)
    const alone = await statsJson([ids.a])
    expect(alone.wholeLayer.layers).toBe(2)
    expect(s.wholeLayer.bytes).toBe(alone.wholeLayer.bytes + tarContents(layersOf(layouts.b).slice(1)).layerBytes)
  })

  it('counts a recompressed layer (same tar, other blob) twice in the registry and once at every other level', async () => {
    const other = path.join(tempDir(), 'a-recompressed')
    cpSync(layouts.a, other, { recursive: true })
    const base = firstManifest(other).manifest.layers[0]!
    const data = Buffer.from(tool('sh', ['-c', `gzip -dc '${blobFile(other, base.digest)}' | gzip -1 -n | base64 -w0`]), 'base64')
    const digest = `sha256:${sha256(data)}`
    expect(digest).not.toBe(base.digest)
    writeFileSync(blobFile(other, digest), data)
    editFirstManifest(other, (m) => (m.layers[0] = { ...base, digest, size: data.length }))
    const two = path.join(tempDir(), 'store')
    const idA = (await snapdirOk(['push', '--store', two, layouts.a])).trim()
    const idOther = (await snapdirOk(['push', '--store', two, other])).trim()
    const s = JSON.parse(await snapdirOk(['stats', '--json', '--store', two])) as DedupStats
    const alone = JSON.parse(await snapdirOk(['stats', '--json', '--store', two, idA])) as DedupStats
    expect(s.images.map((i) => i.id)).toEqual([idA, idOther])
    expect(s.registry).toEqual({ layers: 3, bytes: alone.registry.bytes + data.length })
    expect(s.wholeLayer).toEqual(alone.wholeLayer)
    expect(s.wholeFile).toEqual(alone.wholeFile)
    expect(s.chunk).toEqual(alone.chunk)
  })

  it('prints a table with every level and its ratio to the registry', async () => {
    const s = await statsJson([])
    const text = await snapdirOk(['stats', '--store', store])
    const n = (x: number): string => x.toLocaleString('en-US')
    const line = (start: string): string => text.split('\n').find((l) => l.startsWith(start)) ?? ''
    expect(line('registry')).toContain(n(s.registry.bytes))
    expect(line('registry')).toMatch(/1\.000$/)
    expect(line('whole layer')).toContain(`~${n(s.wholeLayer.storedEstimate)}`)
    expect(line('whole file')).toContain(`${n(s.wholeFile.files)} files`)
    expect(line('chunk (snapdir)')).toContain(n(s.chunk.storedBytes))
    expect(line('chunk (snapdir)')).toMatch(new RegExp(`${(s.chunk.storedBytes / s.registry.bytes).toFixed(3).replace('.', '\\.')}$`))
    for (const tag of ['a', 'b', 'c']) expect(line(`image-${tag} ${tag}`)).toContain(ids[tag as 'a'].slice(0, 16))
  })

  it('refuses a snapshot that is not an image, and an unknown or malformed ID, naming it', async () => {
    const dirStore = path.join(tempDir(), 'store')
    const dir = tempDir()
    writeFileSync(path.join(dir, 'file'), 'not an image\n')
    const dirId = (await snapdirOk(['push', '--store', dirStore, dir])).trim()

    const notImage = await snapdir(['stats', '--store', dirStore, dirId])
    expect(notImage.status).toBe(1)
    expect(notImage.stdout).toBe('')
    expect(notImage.stderr.trim().split('\n')).toHaveLength(1)
    expect(notImage.stderr).toContain(dirId.slice(0, 16))
    expect(notImage.stderr).toContain('not an image: neither an OCI image layout')

    // a store with no image push at all, asked for its default
    const none = await snapdir(['stats', '--store', dirStore])
    expect(none.status).toBe(1)
    expect(none.stderr).toContain('records no push of an image layout')

    const unknown = 'ab'.repeat(32)
    const missing = await snapdir(['stats', '--store', store, ids.a, unknown])
    expect(missing.status).toBe(1)
    expect(missing.stdout).toBe('')
    expect(missing.stderr).toContain(`snapshot ${unknown} is not in`)

    // what is not hex digits is an image name: one the store lacks, or one that is no name, exit 2
    const unnamed = await snapdir(['stats', '--store', store, 'xyz'])
    expect(unnamed.status).toBe(2)
    expect(unnamed.stderr).toBe(`snapdir: no image xyz:latest in ${store} (snapdir revisions lists the names it records)\n`)
    const malformed = await snapdir(['stats', '--store', store, 'x/Y!'])
    expect(malformed.status).toBe(2)
    expect(malformed.stderr).toContain('malformed image name "x/Y!"')
  })

  it('refuses a store that does not exist, or a store URL it cannot read', async () => {
    const absent = path.join(tempDir(), 'no-such-store')
    const r = await snapdir(['stats', '--store', absent])
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(absent)
    expect(statSync(path.dirname(absent)).isDirectory()).toBe(true)
    expect(spawnSync('test', ['-e', absent]).status, 'stats must not create the store').not.toBe(0)

    const bad = await snapdir(['stats', '--store', 'ftp://host/x'])
    expect(bad.status).toBe(2)
    expect(bad.stderr).toContain("unsupported store URL 'ftp://host/x'")
  })
})
