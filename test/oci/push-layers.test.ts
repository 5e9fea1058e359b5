// Push of an OCI image layout stores each layer expanded: a tree per layer (its files cut into chunks
// by the store's rules) and refs/layers/<diff_id hex> naming it. Judged against the layer tars
// themselves (GNU tar lists and extracts them), and by what a second push writes: nothing for the
// same image, only the new layer for an image sharing the base, (almost) no chunks for a base rebuilt
// with the same files, and nothing referencing a layer whose diff_id the config gets wrong.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { toHex } from '../../src/format/id.js'
import { printablePath } from '../../src/format/tree-paths.js'
import type { TreeEntry } from '../../src/format/tree.js'
import { FileStore } from '../../src/store/file-store.js'
import { getChunk } from '../../src/store/chunks.js'
import { readTree } from '../../src/store/objects.js'
import { countObjects, killWhen, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { blobFile, buildUmociImage, editFirstManifest, firstManifest, requireTools, sha256, tool } from '../helpers/oci.js'

requireTools('umoci', 'setfattr', 'gzip')

interface LayerRefJson {
  diffId: string
  digests: string[]
  mediaType: string
  tree: string
}
interface PushJson {
  id: string
  layers: { layers: number; expanded: number; skipped: number; chunksWritten: number; bytesWritten: number }
  phases: Record<string, number>
  revision: { image?: { layers: Array<{ digest: string; diffId: string; tree: string }> } }
}

let shared = ''
let image = ''

beforeAll(() => {
  shared = mkdtempSync(path.join(os.tmpdir(), 'snapdir-push-layers-'))
  image = path.join(shared, 'image')
  buildUmociImage(image, 'v1', path.join(shared, 'bundle'))
})

afterAll(() => {
  if (shared) rmSync(shared, { recursive: true, force: true })
})

function copyOf(layout: string): string {
  const copy = path.join(tempDir(), 'image')
  cpSync(layout, copy, { recursive: true })
  return copy
}

async function pushJson(store: string, layout: string): Promise<PushJson> {
  return JSON.parse(await snapdirOk(['push', '--json', '--store', store, layout])) as PushJson
}

function layerRefs(store: string): Map<string, LayerRefJson> {
  const dir = path.join(store, 'refs', 'layers')
  const out = new Map<string, LayerRefJson>()
  if (!existsSync(dir)) return out
  for (const name of readdirSync(dir)) {
    if (name.includes('.tmp-')) continue
    out.set(name, JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as LayerRefJson)
  }
  return out
}

/** The image config's diff_ids of the first manifest. */
function diffIds(layout: string): string[] {
  const { manifest } = firstManifest(layout)
  const config = JSON.parse(readFileSync(blobFile(layout, manifest.config.digest), 'utf8')) as { rootfs: { diff_ids: string[] } }
  return config.rootfs.diff_ids
}

async function fileContent(store: FileStore, e: TreeEntry): Promise<Buffer> {
  if (e.inline) return e.inline
  const parts: Buffer[] = []
  for (const c of e.chunks) {
    const { raw: chunk } = await getChunk(store, toHex(c.id))
    for (let i = 0; i < c.count; i++) parts.push(chunk.subarray(c.offset, c.offset + c.length))
  }
  return Buffer.concat(parts)
}

/** The layer tree's entries are the tar's members, and each file rebuilt from its chunks is the tar's file. */
async function expectTreeIsLayer(storeDir: string, treeId: string, layerBlob: string): Promise<void> {
  const store = new FileStore(storeDir)
  await store.open()
  const tree = await readTree(store, treeId)
  const listed = tool('tar', ['-tzf', layerBlob])
    .split('\n')
    .filter(Boolean)
    .map((n) => n.replace(/^\.\//, '').replace(/\/$/, ''))
    .filter((n) => n !== '' && n !== '.')
  // a tree names every parent of an entry (docs/FORMAT.md); a layer may leave a parent out
  const withParents = new Set(listed.flatMap((n) => n.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'))))
  const paths = tree.entries.filter((e) => e.path.length > 0).map((e) => printablePath(e.path))
  expect(paths.sort()).toEqual([...withParents].sort())
  const extracted = tempDir()
  tool('tar', ['-xzf', layerBlob, '-C', extracted, '--no-same-owner'])
  let files = 0
  for (const e of tree.entries) {
    if (e.type !== 'file') continue
    files++
    expect(await fileContent(store, e), printablePath(e.path)).toEqual(readFileSync(path.join(extracted, printablePath(e.path))))
  }
  expect(files).toBeGreaterThan(0)
  await store.close()
}

describe('push of an image layout expands its layers', () => {
  it('stores one refs/layers/<diff_id> per layer, naming a tree of exactly the layer, and lists them in the revision', async () => {
    const store = path.join(tempDir(), 'store')
    const out = await pushJson(store, image)
    const { manifest } = firstManifest(image)
    const ids = diffIds(image)
    expect(manifest.layers).toHaveLength(3)
    expect(out.layers).toMatchObject({ layers: 3, expanded: 3, skipped: 0 })
    expect(out.phases).toHaveProperty('layers')
    expect(out.phases).toHaveProperty('layer-refs')
    const refs = layerRefs(store)
    expect([...refs.keys()].sort()).toEqual(ids.map((d) => d.replace('sha256:', '')).sort())
    for (const [i, layer] of manifest.layers.entries()) {
      const ref = refs.get(ids[i]!.replace('sha256:', ''))!
      expect(ref).toMatchObject({ diffId: ids[i], digests: [layer.digest], mediaType: layer.mediaType })
      expect(existsSync(path.join(store, 'trees', ref.tree.slice(0, 2), ref.tree))).toBe(true)
      await expectTreeIsLayer(store, ref.tree, blobFile(image, layer.digest))
      // umoci's gzip layers (klauspost pgzip, 256 KiB blocks) are regenerated by snapdir's pgzip: recipes
      expect(out.revision.image?.layers[i]).toEqual({ digest: layer.digest, diffId: ids[i], tree: ref.tree, recipe: expect.stringMatching(/^[0-9a-f]{64}$/) as unknown })
    }
    // the bundle is still the bundle, whole
    await snapdirOk(['verify', '--store', store, '--id', out.id])
    // and a layer tree is a snapshot like any other
    await snapdirOk(['verify', '--store', store, '--id', out.revision.image!.layers[0]!.tree])
    // a revision with an image field is still listed like any other
    expect(await snapdirOk(['revisions', '--store', store])).toContain(out.id)
  })

  it('expands nothing when the same image is pushed again', async () => {
    const store = path.join(tempDir(), 'store')
    await pushJson(store, image)
    const trees = countObjects(path.join(store, 'trees'))
    const chunks = countObjects(path.join(store, 'chunks'))
    const again = await pushJson(store, image)
    expect(again.layers).toMatchObject({ layers: 3, expanded: 0, skipped: 3, chunksWritten: 0 })
    expect(countObjects(path.join(store, 'trees'))).toBe(trees)
    expect(countObjects(path.join(store, 'chunks'))).toBe(chunks)
    expect(again.revision.image?.layers).toHaveLength(3)
  })

  it('expands only the new layer of an image that shares the base', async () => {
    const store = path.join(tempDir(), 'store')
    await pushJson(store, image)
    const second = copyOf(image)
    const bundle = path.join(tempDir(), 'bundle')
    tool('umoci', ['unpack', '--image', `${second}:v1`, bundle])
    writeFileSync(path.join(bundle, 'rootfs', 'etc', 'second'), 'only in the second image\n')
    tool('umoci', ['repack', '--image', `${second}:v2`, bundle])
    const out = await pushJson(store, second)
    expect(out.layers).toMatchObject({ layers: 4, expanded: 1, skipped: 3 })
    expect(layerRefs(store).size).toBe(4)
  })

  it('adds the digest to the ref of a layer recompressed (same tar, other bytes), writing no chunk', async () => {
    const store = path.join(tempDir(), 'store')
    await pushJson(store, image)
    const other = copyOf(image)
    const base = firstManifest(other).manifest.layers[0]!
    const recompressed = tool('sh', ['-c', `gzip -dc '${blobFile(other, base.digest)}' | gzip -1 -n | base64 -w0`])
    const data = Buffer.from(recompressed, 'base64')
    const digest = `sha256:${sha256(data)}`
    expect(digest).not.toBe(base.digest)
    writeFileSync(blobFile(other, digest), data)
    editFirstManifest(other, (m) => (m.layers[0] = { ...base, digest, size: data.length }))
    const out = await pushJson(store, other)
    expect(out.layers).toMatchObject({ expanded: 1, skipped: 2, chunksWritten: 0 })
    const ref = layerRefs(store).get(diffIds(other)[0]!.replace('sha256:', ''))!
    expect(ref.digests.sort()).toEqual([base.digest, digest].sort())
  })

  it('writes (almost) no chunks for a base layer rebuilt from the same files (other mtimes, so another tar)', async () => {
    const build = (layout: string, bundle: string, mtime: number): void => {
      tool('umoci', ['init', '--layout', layout])
      tool('umoci', ['new', '--image', `${layout}:base`])
      tool('umoci', ['unpack', '--image', `${layout}:base`, bundle])
      const rootfs = path.join(bundle, 'rootfs')
      const seed = Buffer.alloc(2_000_000)
      for (let i = 0; i < seed.length; i += 32) Buffer.from(sha256(String(i)), 'hex').copy(seed, i)
      mkdirSync(path.join(rootfs, 'usr', 'lib'), { recursive: true })
      writeFileSync(path.join(rootfs, 'usr', 'lib', 'big.so'), seed)
      for (let i = 0; i < 60; i++) writeFileSync(path.join(rootfs, 'usr', 'lib', `small-${i}`), seed.subarray(i * 9000, i * 9000 + 5000 + i * 300))
      for (const name of ['big.so', ...Array.from({ length: 60 }, (_, i) => `small-${i}`)]) utimesSync(path.join(rootfs, 'usr', 'lib', name), mtime, mtime)
      tool('umoci', ['repack', '--image', `${layout}:base`, bundle])
    }
    const t = tempDir()
    const store = path.join(t, 'store')
    build(path.join(t, 'a'), path.join(t, 'bundle-a'), 1_600_000_000)
    build(path.join(t, 'b'), path.join(t, 'bundle-b'), 1_700_000_000)
    const a = firstManifest(path.join(t, 'a')).manifest.layers[0]!
    const b = firstManifest(path.join(t, 'b')).manifest.layers[0]!
    expect(b.digest, 'the rebuilt base is another blob').not.toBe(a.digest)
    expect(diffIds(path.join(t, 'b'))[0]).not.toBe(diffIds(path.join(t, 'a'))[0])
    const first = await pushJson(store, path.join(t, 'a'))
    expect(first.layers.chunksWritten).toBeGreaterThanOrEqual(10)
    const second = await pushJson(store, path.join(t, 'b'))
    expect(second.layers).toMatchObject({ expanded: 1, skipped: 0 })
    expect(second.layers.chunksWritten).toBeLessThanOrEqual(Math.floor(first.layers.chunksWritten / 10))
    expect(layerRefs(store).size).toBe(2)
  })

  it('refuses a layer whose diff_id does not match the config, storing nothing that references it', async () => {
    const bad = copyOf(image)
    const { manifest } = firstManifest(bad)
    const config = JSON.parse(readFileSync(blobFile(bad, manifest.config.digest), 'utf8')) as { rootfs: { diff_ids: string[] } }
    const wrong = `sha256:${sha256('not this layer')}`
    config.rootfs.diff_ids[1] = wrong
    const data = Buffer.from(JSON.stringify(config))
    const configDigest = `sha256:${sha256(data)}`
    writeFileSync(blobFile(bad, configDigest), data)
    const manifestDigest = editFirstManifest(bad, (m) => (m.config = { ...m.config, digest: configDigest, size: data.length }))
    const store = path.join(tempDir(), 'store')
    const r = await snapdir(['push', '--store', store, bad])
    expect(r.status, r.stderr).toBe(1)
    expect(r.stdout).toBe('')
    const lines = r.stderr.split('\n').filter(Boolean)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain(manifest.layers[1]!.digest)
    expect(lines[0]).toContain(manifestDigest)
    expect(lines[0]).toContain(wrong)
    expect(layerRefs(store).has(wrong.replace('sha256:', ''))).toBe(false)
    expect(countObjects(path.join(store, 'trees'))).toBe(0)
    expect(countObjects(path.join(store, 'refs', 'revisions'))).toBe(0)
  })

  it('sync brings the expanded layers along: trees, refs and the revision listing them', async () => {
    const t = tempDir()
    const a = path.join(t, 'a')
    const b = path.join(t, 'b')
    const out = await pushJson(a, image)
    await snapdirOk(['sync', '--id', out.id, '--from', a, '--to', b])
    expect(layerRefs(b)).toEqual(layerRefs(a))
    for (const layer of out.revision.image!.layers) {
      expect(existsSync(path.join(b, 'trees', layer.tree.slice(0, 2), layer.tree))).toBe(true)
      await snapdirOk(['verify', '--store', b, '--id', layer.tree])
    }
    const revs = (await snapdirOk(['revisions', '--store', b])).trim().split('\n').map((l) => JSON.parse(l) as PushJson['revision'])
    expect(revs.at(-1)?.image).toEqual(out.revision.image)
    // the destination knows the layers now: a push of the image there expands nothing
    const again = await pushJson(b, image)
    expect(again.layers).toMatchObject({ expanded: 0, skipped: 3 })
  })

  it('sync stops at a damaged layer chunk or a missing layer tree of the source, naming it, and writes nothing naming it', async () => {
    const t = tempDir()
    const a = path.join(t, 'a')
    const out = await pushJson(a, image)
    const fs = new FileStore(a)
    await fs.open()
    const bundle = new Set((await readTree(fs, out.id)).entries.flatMap((e) => e.chunks.map((c) => toHex(c.id))))
    let victim: { chunk: string; file: string; diffId: string } | null = null
    for (const layer of out.revision.image!.layers) {
      for (const e of (await readTree(fs, layer.tree)).entries) {
        const c = e.chunks.find((r) => !bundle.has(toHex(r.id)))
        if (c && victim === null) victim = { chunk: toHex(c.id), file: printablePath(e.path), diffId: layer.diffId }
      }
    }
    await fs.close()
    expect(victim, 'a chunk only a layer uses').not.toBeNull()
    const chunkFile = path.join(a, 'chunks', victim!.chunk.slice(0, 2), victim!.chunk)
    const good = readFileSync(chunkFile)
    const bad = Buffer.from(good)
    bad[bad.length - 1]! ^= 0x55
    writeFileSync(chunkFile, bad)
    const b = path.join(t, 'b')
    const r = await snapdir(['sync', '--id', out.id, '--from', a, '--to', b])
    expect(r.status, r.stderr).toBe(1)
    expect(r.stderr).toContain(victim!.chunk)
    // the chunk may be a pack of several small files: the file is among those named for the layer
    expect(r.stderr).toMatch(new RegExp(`used by [^;]*\\b${victim!.file}\\b[^;]* in layer ${victim!.diffId}`))
    expect(countObjects(path.join(b, 'trees'))).toBe(0)
    expect(layerRefs(b).size).toBe(0)
    expect(countObjects(path.join(b, 'refs', 'revisions'))).toBe(0)

    writeFileSync(chunkFile, good)
    const missing = out.revision.image!.layers[2]!
    rmSync(path.join(a, 'trees', missing.tree.slice(0, 2), missing.tree))
    const m = await snapdir(['sync', '--id', out.id, '--from', a, '--to', b])
    expect(m.status, m.stderr).toBe(1)
    expect(m.stderr).toContain(missing.tree)
    expect(m.stderr).toContain(missing.digest)
    expect(countObjects(path.join(b, 'trees'))).toBe(0)
    expect(layerRefs(b).size).toBe(0)
  })

  it('a push killed at any point leaves no layer ref naming a missing tree; the next push completes', async () => {
    const treeExists = (store: string, id: string): boolean => existsSync(path.join(store, 'trees', id.slice(0, 2), id))
    const stages: Array<[string, (store: string) => boolean]> = [
      ['some chunks stored', (store) => countObjects(path.join(store, 'chunks')) >= 1],
      ['some tree stored', (store) => countObjects(path.join(store, 'trees')) >= 1],
      ['some layer ref stored', (store) => countObjects(path.join(store, 'refs', 'layers')) >= 1],
    ]
    for (const [when, ready] of stages) {
      const store = path.join(tempDir(), 'store')
      await killWhen(['push', '--store', store, image], () => ready(store))
      for (const [name, ref] of layerRefs(store)) expect(treeExists(store, ref.tree), `killed once ${when}: ref ${name}`).toBe(true)
      const out = await pushJson(store, image)
      for (const layer of out.revision.image!.layers) expect(treeExists(store, layer.tree)).toBe(true)
      expect(layerRefs(store).size).toBe(3)
      await snapdirOk(['verify', '--store', store, '--id', out.id])
    }
  })
})
