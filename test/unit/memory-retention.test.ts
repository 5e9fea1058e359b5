// What keeps push, pull, verify and the mount small on trees of many small files (issue 15,
// bench/memory.mjs): push lets each entry go once it is encoded (the tree encoder and the cutting run
// keep nothing of it), a decoded tree names a chunk that neighbouring refs share with one Buffer, and
// a mount's inode table keeps nothing of the tree it was built from. Each fails if the per-file
// retention comes back.
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import v8 from 'node:v8'
import vm from 'node:vm'
import { describe, expect, it } from 'vitest'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { decodeTree, encodeTree, TreeEncoder, type ChunkRef, type Tree, type TreeEntry } from '../../src/format/tree.js'
import { buildSnapshot } from '../../src/ingest/build-snapshot.js'
import type { FileJob } from '../../src/ingest/jobs.js'
import { NativeRun, nativeRunApplies } from '../../src/ingest/native-run.js'
import { scanDirectory } from '../../src/ingest/scan.js'
import { buildInodeTable, fileContent, fileRef } from '../../src/mount/inode-table.js'
import { bytes } from '../helpers/bytes.js'
import { tempDir } from '../helpers/temp.js'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

const dir = (path: string): TreeEntry => ({
  path: Buffer.from(path), type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeSec: 1_600_000_000, mtimeNsec: 0, size: 0,
  target: null, rdev: 0, xattrs: [], chunks: [],
})
const file = (path: string, chunks: ChunkRef[]): TreeEntry => ({
  ...dir(path), type: 'file', mode: 0o644, size: chunks.reduce((a, c) => a + c.length * c.count, 0), chunks,
})
const chunk = (fill: number): Buffer => Buffer.alloc(32, fill)

/** Files packed into one stream, as push cuts them: each file's refs are slices of the group's chunks. */
function packedTree(): Tree {
  const [x, y] = [chunk(1), chunk(2)]
  return {
    chunker: DEFAULT_CHUNKER,
    entries: [
      dir(''),
      dir('d'),
      file('d/a', [{ id: x, offset: 0, length: 100, count: 1 }]),
      file('d/b', [{ id: x, offset: 100, length: 50, count: 1 }, { id: y, offset: 0, length: 10, count: 1 }]),
      file('d/c', [{ id: y, offset: 10, length: 30, count: 1 }]),
    ],
  }
}

/** Lets a WeakRef's target go (targets are kept until the current job ends), then collects. */
async function collect(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve))
  gc()
}

/** A directory of small files (packed into groups) and a few larger ones (cut on their own). */
function smallFiles(): string {
  const dir = tempDir()
  for (let d = 0; d < 4; d++) {
    mkdirSync(path.join(dir, `d${d}`))
    for (let i = 0; i < 50; i++) writeFileSync(path.join(dir, `d${d}`, `f${i}`), bytes(`${d}-${i}`, 10 + ((i * 997) % 9000)))
  }
  writeFileSync(path.join(dir, 'large'), bytes('large', 700_000))
  return dir
}

describe('push lets each entry go once encoded', () => {
  it('the tree encoder keeps nothing of an entry it has encoded', async () => {
    const encoder = new TreeEncoder(DEFAULT_CHUNKER)
    const add = (): { entry: WeakRef<TreeEntry>; refs: WeakRef<ChunkRef[]> } => {
      const tree = packedTree()
      tree.entries.forEach((e, i) => encoder.add(e, i))
      return { entry: new WeakRef(tree.entries[3]!), refs: new WeakRef(tree.entries[3]!.chunks) }
    }
    const { entry, refs } = add()
    await collect()
    expect(entry.deref()).toBeUndefined()
    expect(refs.deref()).toBeUndefined()
    // and the bytes are all there
    expect(decodeTree(encoder.encode(), 'test tree').entries[3]!.path.toString()).toBe('d/b')
  })

  it('a cutting run keeps no result once it has handed it over', async () => {
    const dir = smallFiles()
    if (!nativeRunApplies(null)) throw new Error('the native addon is not built: run npm run build:native')
    const results: Array<WeakRef<ChunkRef[]>> = []
    const run = new NativeRun({ params: DEFAULT_CHUNKER, store: null, onResult: (r) => results.push(new WeakRef(r.chunks)) })
    const files = (await scanDirectory(dir)).filter((s) => s.entry.type === 'file')
    const jobs: FileJob[] = files.map((s, index) => ({ index, source: s.source, size: s.entry.size, sparse: false }))
    run.add([{ files: jobs.slice(0, 100) }, ...jobs.slice(100)])
    run.finish()
    const done = await run.done
    expect(results).toHaveLength(files.length)
    await collect()
    expect(results.filter((r) => r.deref() !== undefined)).toEqual([])
    expect(done.stats.chunksWritten).toBe(0) // (the run, and what it gave, still held here)
  })

  it('buildSnapshot gives back the encoded tree, and nothing that holds its entries', async () => {
    const dir = smallFiles()
    // in a function of its own: nothing of the scan stays in this one's scope
    const build = async (): Promise<{ built: Awaited<ReturnType<typeof buildSnapshot>>; entries: Array<WeakRef<TreeEntry>> }> => {
      const scanned = await scanDirectory(dir)
      const entries = scanned.map((s) => new WeakRef(s.entry))
      return { built: await buildSnapshot(scanned, { params: DEFAULT_CHUNKER }), entries }
    }
    const { built, entries } = await build()
    await collect()
    expect(entries.filter((e) => e.deref() !== undefined)).toEqual([])
    expect(built.stats.entries).toBe(entries.length)
    const tree = decodeTree(built.tree.encode(), 'test tree')
    expect(tree.entries).toHaveLength(entries.length)
    expect(tree.entries.find((e) => e.path.toString() === 'large')!.chunks.length).toBeGreaterThan(1)
  })
})

describe('memory per entry', () => {
  it('decodes refs in a row that name one chunk with one Buffer', () => {
    const entries = decodeTree(encodeTree(packedTree()), 'test tree').entries
    const [a, b, c] = entries.slice(2)
    expect(b!.chunks[0]!.id.equals(chunk(1))).toBe(true)
    // one object, not two equal ones: a Buffer costs about 100 bytes, a tree of small files has one ref per file or two
    expect(b!.chunks[0]!.id).toBe(a!.chunks[0]!.id)
    expect(c!.chunks[0]!.id).toBe(b!.chunks[1]!.id)
  })

  it('builds a mount table that keeps nothing of the tree', async () => {
    // built in a function of its own: nothing of the tree stays in this one's scope
    const build = (): { table: ReturnType<typeof buildInodeTable>; paths: WeakRef<Buffer>; refs: WeakRef<ChunkRef[]> } => {
      const tree = decodeTree(encodeTree(packedTree()), 'test tree')
      const b = tree.entries[3]!
      return { table: buildInodeTable(tree), paths: new WeakRef(b.path), refs: new WeakRef(b.chunks) }
    }
    const { table, paths, refs } = build()
    await collect()
    expect(paths.deref()).toBeUndefined()
    expect(refs.deref()).toBeUndefined()
    // what reads need is still there, in the table's own arrays
    const content = fileContent(table, 4)!
    expect(content.path.toString()).toBe('d/b')
    expect(content.count).toBe(2)
    const second = fileRef(table, content, 1)
    expect(table.chunkIds[second.chunk]).toBe(chunk(2).toString('hex'))
    expect(second).toMatchObject({ offset: 0, length: 10, count: 1, end: 60 })
    expect(fileContent(table, 2)).toBeNull() // a directory
  })
})
