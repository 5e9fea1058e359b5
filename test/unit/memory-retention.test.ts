// What keeps pull, verify and the mount small on trees of many small files (issue 15, bench/memory.mjs):
// a decoded tree names a chunk that neighbouring refs share with one Buffer, and a mount's inode table
// keeps nothing of the tree it was built from. Each fails if the per-file retention comes back.
import v8 from 'node:v8'
import vm from 'node:vm'
import { describe, expect, it } from 'vitest'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { decodeTree, encodeTree, type ChunkRef, type Tree, type TreeEntry } from '../../src/format/tree.js'
import { buildInodeTable, fileContent, fileRef } from '../../src/mount/inode-table.js'

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
