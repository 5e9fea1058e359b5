// ingest/chunk-sink.ts, the one place content becomes chunks and refs for push and layer expansion:
// the cut points do not depend on how a file is handed over (blocks of any size, holes as lengths),
// each chunk is stored once, and a caller may reuse its buffer as soon as a call resolves, whether the
// store writes synchronously (FileStore) or later (any other store, from a copy).
import path from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Chunker } from '../../src/chunk/chunker.js'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import type { ChunkRef } from '../../src/format/tree.js'
import { ChunkSink } from '../../src/ingest/chunk-sink.js'
import { getChunk } from '../../src/store/chunks.js'
import { FileStore } from '../../src/store/file-store.js'
import { MemoryStore } from '../../src/store/memory-store.js'
import { isLocalChunkStore, type Store } from '../../src/store/store.js'
import { bytes } from '../helpers/bytes.js'
import { tempDir } from '../helpers/cli.js'

const chunker = new Chunker(DEFAULT_CHUNKER)

/** The content the refs name, read back from the store (every chunk verified). */
async function contentOf(store: Store, refs: ChunkRef[]): Promise<Buffer> {
  const parts: Buffer[] = []
  for (const r of refs) {
    const { raw } = await getChunk(store, r.id.toString('hex'))
    for (let i = 0; i < r.count; i++) parts.push(raw.subarray(r.offset, r.offset + r.length))
  }
  return Buffer.concat(parts)
}

/** Cuts `content` handed over in blocks of the given sizes, each copied into one reused buffer. */
async function cutInBlocks(sink: ChunkSink, content: Buffer, sizes: number[]): Promise<ChunkRef[]> {
  const file = sink.wholeFile()
  const buffer = Buffer.alloc(Math.max(1, ...sizes))
  let at = 0
  for (let i = 0; at < content.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, content.length - at)
    content.copy(buffer, 0, at, at + n)
    await file.push(buffer.subarray(0, n))
    buffer.fill(0xa5) // reused at once, as the readers reuse theirs
    at += n
  }
  return file.end()
}

describe('WholeFile', () => {
  const content = Buffer.concat([bytes('whole', 700_000), Buffer.alloc(600_000), bytes('tail', 90_000)])

  it('gives the same refs however the content is split into blocks', async () => {
    const whole = new ChunkSink(chunker, null).wholeFile()
    await whole.push(content)
    const expected = await whole.end()
    expect(expected.length).toBeGreaterThan(3)
    // blocks of any size down to one byte, but each round of sizes holds one of at least 4 KiB: sizes
    // of a few bytes only made 1.4 million awaited pushes, minutes of work that timed the test out
    const sizes = fc.tuple(fc.integer({ min: 4096, max: 300_000 }), fc.array(fc.integer({ min: 1, max: 300_000 }), { maxLength: 5 }))
    await fc.assert(
      fc.asyncProperty(sizes, async ([large, others]) => {
        const refs = await cutInBlocks(new ChunkSink(chunker, null), content, [...others, large])
        expect(refs).toEqual(expected)
      }),
      { numRuns: 25 },
    )
  })

  it('gives a hole fed as a length the refs of its zeros read as bytes', async () => {
    const read = new ChunkSink(chunker, null).wholeFile()
    await read.push(content)
    const skipped = new ChunkSink(chunker, null).wholeFile()
    await skipped.push(content.subarray(0, 700_000))
    await skipped.zeros(600_000)
    await skipped.push(content.subarray(1_300_000))
    expect(await skipped.end()).toEqual(await read.end())
  })
})

describe.each([
  ['FileStore (written synchronously, no copy)', (dir: string): Store => new FileStore(path.join(dir, 'store'))],
  ['MemoryStore (written later, from a copy)', (): Store => new MemoryStore()],
])('ChunkSink over a %s', (_, makeStore) => {
  it('stores each chunk once, with the bytes it had when offered, though the caller reused its buffer', async () => {
    const store = makeStore(tempDir())
    await store.open({ create: true })
    expect(isLocalChunkStore(store)).toBe(store instanceof FileStore)
    // the same 400 kB twice, then a run of zeros: repeated chunks and a zero chunk with a count
    const half = bytes('sink', 400_000)
    const content = Buffer.concat([half, half, Buffer.alloc(1_200_000)])
    const sink = new ChunkSink(chunker, store)
    const refs = await cutInBlocks(sink, content, [65_536, 100_003])
    await sink.drain()
    expect((await contentOf(store, refs)).equals(content)).toBe(true)
    const distinct = new Set(refs.map((r) => r.id.toString('hex')))
    expect(sink.stats.chunksWritten).toBe(distinct.size)
    expect(sink.stats.bytesWritten).toBeGreaterThan(0)

    // another sink finds them stored and writes none
    const again = new ChunkSink(chunker, store)
    expect(await cutInBlocks(again, content, [1_000_000])).toEqual(refs)
    await again.drain()
    expect(again.stats).toEqual({ chunksWritten: 0, bytesWritten: 0 })
    await store.close()
  })

  it('cuts a pack group and gives each file the slices of the group chunks that hold its bytes', async () => {
    const store = makeStore(tempDir())
    await store.open({ create: true })
    const files = [5000, 70_000, 1, 64_000, 300_000, 4097].map((n, i) => bytes(`group${i}`, n))
    const stream = Buffer.concat(files)
    const sink = new ChunkSink(chunker, store)
    const refs = await sink.cutGroup(stream, files.map((f) => f.length))
    stream.fill(0) // done with the stream once cutGroup resolves
    await sink.drain()
    expect(refs).toHaveLength(files.length)
    for (const [i, f] of files.entries()) expect((await contentOf(store, refs[i]!)).equals(f), `file ${i}`).toBe(true)
    await store.close()
  })
})
