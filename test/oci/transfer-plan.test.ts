// What a stored image sends to a registry, and in what order: each blob once before any manifest,
// every document after what it names, documents byte for byte as the layout has them, blobs streamed
// and checked. Layouts are written by hand (node's sha256) and stored without push's check, so a
// damaged blob can be in the store.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { decodeTree, type Tree } from '../../src/format/tree.js'
import { buildSnapshot } from '../../src/ingest/build-snapshot.js'
import { scanDirectory } from '../../src/ingest/scan.js'
import { StoredBlobs } from '../../src/oci/stored-blobs.js'
import { storedImageEntry } from '../../src/oci/stored-image.js'
import { planTransfer, type TransferPlan } from '../../src/oci/transfer-plan.js'
import { MemoryStore } from '../../src/store/memory-store.js'
import { tempDir } from '../helpers/cli.js'
import { blobFile, flipByte, LayoutBuilder, OCI, sha256, type TestDescriptor } from '../helpers/oci.js'

const ID = 'cd'.repeat(32)

async function stored(dir: string): Promise<{ store: MemoryStore; bundle: Tree }> {
  const s = new MemoryStore()
  await s.open({ create: true })
  const { tree } = await buildSnapshot(await scanDirectory(dir), { params: DEFAULT_CHUNKER, store: s })
  return { store: s, bundle: decodeTree(tree.encode(), 'the bundle') }
}

async function plan(dir: string, options: { image?: string; platforms?: Array<{ os: string; architecture: string }> } = {}): Promise<TransferPlan> {
  const { store, bundle } = await stored(dir)
  const top = await storedImageEntry(store, ID, bundle, options.image !== undefined ? { image: options.image } : {})
  return planTransfer(new StoredBlobs(store, bundle), top, options.platforms ? { platforms: options.platforms } : {})
}

async function drain(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const p of stream) parts.push(Buffer.from(p))
  return Buffer.concat(parts)
}

