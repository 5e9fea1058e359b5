// The image layout checker on its own, on layouts written by hand: what it accepts (nested indexes,
// Docker schema2 types, sha512, shared layers, foreign layers left out) and, for each way a layout can
// be wrong, the one line it gives. Then pull: a snapshot of a damaged layout (stored without push's
// check, as an old snapdir or another writer could) is never put in place.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { checkImageLayout } from '../../src/oci/check-layout.js'
import { isImageLayout } from '../../src/oci/image-layout.js'
import { buildSnapshot } from '../../src/ingest/build-snapshot.js'
import { pull } from '../../src/snapshot/pull.js'
import { scanDirectory } from '../../src/ingest/scan.js'
import { MemoryStore } from '../../src/store/memory-store.js'
import { writeTree } from '../../src/store/objects.js'
import { SnapdirError } from '../../src/util/errors.js'
import { bytes, manifest, tempDir } from '../helpers/cli.js'
import { blobFile, DOCKER, flipByte, LayoutBuilder, OCI, sha256, type TestDescriptor } from '../helpers/oci.js'

/** A layout with one image of two layers; returns its parts for tests to damage. */
function simpleLayout(dir = path.join(tempDir(), 'layout')): { b: LayoutBuilder; image: TestDescriptor; config: TestDescriptor; layers: TestDescriptor[] } {
  const b = new LayoutBuilder(dir)
  const config = b.blob({ architecture: 'amd64', os: 'linux' }, OCI.config)
  const layers = [b.blob(bytes('layer-1', 200_000), OCI.layerGzip), b.blob('second layer', OCI.layerTar)]
  const image = b.manifest({ config, layers })
  b.writeIndex([image])
  return { b, image, config, layers }
}

/** Expects the check to fail with one line that names the layout and each of `mentions`. */
async function expectProblem(dir: string, ...mentions: string[]): Promise<string> {
  const err = await checkImageLayout(dir).then(
    () => null,
    (e: unknown) => e,
  )
  expect(err, 'the check must fail').toBeInstanceOf(SnapdirError)
  const e = err as SnapdirError
  expect(e.code).toBe('ERR_SOURCE')
  expect(e.message).not.toContain('\n')
  expect(e.message.startsWith(`OCI image layout ${dir}: `), e.message).toBe(true)
  for (const m of mentions) expect(e.message).toContain(m)
  return e.message
}

