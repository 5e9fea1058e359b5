// verify of an image snapshot checks everything `mount --view rootfs|layers` reads: the bundle tree and
// its chunks, and each expanded layer (its ref refs/layers/<diff_id>, its tree and that tree's chunks).
// Regression tests for a verify that checked only the bundle's own chunks and said "0 damaged" (exit 0)
// over corrupted layer chunks. Images are built with umoci and packed into archives with skopeo.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { toHex } from '../../src/format/id.js'
import { printablePath } from '../../src/format/tree-paths.js'
import type { Tree } from '../../src/format/tree.js'
import { FileStore } from '../../src/store/file-store.js'
import { objectKey, readTree } from '../../src/store/objects.js'
import { bytes, listFiles, snapdir, snapdirOk, tempDir, type RunResult } from '../helpers/cli.js'
import { buildUmociImage, requireTools, tool } from '../helpers/oci.js'

requireTools('umoci', 'skopeo', 'setfattr', 'gzip')

interface ImageLayer {
  digest: string
  diffId: string
  tree: string
}
interface VerifyJson {
  id: string
  layers: number
  chunksChecked: number
  bytesChecked: number
  damaged: Array<{ id: string; problem: string; files: string[]; layers: Array<{ diffId: string; files: string[] }> }>
  damagedLayers: Array<{ diffId: string; object: string; key: string; problem: string }>
}

let shared = ''
const sources: Record<'layout' | 'oci-archive' | 'docker-archive', string> = { layout: '', 'oci-archive': '', 'docker-archive': '' }

beforeAll(() => {
  shared = mkdtempSync(path.join(os.tmpdir(), 'snapdir-verify-'))
  sources.layout = path.join(shared, 'image')
  buildUmociImage(sources.layout, 'v1', path.join(shared, 'bundle'))
  sources['oci-archive'] = path.join(shared, 'app-oci.tar')
  sources['docker-archive'] = path.join(shared, 'app-docker.tar')
  tool('skopeo', ['copy', '--quiet', `oci:${sources.layout}:v1`, `oci-archive:${sources['oci-archive']}:v1`])
  tool('skopeo', ['copy', '--quiet', `oci:${sources.layout}:v1`, `docker-archive:${sources['docker-archive']}:app:v1`])
})

afterAll(() => {
  if (shared) rmSync(shared, { recursive: true, force: true })
})

function objectFile(store: string, kind: 'chunk' | 'tree', id: string): string {
  return path.join(store, ...objectKey(kind, id).split('/'))
}

function chunksOf(tree: Tree): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const e of tree.entries) {
    if (e.type !== 'file') continue
    for (const c of e.chunks) {
      const id = toHex(c.id)
      const files = out.get(id) ?? []
      if (!files.includes(printablePath(e.path))) files.push(printablePath(e.path))
      out.set(id, files)
    }
  }
  return out
}

interface Pushed {
  store: string
  id: string
  layers: ImageLayer[]
  /** every chunk the snapshot needs: the bundle's and the layers' */
  all: Set<string>
  bundleChunks: Set<string>
  /** a chunk only a layer uses, with the layer and the files using it */
  victim: { chunk: string; layer: ImageLayer; files: string[] }
}

/** Pushes an image and finds a chunk of one of its layers' files that the bundle tree does not use. */
async function pushImage(source: string): Promise<Pushed> {
  const store = path.join(tempDir(), 'store')
  const out = JSON.parse(await snapdirOk(['push', '--json', '--store', store, source])) as { id: string; revision: { image?: { layers: ImageLayer[] } } }
  const layers = out.revision.image?.layers ?? []
  expect(layers.length, 'the image has expanded layers').toBe(3)
  const fs = new FileStore(store)
  await fs.open()
  const bundleChunks = new Set(chunksOf(await readTree(fs, out.id)).keys())
  const all = new Set(bundleChunks)
  let victim: Pushed['victim'] | null = null
  for (const layer of layers) {
    for (const [chunk, files] of chunksOf(await readTree(fs, layer.tree))) {
      all.add(chunk)
      if (victim === null && !bundleChunks.has(chunk)) victim = { chunk, layer, files }
    }
  }
  await fs.close()
  expect(victim, 'a layer chunk the bundle does not use').not.toBeNull()
  expect(all.size).toBeGreaterThan(bundleChunks.size)
  return { store, id: out.id, layers, all, bundleChunks, victim: victim! }
}

function verifyOf(p: Pushed, json = false): Promise<RunResult> {
  return snapdir(['verify', '--store', p.store, '--id', p.id, ...(json ? ['--json'] : [])])
}

function expectNoStack(r: RunResult): void {
  for (const line of r.stderr.split('\n').filter(Boolean)) expect(line, r.stderr).toMatch(/^snapdir: /)
}