function platformImage(b: LayoutBuilder, arch: string, shared: TestDescriptor): TestDescriptor {
  const config = b.blob({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${sha256('a')}`, `sha256:${sha256('b')}`] } }, OCI.config)
  const own = b.blob(`layer of ${arch}`, OCI.layerGzip)
  const m = b.manifest({ config, layers: [shared, own] })
  return { ...m, platform: { os: 'linux', architecture: arch } } as TestDescriptor
}

describe('a stored image planned for a registry', () => {
  it('one manifest: its config and layers, then the manifest byte for byte; each blob streams its own bytes', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const m = b.image({ layers: ['base layer', 'top layer'] })
    b.writeIndex([m])
    const p = await plan(b.dir)
    const manifest = JSON.parse(readFileSync(blobFile(b.dir, m.digest), 'utf8')) as { config: TestDescriptor; layers: TestDescriptor[] }
    expect(p.blobs.map((x) => x.digest)).toEqual([manifest.config.digest, ...manifest.layers.map((l) => l.digest)])
    for (const blob of p.blobs) expect(await drain(blob.content())).toEqual(readFileSync(blobFile(b.dir, blob.digest)))
    expect(p.manifests.map((x) => [x.digest, x.mediaType])).toEqual([[m.digest, OCI.manifest]])
    expect(p.manifests[0]!.bytes).toEqual(readFileSync(blobFile(b.dir, m.digest)))
    expect(p.rewritten).toBe(false)
  })

  it('an index: every platform, a layer they share once, each manifest before the index', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const shared = b.blob('shared base', OCI.layerGzip)
    const amd = platformImage(b, 'amd64', shared)
    const arm = platformImage(b, 'arm64', shared)
    const index = b.index([amd, arm])
    b.writeIndex([index])
    const p = await plan(b.dir)
    expect(p.manifests.map((x) => x.digest)).toEqual([amd.digest, arm.digest, index.digest])
    expect(p.manifests.at(-1)!.bytes).toEqual(readFileSync(blobFile(b.dir, index.digest)))
    expect(p.blobs.filter((x) => x.digest === shared.digest)).toHaveLength(1)
    expect(p.blobs).toHaveLength(5) // two configs, the shared layer, two own layers
  })

  it('a document reached breadth first before one that names it still goes after it', async () => {
    // A lists [B, M] and B lists [C] and C lists [M]: breadth first reads M before C
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const m = { ...b.image({ layers: ['x'] }), platform: { os: 'linux', architecture: 'amd64' } }
    const c = b.index([m])
    const bIndex = b.index([c])
    const a = b.index([bIndex, m])
    b.writeIndex([a])
    const p = await plan(b.dir)
    expect(p.manifests.map((x) => x.digest)).toEqual([m.digest, c.digest, bIndex.digest, a.digest])
  })

  it('--platform once: that image alone, its own digest; twice: an index of snapdir listing only those', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const shared = b.blob('shared base', OCI.layerGzip)
    const amd = platformImage(b, 'amd64', shared)
    const arm = platformImage(b, 'arm64', shared)
    const ppc = platformImage(b, 'ppc64le', shared)
    const index = b.index([amd, arm, ppc])
    b.writeIndex([index])
    const one = await plan(b.dir, { platforms: [{ os: 'linux', architecture: 'arm64' }] })
    expect(one.manifests.map((x) => x.digest)).toEqual([arm.digest])
    expect(one.blobs).toHaveLength(3)
    expect(one.rewritten).toBe(false)
    const two = await plan(b.dir, { platforms: [{ os: 'linux', architecture: 'ppc64le' }, { os: 'linux', architecture: 'amd64' }] })
    expect(two.manifests.slice(0, 2).map((x) => x.digest)).toEqual([amd.digest, ppc.digest])
    const cut = two.manifests[2]!
    expect(two.rewritten).toBe(true)
    expect(cut.digest).toBe(`sha256:${sha256(cut.bytes)}`)
    expect((JSON.parse(cut.bytes.toString()) as { manifests: TestDescriptor[] }).manifests.map((x) => x.digest)).toEqual([amd.digest, ppc.digest])
    const all = await plan(b.dir, { platforms: [{ os: 'linux', architecture: 'ppc64le' }, { os: 'linux', architecture: 'arm64' }, { os: 'linux', architecture: 'amd64' }] })
    expect(all.rewritten, 'every platform kept: the index as it is').toBe(false)
    expect(all.manifests.at(-1)!.digest).toBe(index.digest)
    await expect(plan(b.dir, { platforms: [{ os: 'linux', architecture: 's390x' }] })).rejects.toThrow(/has no image for linux\/s390x \(it has linux\/amd64, linux\/arm64, linux\/ppc64le\)/)
  })

  it('several images: --image picks one by its ref name; none given is bad input naming them', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const one = b.image({ layers: ['one'], seed: '1' })
    const two = b.image({ layers: ['two'], seed: '2' })
    b.writeIndex([one, two])
    expect((await plan(b.dir, { image: 'tag1' })).manifests.map((x) => x.digest)).toEqual([two.digest])
    await expect(plan(b.dir)).rejects.toThrow(/holds 2 images \(tag0, tag1\); pick one with --ref/)
  })

  it('a layer whose stored bytes do not match its digest fails its stream, at its end at the latest', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const m = b.image({ layers: ['good layer', 'a layer damaged in the store'] })
    b.writeIndex([m])
    const manifest = JSON.parse(readFileSync(blobFile(b.dir, m.digest), 'utf8')) as { layers: TestDescriptor[] }
    flipByte(b.dir, manifest.layers[1]!.digest)
    const p = await plan(b.dir)
    const bad = p.blobs.find((x) => x.digest === manifest.layers[1]!.digest)!
    await expect(drain(bad.content())).rejects.toMatchObject({ code: 'ERR_SNAPSHOT_DAMAGED' })
  })
})