describe('layouts the checker accepts', () => {
  it('one image: every blob checked once, bytes counted', async () => {
    const { b, image, config, layers } = simpleLayout()
    const summary = await checkImageLayout(b.dir)
    expect(summary).toEqual({
      manifests: 1,
      indexes: 0,
      blobs: 4,
      bytes: image.size + config.size + layers[0]!.size + layers[1]!.size,
      absentForeignLayers: 0,
    })
  })

  it('a multi-platform index inside index.json, two images sharing a layer: the shared layer is read once', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const shared = 'the same base layer'
    const amd64 = b.image({ layers: [shared, 'amd64 layer'], seed: 'amd64' })
    const arm64 = b.image({ layers: [shared, 'arm64 layer'], seed: 'arm64' })
    const outer = b.index([b.index([amd64, arm64])])
    b.writeIndex([outer, amd64]) // amd64 also tagged directly: reached twice, checked once
    expect(await checkImageLayout(b.dir)).toMatchObject({ manifests: 2, indexes: 2, blobs: 9 })
  })

  it('Docker schema2 manifest list, manifest, config and layer types (as skopeo --format v2s2 writes them)', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const image = b.image({ layers: ['docker layer'], types: DOCKER })
    b.writeIndex([b.index([image], DOCKER.manifestList)])
    expect(await checkImageLayout(b.dir)).toMatchObject({ manifests: 1, indexes: 1, blobs: 4 })
  })

  it('every OCI layer type: tar, gzip, zstd and nondistributable', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const config = b.blob({}, OCI.config)
    const layers = [OCI.layerTar, OCI.layerGzip, OCI.layerZstd, OCI.nondistributableGzip].map((t) => b.blob(`layer ${t}`, t))
    b.writeIndex([b.manifest({ config, layers })])
    expect(await checkImageLayout(b.dir)).toMatchObject({ manifests: 1, blobs: 6 })
  })

  it('sha512 digests', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'), 'sha512')
    b.writeIndex([b.image({ layers: ['a sha512 layer'] })])
    expect(await checkImageLayout(b.dir)).toMatchObject({ manifests: 1, blobs: 3 })
  })

  it('a foreign layer left out of the layout, with URLs to fetch it from', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const config = b.blob({}, DOCKER.config)
    const foreign = { mediaType: DOCKER.foreignLayerGzip, digest: `sha256:${sha256('not here')}`, size: 8, urls: ['https://example.com/layer'] }
    b.writeIndex([b.manifest({ config, layers: [foreign], mediaType: DOCKER.manifest })])
    expect(await checkImageLayout(b.dir)).toMatchObject({ manifests: 1, blobs: 2, absentForeignLayers: 1 })
  })

  it('blobs nothing references are not read (umoci leaves old ones until gc)', async () => {
    const { b } = simpleLayout()
    writeFileSync(path.join(b.dir, 'blobs', 'sha256', sha256('orphan')), 'tampered orphan')
    await expect(checkImageLayout(b.dir)).resolves.toMatchObject({ blobs: 4 })
  })

  it('isImageLayout: an oci-layout file makes a layout; a directory or a symlink of that name does not', async () => {
    const t = tempDir()
    expect(await isImageLayout(simpleLayout(path.join(t, 'l')).b.dir)).toBe(true)
    mkdirSync(path.join(t, 'plain', 'oci-layout'), { recursive: true })
    expect(await isImageLayout(path.join(t, 'plain'))).toBe(false)
    mkdirSync(path.join(t, 'linked'))
    symlinkSync(path.join(t, 'l', 'oci-layout'), path.join(t, 'linked', 'oci-layout'))
    expect(await isImageLayout(path.join(t, 'linked'))).toBe(false)
    expect(await isImageLayout(path.join(t, 'no-such-dir'))).toBe(false)
  })
})