describe('verify of an image snapshot checks its expanded layers', () => {
  it.each(['layout', 'oci-archive', 'docker-archive'] as const)('intact (%s): exit 0, the layer chunks counted with the bundle\'s', async (kind) => {
    const p = await pushImage(sources[kind])
    const r = await verifyOf(p)
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe(`${p.all.size} chunks checked (the bundle and 3 layers), 0 damaged`)
    const j = JSON.parse((await verifyOf(p, true)).stdout) as VerifyJson
    expect(j).toMatchObject({ id: p.id, layers: 3, chunksChecked: p.all.size, damaged: [], damagedLayers: [] })
  })

  it.each(['layout', 'oci-archive', 'docker-archive'] as const)('a corrupted layer chunk (%s): exit 1 naming the chunk, the layer and the file', async (kind) => {
    const p = await pushImage(sources[kind])
    const file = objectFile(p.store, 'chunk', p.victim.chunk)
    const b = readFileSync(file)
    b[b.length - 1] = b[b.length - 1]! ^ 0x55
    writeFileSync(file, b)

    const r = await verifyOf(p)
    expect(r.status, r.stderr).toBe(1)
    expectNoStack(r)
    expect(r.stdout.trim()).toBe(`${p.all.size} chunks checked (the bundle and 3 layers), 1 damaged`)
    const line = r.stderr.split('\n').find((l) => l.includes(p.victim.chunk))
    expect(line, r.stderr).toBeDefined()
    expect(line).toContain('corrupt')
    expect(line).toContain(`layer ${p.victim.layer.diffId}`)
    for (const f of p.victim.files) expect(line).toContain(f)
    // no other chunk is reported
    for (const c of p.all) if (c !== p.victim.chunk) expect(r.stderr).not.toContain(c)

    const j = JSON.parse((await verifyOf(p, true)).stdout) as VerifyJson
    expect(j.damaged).toEqual([
      expect.objectContaining({ id: p.victim.chunk, problem: 'corrupt', layers: [{ diffId: p.victim.layer.diffId, digest: p.victim.layer.digest, tree: p.victim.layer.tree, files: p.victim.files }] }),
    ])
  })

  it('a deleted layer chunk: exit 1 naming the chunk as missing, the layer and the file', async () => {
    const p = await pushImage(sources.layout)
    unlinkSync(objectFile(p.store, 'chunk', p.victim.chunk))
    const r = await verifyOf(p)
    expect(r.status, r.stderr).toBe(1)
    expectNoStack(r)
    const line = r.stderr.split('\n').find((l) => l.includes(p.victim.chunk))
    expect(line, r.stderr).toBeDefined()
    expect(line).toMatch(/missing/)
    expect(line).toContain(`layer ${p.victim.layer.diffId}`)
    for (const f of p.victim.files) expect(line).toContain(f)
  })

  it('a deleted layer tree: exit 1 naming the tree and the layer', async () => {
    const p = await pushImage(sources.layout)
    const layer = p.victim.layer
    unlinkSync(objectFile(p.store, 'tree', layer.tree))
    const r = await verifyOf(p)
    expect(r.status, r.stderr).toBe(1)
    expectNoStack(r)
    const line = r.stderr.split('\n').find((l) => l.includes(layer.tree))
    expect(line, r.stderr).toBeDefined()
    expect(line).toMatch(/missing/)
    expect(line).toContain(layer.diffId)
    // the other layers and the bundle are still checked
    expect(r.stdout).toMatch(/ chunks checked \(the bundle and 3 layers\), 1 damaged/)
    const j = JSON.parse((await verifyOf(p, true)).stdout) as VerifyJson
    expect(j.damagedLayers).toEqual([expect.objectContaining({ diffId: layer.diffId, object: 'tree', key: objectKey('tree', layer.tree), problem: 'missing' })])
  })

  it('a deleted layer ref: exit 1 naming the ref and the layer', async () => {
    const p = await pushImage(sources.layout)
    const layer = p.layers[1]!
    const ref = `refs/layers/${layer.diffId.replace('sha256:', '')}`
    unlinkSync(path.join(p.store, ...ref.split('/')))
    const r = await verifyOf(p)
    expect(r.status, r.stderr).toBe(1)
    expectNoStack(r)
    const line = r.stderr.split('\n').find((l) => l.includes(ref))
    expect(line, r.stderr).toBeDefined()
    expect(line).toMatch(/missing/)
    expect(line).toContain(layer.diffId)
    // the layer's tree and chunks are still checked: all chunks are counted
    expect(r.stdout.trim()).toBe(`${p.all.size} chunks checked (the bundle and 3 layers), 1 damaged`)
  })

  it('a plain directory: the output is as it always was', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    mkdirSync(src)
    writeFileSync(path.join(src, 'a'), bytes('plain', 600_000))
    const store = path.join(t, 'store')
    const id = (await snapdirOk(['push', '--store', store, src])).trim()
    const r = await snapdir(['verify', '--store', store, '--id', id])
    const chunks = listFiles(path.join(store, 'chunks')).length
    expect(chunks).toBeGreaterThan(0)
    expect(r).toMatchObject({ status: 0, stderr: '', stdout: `${chunks} chunks checked, 0 damaged\n` })
    const j = JSON.parse((await snapdir(['verify', '--json', '--store', store, '--id', id])).stdout) as VerifyJson
    expect(j).toMatchObject({ id, layers: 0, chunksChecked: chunks, damaged: [], damagedLayers: [] })
  })
})
