// Push's native path (ingest/native-run.ts over native/file-batch.c) against the JS path it stands in
// for: the same tree, byte for byte, and the same chunk objects, each as format/object.ts reads it.
import { mkdirSync, openSync, closeSync, writeSync, writeFileSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { afterEach, expect, it } from 'vitest'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { decodeObject } from '../../src/format/object.js'
import { decodeTree } from '../../src/format/tree.js'
import { buildSnapshot } from '../../src/ingest/build-snapshot.js'
import { nativeRunApplies } from '../../src/ingest/native-run.js'
import { FileStore } from '../../src/store/file-store.js'
import { bytes } from '../helpers/bytes.js'
import { tempDir } from '../helpers/cli.js'

afterEach(() => {
  delete process.env.SNAPDIR_CHUNKER
})

function sourceTree(dir: string): void {
  mkdirSync(path.join(dir, 'small'), { recursive: true })
  const text = Buffer.from(Array.from({ length: 100_000 }, (_, i) => `line ${i % 3000} of a large file\n`).join(''))
  writeFileSync(path.join(dir, 'large.bin'), Buffer.concat([bytes('large', 6_000_000), text, text]))
  writeFileSync(path.join(dir, 'medium.bin'), bytes('medium', 300_000))
  writeFileSync(path.join(dir, 'empty'), '')
  for (let i = 0; i < 120; i++) writeFileSync(path.join(dir, 'small', `f${i}`), bytes(`s${i % 40}`, [100, 4096, 4097, 9000, 65535][i % 5]!))
  // sparse: data, a 20 MB hole, data (left to the JS path)
  const fd = openSync(path.join(dir, 'sparse'), 'w')
  writeSync(fd, bytes('head', 70_000), 0, 70_000, 0)
  writeSync(fd, bytes('tail', 70_000), 0, 70_000, 20_070_000)
  closeSync(fd)
}

async function snapshot(src: string, store: FileStore): Promise<Buffer> {
  await store.open({ create: true })
  const { tree } = await buildSnapshot({ dir: src }, { params: DEFAULT_CHUNKER, store })
  const { root, parts } = tree.encode()
  return Buffer.concat([root, ...parts])
}

function chunkFiles(root: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>()
  for (const fan of readdirSync(path.join(root, 'chunks'))) {
    for (const name of readdirSync(path.join(root, 'chunks', fan))) out.set(name, readFileSync(path.join(root, 'chunks', fan, name)))
  }
  return out
}

it('gives the tree and the chunk objects the JS path gives', async () => {
  const t = tempDir()
  const src = path.join(t, 'src')
  sourceTree(src)
  const nativeStore = new FileStore(path.join(t, 'native'))
  expect(nativeRunApplies(nativeStore), 'the native path must apply to a local store').toBe(true)
  const nativeTree = await snapshot(src, nativeStore)

  process.env.SNAPDIR_CHUNKER = 'js'
  const jsStore = new FileStore(path.join(t, 'js'))
  expect(nativeRunApplies(jsStore)).toBe(false)
  const jsTree = await snapshot(src, jsStore)

  expect(nativeTree.equals(jsTree)).toBe(true)
  const nativeChunks = chunkFiles(nativeStore.root)
  const jsChunks = chunkFiles(jsStore.root)
  expect([...nativeChunks.keys()].sort()).toEqual([...jsChunks.keys()].sort())
  // (Buffer.equals: toEqual on large Buffers compares byte by byte, slowly)
  for (const [id, stored] of nativeChunks) expect(decodeObject(stored, id, id).equals(decodeObject(jsChunks.get(id)!, id, id)), id).toBe(true)
})

it('stores a chunk that several batches write at the same moment (files with the same content)', async () => {
  const t = tempDir()
  const src = path.join(t, 'src')
  mkdirSync(src)
  // each file is a job of its own, in a batch of its own: the pool's threads all cut the same chunks
  // in the same order at once, and each stores them, none having found them stored yet
  const content = bytes('same', 3_000_000)
  for (let i = 0; i < 24; i++) writeFileSync(path.join(src, `copy-${i}`), content)
  const store = new FileStore(path.join(t, 'store'))
  await store.open({ create: true })
  const { tree } = await buildSnapshot({ dir: src }, { params: DEFAULT_CHUNKER, store })
  const ids = new Set(decodeTree(tree.encode(), 'the tree').entries.flatMap((e) => e.chunks.map((c) => c.id.toString('hex'))))
  const stored = chunkFiles(store.root)
  expect([...ids].every((id) => stored.has(id)), 'every chunk the tree names is stored').toBe(true)
  expect([...stored.keys()].filter((name) => name.includes('.tmp-')), 'no temporary file left').toEqual([])
})