describe('damaged layouts: one line naming the blob and what references it', () => {
  it('a layer with a flipped byte: expected and computed digests', async () => {
    const { b, image, layers } = simpleLayout()
    flipByte(b.dir, layers[0]!.digest, 1000)
    const flipped = sha256(readFileSync(blobFile(b.dir, layers[0]!.digest)))
    await expectProblem(b.dir, `layer ${layers[0]!.digest} of manifest ${image.digest} does not match its digest`, `sha256:${flipped}`)
  })

  it('a config with a flipped byte', async () => {
    const { b, image, config } = simpleLayout()
    flipByte(b.dir, config.digest)
    await expectProblem(b.dir, `config ${config.digest} of manifest ${image.digest} does not match its digest`)
  })

  it('a manifest with a flipped byte, named as listed in index.json', async () => {
    const { b, image } = simpleLayout()
    flipByte(b.dir, image.digest, 5)
    await expectProblem(b.dir, `manifest ${image.digest} listed in index.json does not match its digest`)
  })

  it('a missing layer', async () => {
    const { b, image, layers } = simpleLayout()
    rmSync(blobFile(b.dir, layers[1]!.digest))
    await expectProblem(b.dir, `layer ${layers[1]!.digest} of manifest ${image.digest} is missing`, `blobs/sha256/${layers[1]!.digest.slice(7)}`)
  })

  it('a missing image manifest inside a nested index', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const image = b.image({ layers: ['x'] })
    const nested = b.index([image])
    b.writeIndex([nested])
    rmSync(blobFile(b.dir, image.digest))
    await expectProblem(b.dir, `manifest ${image.digest} listed in image index ${nested.digest} is missing`)
  })

  it('a foreign layer without URLs may not be left out', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const config = b.blob({}, OCI.config)
    const foreign = { mediaType: OCI.nondistributableGzip, digest: `sha256:${sha256('absent')}`, size: 6 }
    const image = b.manifest({ config, layers: [foreign] })
    b.writeIndex([image])
    await expectProblem(b.dir, `layer ${foreign.digest} of manifest ${image.digest} is missing`)
  })

  it('a layer shorter than its descriptor says (truncated)', async () => {
    const { b, image, layers } = simpleLayout()
    truncateSync(blobFile(b.dir, layers[0]!.digest), 150_000)
    await expectProblem(b.dir, `layer ${layers[0]!.digest} of manifest ${image.digest} has 150000 bytes, its descriptor says 200000`)
  })

  it('a descriptor whose size is wrong for an intact blob', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const config = b.blob({}, OCI.config)
    const layer = b.blob('twelve bytes', OCI.layerTar)
    const image = b.manifest({ config, layers: [{ ...layer, size: 13 }] })
    b.writeIndex([image])
    await expectProblem(b.dir, `layer ${layer.digest} of manifest ${image.digest} has 12 bytes, its descriptor says 13`)
  })

  it('a layer with an unknown media type', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const config = b.blob({}, OCI.config)
    const layer = b.blob('layer', 'application/x-mystery')
    const image = b.manifest({ config, layers: [layer] })
    b.writeIndex([image])
    await expectProblem(b.dir, `layer ${layer.digest} of manifest ${image.digest} has media type "application/x-mystery", which is not a known layer media type`)
  })

  it('a config with a layer media type', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const config = b.blob({}, OCI.layerGzip)
    const image = b.manifest({ config, layers: [] })
    b.writeIndex([image])
    await expectProblem(b.dir, `config ${config.digest} of manifest ${image.digest} has media type "${OCI.layerGzip}", which is not a known config media type`)
  })

  it('index.json listing something that is not a manifest or index', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const config = b.blob({}, OCI.config)
    b.writeIndex([config])
    await expectProblem(b.dir, `manifest ${config.digest} listed in index.json has media type "${OCI.config}", which is not a known image index or manifest media type`)
  })

  it('a media type with a newline in it stays on one line', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const config = b.blob({}, OCI.config)
    const layer = b.blob('layer', 'application/x-a\nsecond line')
    b.writeIndex([b.manifest({ config, layers: [layer] })])
    await expectProblem(b.dir, '"application/x-a\\nsecond line"')
  })

  it('a truncated index.json', async () => {
    const { b } = simpleLayout()
    const index = readFileSync(path.join(b.dir, 'index.json'))
    writeFileSync(path.join(b.dir, 'index.json'), index.subarray(0, index.length - 20))
    await expectProblem(b.dir, 'index.json is not valid JSON')
  })

  it('a missing index.json', async () => {
    const { b } = simpleLayout()
    rmSync(path.join(b.dir, 'index.json'))
    await expectProblem(b.dir, 'index.json is missing')
  })

  it('index.json without a manifests list', async () => {
    const { b } = simpleLayout()
    writeFileSync(path.join(b.dir, 'index.json'), '{"schemaVersion":2}')
    await expectProblem(b.dir, 'index.json has no manifests list')
  })

  it('an oci-layout file without imageLayoutVersion', async () => {
    const { b } = simpleLayout()
    writeFileSync(path.join(b.dir, 'oci-layout'), '{}')
    await expectProblem(b.dir, 'oci-layout has no imageLayoutVersion')
  })

  it('a manifest blob that is not JSON, though its digest is right', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const broken = b.blob('{"schemaVersion": 2, "config": ', OCI.manifest)
    b.writeIndex([broken])
    await expectProblem(b.dir, `manifest ${broken.digest} listed in index.json is not valid JSON`)
  })

  it('a manifest without layers', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const config = b.blob({}, OCI.config)
    const image = b.blob({ schemaVersion: 2, config }, OCI.manifest)
    b.writeIndex([image])
    await expectProblem(b.dir, `manifest ${image.digest} has no layers list`)
  })

  it('a manifest whose own mediaType differs from how it is referenced', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const config = b.blob({}, OCI.config)
    const image = b.blob({ schemaVersion: 2, mediaType: DOCKER.manifest, config, layers: [] }, OCI.manifest)
    b.writeIndex([image])
    await expectProblem(b.dir, `manifest ${image.digest} listed in index.json says it is "${DOCKER.manifest}" but is referenced as "${OCI.manifest}"`)
  })

  it.each([
    { digest: 'sha256:../../../etc/passwd', why: 'is not a digest' },
    { digest: `sha256:${'A'.repeat(64)}`, why: 'is not a valid sha256 digest' },
    { digest: `sha256:${'a'.repeat(63)}`, why: 'is not a valid sha256 digest' },
    { digest: `md5:${'a'.repeat(32)}`, why: 'uses digest algorithm md5' },
  ])('a layer digest $digest: $why', async ({ digest, why }) => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const config = b.blob({}, OCI.config)
    const image = b.manifest({ config, layers: [{ mediaType: OCI.layerTar, digest, size: 1 }] })
    b.writeIndex([image])
    await expectProblem(b.dir, `layers[0] of manifest ${image.digest}: the descriptor digest "${digest}" ${why}`)
  })

  it('a negative size', async () => {
    const b = new LayoutBuilder(path.join(tempDir(), 'layout'))
    const config = b.blob({}, OCI.config)
    const image = b.manifest({ config: { ...config, size: -1 }, layers: [] })
    b.writeIndex([image])
    await expectProblem(b.dir, `config of manifest ${image.digest}: the descriptor size -1 is not a byte count`)
  })

  it('a blob that is a symlink (to the right content) is refused, not followed', async () => {
    const { b, image, layers } = simpleLayout()
    const file = blobFile(b.dir, layers[1]!.digest)
    const elsewhere = path.join(path.dirname(b.dir), 'elsewhere')
    writeFileSync(elsewhere, readFileSync(file))
    rmSync(file)
    symlinkSync(elsewhere, file)
    await expectProblem(b.dir, `layer ${layers[1]!.digest} of manifest ${image.digest} is a symbolic link`)
  })

  it('a blobs/sha256 directory that is a symlink is refused', async () => {
    const { b } = simpleLayout()
    const outside = path.join(path.dirname(b.dir), 'outside-blobs')
    mkdirSync(outside)
    for (const name of readdirSync(path.join(b.dir, 'blobs', 'sha256'))) {
      writeFileSync(path.join(outside, name), readFileSync(path.join(b.dir, 'blobs', 'sha256', name)))
    }
    rmSync(path.join(b.dir, 'blobs', 'sha256'), { recursive: true })
    symlinkSync(outside, path.join(b.dir, 'blobs', 'sha256'))
    await expectProblem(b.dir, 'blobs/sha256 is a symbolic link')
  })

  it('names the layout as shownAs says (pull checks a temporary directory)', async () => {
    const { b, layers } = simpleLayout()
    rmSync(blobFile(b.dir, layers[0]!.digest))
    await expect(checkImageLayout(b.dir, { shownAs: '/srv/images/app' })).rejects.toThrow(/^OCI image layout \/srv\/images\/app: layer /)
  })
})

