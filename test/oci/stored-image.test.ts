// An image read out of a stored snapshot (what `mount --view` and `stats` resolve) goes through the
// same document walker as a layout on disk: the same checks, the same words for a problem, only the
// boundary differs (ERR_IMAGE naming the snapshot instead of ERR_SOURCE naming the directory). Layouts
// are written by hand and stored without push's check, as a damaged one could get into a store.
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { decodeTree, type Tree } from '../../src/format/tree.js'
import { buildSnapshot } from '../../src/ingest/build-snapshot.js'
import { scanDirectory } from '../../src/ingest/scan.js'
import { checkImageLayout } from '../../src/oci/check-layout.js'
import { layoutLayers } from '../../src/oci/layout-layers.js'
import { hostPlatform } from '../../src/oci/platform.js'
import { resolveStoredImage } from '../../src/oci/stored-image.js'
import { writeLayerRef } from '../../src/store/layer-refs.js'
import { MemoryStore } from '../../src/store/memory-store.js'
import { findEntry } from '../../src/store/tree-file.js'
import { SnapdirError } from '../../src/util/errors.js'
import { tempDir } from '../helpers/cli.js'
import { blobFile, flipByte, LayoutBuilder, OCI, sha256, type TestDescriptor } from '../helpers/oci.js'

const ID = 'ab'.repeat(32)
const TREE = (n: number): string => String(n).repeat(64).slice(0, 64)

interface TestImage {
  manifest: TestDescriptor
  config: TestDescriptor
  layers: TestDescriptor[]
  diffIds: string[]
}

/** An image whose config gives each layer a diff_id (of the layer's own name: nothing expands here). */
function image(b: LayoutBuilder, names: string[], options: { platform?: string; diffIds?: string[] } = {}): TestImage {
  const diffIds = options.diffIds ?? names.map((n) => `sha256:${sha256(`tar of ${n}`)}`)
  const [os, architecture] = (options.platform ?? 'linux/amd64').split('/')
  const config = b.blob({ architecture, os, rootfs: { type: 'layers', diff_ids: diffIds } }, OCI.config)
  const layers = names.map((n) => b.blob(n, OCI.layerGzip))
  return { manifest: b.manifest({ config, layers }), config, layers, diffIds }
}

/** The layout stored as a bundle tree (no check), with an expanded-layer ref for each diff_id given. */
async function store(dir: string, refs: Array<{ diffId: string; digest: string }>): Promise<{ store: MemoryStore; bundle: Tree }> {
  const s = new MemoryStore()
  await s.open({ create: true })
  const { tree } = await buildSnapshot(await scanDirectory(dir), { params: DEFAULT_CHUNKER, store: s })
  for (const [i, r] of refs.entries()) await writeLayerRef(s, { diffId: r.diffId, digests: [r.digest], mediaType: OCI.layerGzip, tree: TREE(i + 1) })
  return { store: s, bundle: decodeTree(tree.encode(), 'the bundle') }
}

function refsOf(img: TestImage): Array<{ diffId: string; digest: string }> {
  return img.layers.map((l, i) => ({ diffId: img.diffIds[i]!, digest: l.digest }))
}

async function failure(p: Promise<unknown>): Promise<SnapdirError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  )
  expect(err, 'it must fail').toBeInstanceOf(SnapdirError)
  expect((err as SnapdirError).message).not.toContain('\n')
  return err as SnapdirError
}

