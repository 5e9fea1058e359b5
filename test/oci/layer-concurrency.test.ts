// Layers expanded several at once (image-layers.ts concurrency, as serve expands a pushed image's):
// the same trees, recipes and storage as one at a time, in the image's order whichever ends first; a
// layer that fails stops the others, and its own error (not theirs, aborted) is thrown once no write
// of any of them is in flight.
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { gzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { expandImageLayers, type ExpandedImageLayers } from '../../src/oci/image-layers.js'
import { layoutLayers } from '../../src/oci/layout-layers.js'
import { MemoryStore } from '../../src/store/memory-store.js'
import { SnapdirError } from '../../src/util/errors.js'
import { noise } from '../helpers/bytes.js'
import { tempDir } from '../helpers/cli.js'
import { LayoutBuilder, OCI, sha256 } from '../helpers/oci.js'

/** A store that counts the writes in flight. */
class CountingStore extends MemoryStore {
  inFlight = 0
  override async put(key: string, data: Buffer): Promise<void> {
    this.inFlight++
    try {
      await super.put(key, data)
    } finally {
      this.inFlight--
    }
  }
}

/** A layout of one image whose layers are tars of a few files each (a big one first, small ones after), plain and gzip; `badDiffId` gives one layer a wrong diff_id. */
function layout(dir: string, badDiffId?: number): string {
  const out = path.join(dir, `layout-${badDiffId ?? 'good'}`)
  const b = new LayoutBuilder(out)
  const layers = []
  const diffIds: string[] = []
  for (let i = 0; i < 4; i++) {
    const root = path.join(dir, `root${i}`)
    mkdirSync(path.join(root, 'data'), { recursive: true })
    writeFileSync(path.join(root, 'data', `big${i}`), noise(`layer ${i}`, i === 0 ? 6_000_000 : 300_000 + i))
    for (let f = 0; f < 5; f++) writeFileSync(path.join(root, 'data', `small${f}`), noise(`layer ${i} small ${f}`, 1000 * (f + 1)))
    const tarFile = path.join(dir, `layer${i}.tar`)
    execFileSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', root, '-cf', tarFile, '.'])
    const tar = readFileSync(tarFile)
    layers.push(i % 2 === 0 ? b.blob(tar, OCI.layerTar) : b.blob(gzipSync(tar), OCI.layerGzip))
    diffIds.push(`sha256:${sha256(i === badDiffId ? Buffer.concat([tar, Buffer.from('x')]) : tar)}`)
  }
  const config = b.blob({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } }, OCI.config)
  b.writeIndex([b.manifest({ config, layers })])
  return out
}

async function expand(dir: string, concurrency: number, store = new CountingStore()): Promise<ExpandedImageLayers> {
  await store.open({ create: true })
  return expandImageLayers(store, dir, await layoutLayers(dir), { params: DEFAULT_CHUNKER, concurrency })
}

/** What a layer became, comparable: digest, diff_id, tree, storage. */
function shape(x: ExpandedImageLayers): unknown[] {
  return [...x.layers].map(([digest, l]) => ({ digest, diffId: l.diffId, tree: l.tree?.id ?? l.treeId, storage: l.storage }))
}

describe('layers expanded at once', () => {
  it('give what one at a time gives, in the image order', async () => {
    const dir = tempDir('snapdir-layer-concurrency-')
    const good = layout(dir)
    const one = await expand(good, 1)
    const two = await expand(good, 2)
    expect(shape(two)).toEqual(shape(one))
    expect([...two.layers.keys()]).toEqual((await layoutLayers(good)).map((l) => `${l.descriptor.digest.algorithm}:${l.descriptor.digest.encoded}`))
    expect(two.stats).toEqual(one.stats)
  }, 120_000)

  it('a layer that fails stops the others; its own error is thrown, with no write in flight', async () => {
    const dir = tempDir('snapdir-layer-concurrency-fail-')
    const bad = layout(dir, 1)
    const store = new CountingStore()
    const err = await expand(bad, 2, store).then(() => null, (e: unknown) => e)
    expect(store.inFlight).toBe(0)
    expect(err).toBeInstanceOf(SnapdirError)
    expect((err as SnapdirError).code).toBe('ERR_SOURCE')
    expect((err as SnapdirError).message).toMatch(/layers\[1\] .* but the image config says its diff_id is/)
  }, 120_000)
})
