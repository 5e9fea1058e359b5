// Push's fast path (native/cut-store.c through snapshot/native-cutter.ts) must give exactly what the
// chunker and hashBytes give, and store exactly what format/object.ts reads back.
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Chunker, hashBytes } from '../../src/chunk/index.js'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { toHex } from '../../src/format/id.js'
import { decodeObject } from '../../src/format/object.js'
import { FileStore } from '../../src/store/file-store.js'
import { objectKey } from '../../src/store/objects.js'
import { NativeCutter } from '../../src/snapshot/native-cutter.js'
import { tempDir } from '../helpers/cli.js'

const SMALL = { min: 256, avg: 1024, max: 4096, level: 1, seed: 0n }

/** Data with repeats, so some chunks recur and zstd has something to find. */
const dataArb = fc.tuple(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.integer({ min: 0, max: 40 }), fc.uint8Array({ maxLength: 5000 }))
  .map(([a, times, b]) => Buffer.concat([...Array.from({ length: times }, () => Buffer.from(a)), Buffer.from(b)]))

function expected(chunker: Chunker, data: Buffer, eof: boolean): Array<{ length: number; id: string }> {
  const r = chunker.cuts(data, eof)
  const out = []
  for (let i = 0, pos = 0; i < r.count; pos += r.lengths[i++]!) out.push({ length: r.lengths[i]!, id: toHex(hashBytes(data.subarray(pos, pos + r.lengths[i]!))) })
  return out
}

function actual(cutter: NativeCutter, data: Buffer, eof: boolean): Array<{ length: number; id: string }> {
  const r = cutter.cut(data, eof)
  const out = []
  for (let i = 0; i < r.count; i++) out.push({ length: r.lengths[i]!, id: toHex(r.ids.subarray(32 * i, 32 * i + 32)) })
  expect(r.consumed).toBe(out.reduce((a, c) => a + c.length, 0))
  return out
}

describe('NativeCutter', () => {
  it('cuts and hashes exactly as the chunker and hashBytes do, with and without eof', () => {
    const chunker = new Chunker(SMALL, 'native')
    const cutter = NativeCutter.for(chunker, null)!
    expect(cutter).not.toBeNull()
    fc.assert(
      fc.property(dataArb, fc.boolean(), (data, eof) => {
        expect(actual(cutter, data, eof)).toEqual(expected(chunker, data, eof))
      }),
      { numRuns: 300 },
    )
  })

  it('stores each chunk once, as objects decodeObject reads back, and counts what it wrote', async () => {
    const store = new FileStore(path.join(tempDir(), 'store'))
    await store.open({ create: true })
    const chunker = new Chunker(DEFAULT_CHUNKER, 'native')
    const cutter = NativeCutter.for(chunker, store)!
    const text = Buffer.from(Array.from({ length: 40_000 }, (_, i) => `line ${i % 997}\n`).join(''))
    const data = Buffer.concat([text, randomBytes(300_000), text])
    const chunks = actual(cutter, data, true)
    expect(chunks).toEqual(expected(chunker, data, true))
    const distinct = new Map(chunks.map((c) => [c.id, c]))
    let bytes = 0
    let pos = 0
    for (const c of chunks) {
      const stored = await store.get(objectKey('chunk', c.id))
      expect(decodeObject(stored, c.id, c.id)).toEqual(data.subarray(pos, pos + c.length))
      pos += c.length
    }
    for (const id of distinct.keys()) bytes += (await store.size(objectKey('chunk', id)))!
    expect(cutter.takeWritten()).toEqual({ chunks: distinct.size, bytes })
    // a second pass finds every chunk present and writes nothing
    actual(cutter, data, true)
    expect(cutter.takeWritten()).toEqual({ chunks: 0, bytes: 0 })
  })

  it('is not used for the TypeScript chunker, nor for a store that is not a local directory', () => {
    expect(NativeCutter.for(new Chunker(SMALL, 'js'), null)).toBeNull()
    const remote = { localChunks: undefined } as unknown as FileStore
    expect(NativeCutter.for(new Chunker(SMALL, 'native'), remote)).toBeNull()
  })
})
