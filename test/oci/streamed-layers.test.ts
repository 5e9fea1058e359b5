// Layers expanded from a stream (a registry's response, read once): the compressor is found while the
// blob streams (oci/streamed-compressor-match.ts), and every layer must end up stored exactly as the
// search over the blob's file stores it: the same recipe (compressor, level, restart points) or raw
// with the same kind of reason. Go's own gzip (levels 6 and 1, and a layer large enough for restart
// points), GNU gzip (raw), skopeo's zstd and an uncompressed tar, each streamed in odd-sized pieces.
import { execFileSync } from 'node:child_process'
import { createReadStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { expandImageLayers, type ExpandedImageLayers } from '../../src/oci/image-layers.js'
import { layoutLayers, type LayoutLayer } from '../../src/oci/layout-layers.js'
import { MemoryStore } from '../../src/store/memory-store.js'
import { noise } from '../helpers/bytes.js'
import { tempDir } from '../helpers/cli.js'
import { buildGoProgram } from '../helpers/go-program.js'
import { LayoutBuilder, OCI, buildUmociImage, requireTools, sha256, tool } from '../helpers/oci.js'

/** The layers expanded into a fresh store: from their files, or streamed in pieces of `piece` bytes. */
async function expand(layout: string, piece: number | null): Promise<ExpandedImageLayers> {
  const store = new MemoryStore()
  await store.open({ create: true })
  const layers = await layoutLayers(layout)
  const openBlob = async (l: LayoutLayer): Promise<AsyncIterable<Buffer>> => createReadStream(path.join(layout, l.file), { highWaterMark: piece! })
  return expandImageLayers(store, layout, layers, { params: DEFAULT_CHUNKER, ...(piece === null ? {} : { openBlob }) })
}

/**
 * The layers of a registry that has local files for some blobs (serve's staged uploads): those are
 * expanded from their files, the stream never opened; the others stream. Returns which streamed.
 */
async function expandWithFiles(layout: string, hasFile: (l: LayoutLayer) => boolean): Promise<{ expanded: ExpandedImageLayers; streamed: string[] }> {
  const store = new MemoryStore()
  await store.open({ create: true })
  const layers = await layoutLayers(layout)
  const streamed: string[] = []
  const openBlob = async (l: LayoutLayer): Promise<AsyncIterable<Buffer>> => {
    streamed.push(l.file)
    return createReadStream(path.join(layout, l.file), { highWaterMark: 9_999 })
  }
  const blobFile = async (l: LayoutLayer): Promise<string | null> => (hasFile(l) ? path.join(layout, l.file) : null)
  // the layout's own directory is not where the files are: only blobFile says
  const expanded = await expandImageLayers(store, path.join(layout, 'elsewhere'), layers, { params: DEFAULT_CHUNKER, openBlob, blobFile })
  return { expanded, streamed }
}

function storageOf(x: ExpandedImageLayers): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [digest, l] of x.layers) out[digest] = 'recipe' in l.storage ? `recipe ${l.storage.recipe}` : `raw ${l.storage.raw.replace(/ at byte \d+/g, '')}`
  return out
}

function text(seed: string, n: number): Buffer {
  const words = 'layer chunk tar gzip window block match literal distance restart segment encoder stream deflate'.split(' ')
  const r = noise(seed, n)
  const out: string[] = []
  for (let i = 0, len = 0; len < n; i++) {
    const w = words[r[i % r.length]! % words.length]!
    out.push(w)
    len += w.length + 1
  }
  return Buffer.from(out.join(' ')).subarray(0, n)
}

describe('layers expanded as they stream', () => {
  it('gzip by Go (levels 6, 1, and 6 with restart points), GNU gzip and plain tar: stored as the search over the file stores them', async () => {
    requireTools('go', 'gzip')
    const dir = tempDir('snapdir-streamed-layers-')
    const gogzip = buildGoProgram(dir, 'gogzip', readFileSync('test/tools/go-gzip/main.go', 'utf8'))
    const root = path.join(dir, 'rootfs')
    mkdirSync(path.join(root, 'usr/share'), { recursive: true })
    for (let f = 0; f < 4; f++) writeFileSync(path.join(root, `usr/share/f${f}.txt`), text(`streamed ${f}`, 2_500_000 + 1000 * f))
    writeFileSync(path.join(root, 'usr/share/noise.bin'), noise('streamed noise', 700_000))
    for (let f = 0; f < 40; f++) writeFileSync(path.join(root, `usr/share/small${f}`), text(`small ${f}`, 100 + 977 * f))
    const tarFile = path.join(dir, 'layer.tar')
    execFileSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', root, '-cf', tarFile, '.'])
    const tar = readFileSync(tarFile)
    const small = path.join(dir, 'small.tar')
    execFileSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', root, '-cf', small, './usr/share/small1', './usr/share/small2'])
    const layout = path.join(dir, 'layout')
    const b = new LayoutBuilder(layout)
    const blobs = [
      { blob: execFileSync(gogzip, ['-1', tarFile], { maxBuffer: 1 << 28 }), type: OCI.layerGzip, tar },
      { blob: execFileSync(gogzip, ['1', small], { maxBuffer: 1 << 28 }), type: OCI.layerGzip, tar: readFileSync(small) },
      { blob: execFileSync('gzip', ['-n', '-c', small], { maxBuffer: 1 << 28 }), type: OCI.layerGzip, tar: readFileSync(small) },
      { blob: readFileSync(small), type: OCI.layerTar, tar: readFileSync(small) },
    ]
    // the GNU gzip and plain layers share a diff_id; each blob is its own layer of its own image
    const manifests = blobs.map((x, i) => {
      const layer = b.blob(x.blob, x.type)
      const config = b.blob({ architecture: 'amd64', os: 'linux', seed: i, rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(x.tar)}`] } }, OCI.config)
      return b.manifest({ config, layers: [layer] })
    })
    b.writeIndex(manifests)
    const fromFiles = storageOf(await expand(layout, null))
    expect(Object.values(fromFiles).filter((s) => s.startsWith('recipe'))).toHaveLength(3)
    for (const piece of [7_777, 1 << 20]) expect(storageOf(await expand(layout, piece))).toEqual(fromFiles)
    // a source with the blobs' files: read from them, nothing streamed, stored alike
    const all = await expandWithFiles(layout, () => true)
    expect(all.streamed).toEqual([])
    expect(storageOf(all.expanded)).toEqual(fromFiles)
    // with some of them: those from their files, the rest streamed, stored alike
    const layers = await layoutLayers(layout)
    const some = await expandWithFiles(layout, (l) => l.file !== layers[0]!.file)
    expect(some.streamed).toEqual([layers[0]!.file])
    expect(storageOf(some.expanded)).toEqual(fromFiles)
  }, 180_000)

  it('zstd layers written by skopeo: the same recipes streamed as from the files', async () => {
    requireTools('umoci', 'skopeo', 'setfattr')
    const dir = tempDir('snapdir-streamed-zstd-')
    const umoci = path.join(dir, 'umoci')
    buildUmociImage(umoci, 't', path.join(dir, 'bundle'))
    const layout = path.join(dir, 'zstd')
    tool('skopeo', ['copy', '--quiet', '--dest-compress-format', 'zstd', `oci:${umoci}:t`, `oci:${layout}:t`])
    const fromFiles = storageOf(await expand(layout, null))
    expect(Object.values(fromFiles).every((s) => s.startsWith('recipe'))).toBe(true)
    expect(storageOf(await expand(layout, 10_001))).toEqual(fromFiles)
  }, 120_000)
})