describe('pull of a snapshot whose layout is damaged', () => {
  /**
   * Stores a directory as push would, but without push's layout check: how a damaged layout gets
   * into a store (an older snapdir, another writer).
   */
  async function storeUnchecked(store: MemoryStore, dir: string): Promise<string> {
    await store.open({ create: true })
    const { tree } = await buildSnapshot(await scanDirectory(dir), { params: DEFAULT_CHUNKER, store })
    return writeTree(store, tree)
  }

  it('an intact layout pulls byte-exact', async () => {
    const { b } = simpleLayout()
    const store = new MemoryStore()
    const id = await storeUnchecked(store, b.dir)
    const target = path.join(tempDir(), 'pulled')
    await pull(store, id, target)
    expect(manifest(target)).toBe(manifest(b.dir))
  })

  it('a layer that does not match its digest: pull fails naming it, and leaves neither target nor temp dir', async () => {
    const { b, image, layers } = simpleLayout()
    flipByte(b.dir, layers[0]!.digest, 4096)
    const store = new MemoryStore()
    const id = await storeUnchecked(store, b.dir)
    const parent = tempDir()
    const target = path.join(parent, 'pulled')
    const err = await pull(store, id, target).then(
      () => null,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(SnapdirError)
    expect((err as SnapdirError).code).toBe('ERR_SNAPSHOT_DAMAGED')
    expect((err as SnapdirError).message).toBe(
      `snapshot ${id}: OCI image layout ${target}: layer ${layers[0]!.digest} of manifest ${image.digest} does not match its digest: ` +
        `its content hashes to sha256:${sha256(readFileSync(blobFile(b.dir, layers[0]!.digest)))}`,
    )
    expect(existsSync(target)).toBe(false)
    expect(readdirSync(parent), 'no temporary pull directory may remain').toEqual([])
  })
})
