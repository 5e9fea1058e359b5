// Layer recipes of Go-written gzip layers keep restart points (docs/go-flate.md) so that a blob is
// regenerated in segments on several cores: the segments, joined, must be the very bytes Go wrote
// (the real Go code, built here from Debian's golang-go, is the reference), and a recipe without them,
// or with damage under it, behaves as before.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Recipe } from '../../src/format/recipe.js'
import { RESTART_SPACING } from '../../src/oci/compressor-match.js'
import { regenerateBlob } from '../../src/oci/recipe-reader.js'
import { FileStore } from '../../src/store/file-store.js'
import { objectKey, readRecipe, readTree } from '../../src/store/objects.js'
import { SnapdirError } from '../../src/util/errors.js'
import { noise } from '../helpers/bytes.js'
import { snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { buildGoProgram } from '../helpers/go-program.js'
import { LayoutBuilder, OCI, sha256 } from '../helpers/oci.js'


/** Text that compresses about 3:1 with matches of every length and distance: words drawn from noise. */
function text(seed: string, n: number): Buffer {
  const words = 'the of layer chunk tar gzip window block match literal distance restart segment encoder stream deflate huffman'.split(' ')
  const r = noise(seed, n)
  const out: string[] = []
  let len = 0
  for (let i = 0; len < n; i++) {
    const b = r[i % r.length]!
    const w = b < 16 ? r.subarray(i % (r.length - 8), (i % (r.length - 8)) + 6).toString('hex') : words[b % words.length]!
    out.push(w)
    len += w.length + 1
  }
  return Buffer.from(out.join(' ')).subarray(0, n)
}

let dir = ''
let gogzip = ''
let tar = ''

beforeAll(() => {
  // shared by both tests (tempDir's go after each one)
  dir = mkdtempSync(path.join(os.tmpdir(), 'snapdir-recipe-restarts-'))
  gogzip = buildGoProgram(dir, 'gogzip', readFileSync('test/tools/go-gzip/main.go', 'utf8'))
  // a layer of some 14 MB: several restart points 4 MiB apart
  const root = path.join(dir, 'rootfs')
  for (let d = 0; d < 4; d++) {
    mkdirSync(path.join(root, `usr/share/d${d}`), { recursive: true })
    for (let f = 0; f < 6; f++) writeFileSync(path.join(root, `usr/share/d${d}/f${f}.txt`), text(`restarts ${d}/${f}`, 300_000 + 97_000 * f))
    writeFileSync(path.join(root, `usr/share/d${d}/blob.bin`), noise(`restarts bin ${d}`, 400_000))
  }
  tar = path.join(dir, 'layer.tar')
  execFileSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', root, '-cf', tar, '.'])
}, 120_000)

afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** An OCI layout with the tar gzipped by Go at `level`, pushed: the store, snapshot ID and the layer's recipe. */
async function pushed(level: number): Promise<{ store: string; id: string; recipe: Recipe; recipeId: string; layout: string; blob: Buffer }> {
  const work = tempDir('snapdir-recipe-restarts-push-')
  const blob = execFileSync(gogzip, [String(level), tar], { maxBuffer: 1 << 28 })
  const layout = path.join(work, 'layout')
  const b = new LayoutBuilder(layout)
  const layer = b.blob(blob, OCI.layerGzip)
  const config = b.blob({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(readFileSync(tar))}`] } }, OCI.config)
  b.writeIndex([b.manifest({ config, layers: [layer] })])
  const store = path.join(work, 'store')
  const out = JSON.parse(await snapdirOk(['push', '--json', '--store', store, layout])) as { id: string; layerStorage: Array<{ digest: string; recipe?: string; raw?: string }> }
  const recipeId = out.layerStorage[0]!.recipe
  expect(recipeId, JSON.stringify(out.layerStorage)).toMatch(/^[0-9a-f]{64}$/)
  const s = new FileStore(store)
  await s.open()
  const { recipe } = await readRecipe(s, recipeId!)
  await s.close()
  return { store, id: out.id, recipe, recipeId: recipeId!, layout, blob }
}

async function regenerate(store: string, recipe: Recipe): Promise<Buffer> {
  const s = new FileStore(store)
  await s.open()
  try {
    const pieces: Buffer[] = []
    for await (const piece of regenerateBlob({ store: s, recipe })) pieces.push(Buffer.from(piece))
    return Buffer.concat(pieces)
  } finally {
    await s.close()
  }
}

describe('restart points in recipes of Go-written gzip layers', () => {
  it('push keeps a point every few MiB (levels 4..9), and the segments joined are the bytes Go wrote', async () => {
    const tarSize = readFileSync(tar).length
    for (const level of [6, 4]) {
      const p = await pushed(level)
      const c = p.recipe.compression
      expect(c).toMatchObject({ kind: 'gzip', family: 'go', level })
      const restarts = c.kind === 'gzip' ? c.restarts ?? [] : []
      expect(restarts.length, `level ${level}`).toBeGreaterThanOrEqual(Math.floor(tarSize / RESTART_SPACING) - 1)
      for (const [i, r] of restarts.entries()) expect(r.input - (restarts[i - 1]?.input ?? 0)).toBeGreaterThanOrEqual(RESTART_SPACING)
      expect((await regenerate(p.store, p.recipe)).equals(p.blob), `level ${level}`).toBe(true)
      // and the same recipe without them (as recipes written before restart points) regenerates too
      if (c.kind === 'gzip') {
        const plain = { ...c }
        delete plain.restarts
        expect((await regenerate(p.store, { ...p.recipe, compression: plain })).equals(p.blob)).toBe(true)
      }
      if (level === 6) {
        const pulled = path.join(tempDir('snapdir-recipe-restarts-pull-'), 'out')
        await snapdirOk(['pull', '--store', p.store, '--id', p.id, pulled])
        expect(readFileSync(path.join(pulled, 'blobs/sha256', sha256(p.blob))).equals(p.blob)).toBe(true)
        expect(await snapdirOk(['verify', '--store', p.store, '--id', p.id])).toMatch(/1 layer blobs? regenerated from recipes?, 0 damaged/)
      }
    }
  }, 600_000)

  it('a restart point that does not fit the stream, a chunk missing or corrupt: the blob named, nothing unverified written', async () => {
    const p = await pushed(6)
    const c = p.recipe.compression
    if (c.kind !== 'gzip' || !c.restarts?.length) throw new Error('no restart points recorded')
    // a point moved by one bit: the segments no longer join into the blob
    const moved = c.restarts.map((r, i) => (i === 0 ? { ...r, outBit: r.outBit + 1 } : r))
    const bad = regenerate(p.store, { ...p.recipe, compression: { ...c, restarts: moved } })
    await expect(bad).rejects.toThrow(SnapdirError)
    await expect(bad).rejects.toThrow(`blob ${p.recipe.digest} (layer ${p.recipe.diffId})`)

    // a file chunk past the first restart point damaged, then missing: pull refuses and leaves nothing
    const s = new FileStore(p.store)
    await s.open()
    const tree = await readTree(s, p.recipe.tree)
    await s.close()
    const file = tree.entries.find((e) => e.path.toString() === 'usr/share/d3/f5.txt')!
    const chunk = path.join(p.store, objectKey('chunk', file.chunks.at(-1)!.id.toString('hex')))
    const original = readFileSync(chunk)
    const flipped = Buffer.from(original)
    flipped[flipped.length - 1]! ^= 0xff
    for (const damage of ['corrupt', 'missing'] as const) {
      if (damage === 'corrupt') writeFileSync(chunk, flipped)
      else execFileSync('rm', [chunk])
      const targets = tempDir('snapdir-recipe-restarts-targets-')
      for (const args of [[path.join(targets, 'out')], ['--tar', path.join(targets, 'out.tar')]]) {
        const r = await snapdir(['pull', '--store', p.store, '--id', p.id, ...args])
        expect(r.status, r.stderr).toBe(1)
        expect(r.stderr).toMatch(new RegExp(`layer ${p.recipe.diffId}`))
        expect(readdirSync(targets), damage).toEqual([])
      }
      const v = await snapdir(['verify', '--store', p.store, '--id', p.id])
      expect(v.status, v.stderr).toBe(1)
      expect(v.stderr).toContain(p.recipe.diffId)
    }
    writeFileSync(chunk, original)
    expect(existsSync(chunk)).toBe(true)
    expect((await regenerate(p.store, p.recipe)).equals(p.blob)).toBe(true)
  }, 600_000)
})