describe('an image resolved out of a stored layout', () => {
  it('gives the manifest, the config entry and each layer with its diff_id and expanded tree, bottom first', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const img = image(b, ['base', 'top'])
    b.writeIndex([img.manifest])
    const { store: s, bundle } = await store(b.dir, refsOf(img))
    const resolved = await resolveStoredImage(s, ID, bundle, {})
    expect(resolved.manifest).toBe(img.manifest.digest)
    expect(resolved.config).toBe(findEntry(bundle, `blobs/sha256/${img.config.digest.slice(7)}`))
    expect(resolved.layers).toEqual(img.layers.map((l, i) => ({ digest: l.digest, size: l.size, diffId: img.diffIds[i], tree: TREE(i + 1), file: `blobs/sha256/${l.digest.slice(7)}` })))
  })

  it('a multi-platform index: this machine\'s platform, or the one asked for; one it lacks is named with those it has', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const host = hostPlatform()
    const other = host.architecture === 'arm64' ? 'amd64' : 'arm64'
    const here = image(b, ['here'], { platform: `linux/${host.architecture}` })
    const there = image(b, ['there'], { platform: `linux/${other}` })
    const platformOf = (arch: string): object => ({ platform: { os: 'linux', architecture: arch } })
    const index = b.blob({ schemaVersion: 2, mediaType: OCI.index, manifests: [{ ...here.manifest, ...platformOf(host.architecture) }, { ...there.manifest, ...platformOf(other) }] }, OCI.index)
    b.writeIndex([index])
    const { store: s, bundle } = await store(b.dir, [...refsOf(here), ...refsOf(there)])
    expect((await resolveStoredImage(s, ID, bundle, {})).manifest).toBe(here.manifest.digest)
    expect((await resolveStoredImage(s, ID, bundle, { platform: { os: 'linux', architecture: other } })).manifest).toBe(there.manifest.digest)
    const e = await failure(resolveStoredImage(s, ID, bundle, { platform: { os: 'linux', architecture: 's390x' } }))
    expect(e.code).toBe('ERR_IMAGE')
    expect(e.message).toContain(`image index ${index.digest} has no image for linux/s390x (it has linux/${host.architecture}, linux/${other}); pick one with --platform`)
  })

  it('a layer whose expanded tree the store does not have: named, with what to do', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const img = image(b, ['base', 'top'])
    b.writeIndex([img.manifest])
    const { store: s, bundle } = await store(b.dir, refsOf(img).slice(0, 1))
    const e = await failure(resolveStoredImage(s, ID, bundle, {}))
    expect(e.message).toBe(
      `snapshot ${ID.slice(0, 16)}…: layer ${img.layers[1]!.digest} (layers[1] of manifest ${img.manifest.digest}) has no expanded tree in memory:memory; push the image again to expand it`,
    )
  })
})

describe('a damaged layout: the same words on disk and in a store', () => {
  /** The problem as checking the layout on disk words it, and as resolving it out of a store does. */
  async function bothWays(dir: string, refs: Array<{ diffId: string; digest: string }>, onDisk: (dir: string) => Promise<unknown>): Promise<string> {
    const disk = await failure(onDisk(dir))
    expect(disk.code).toBe('ERR_SOURCE')
    const prefix = `OCI image layout ${dir}: `
    expect(disk.message.startsWith(prefix), disk.message).toBe(true)
    const { store: s, bundle } = await store(dir, refs)
    const stored = await failure(resolveStoredImage(s, ID, bundle, {}))
    expect(stored.code).toBe('ERR_IMAGE')
    expect(stored.message).toBe(`snapshot ${ID.slice(0, 16)}…: ${disk.message.slice(prefix.length)}`)
    return stored.message
  }

  it('a manifest with a flipped byte', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const img = image(b, ['base'])
    b.writeIndex([img.manifest])
    flipByte(b.dir, img.manifest.digest, 3)
    const message = await bothWays(b.dir, refsOf(img), (dir) => checkImageLayout(dir))
    expect(message).toContain(`manifest ${img.manifest.digest} listed in index.json does not match its digest: its content hashes to sha256:${sha256(readFileSync(blobFile(b.dir, img.manifest.digest)))}`)
  })

  it('a config that gives fewer diff_ids than the manifest has layers', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const img = image(b, ['base', 'top'], { diffIds: [`sha256:${sha256('one only')}`] })
    b.writeIndex([img.manifest])
    const message = await bothWays(b.dir, [], (dir) => layoutLayers(dir))
    expect(message).toContain(`config ${img.config.digest} of manifest ${img.manifest.digest} lists 1 rootfs.diff_ids for 2 layers`)
  })

  it('a diff_id that is not a sha256 digest', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const img = image(b, ['base'], { diffIds: ['sha256:short'] })
    b.writeIndex([img.manifest])
    const message = await bothWays(b.dir, [], (dir) => layoutLayers(dir))
    expect(message).toContain(`config ${img.config.digest} of manifest ${img.manifest.digest} has rootfs.diff_ids[0] "sha256:short", which is not a sha256 digest`)
  })

  it('index.json that is not JSON', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    image(b, ['base'])
    writeFileSync(path.join(b.dir, 'index.json'), '{"schemaVersion": 2, "manifests": [')
    const message = await bothWays(b.dir, [], (dir) => checkImageLayout(dir))
    expect(message).toContain('index.json is not valid JSON')
  })
})
