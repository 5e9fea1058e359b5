import { readFileSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'
import { bytes } from '../helpers/bytes.js'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Chunker, ChunkStream, hashBytes, type ChunkerImplementation, type RawChunk } from '../../src/chunk/index.js'

const fixtures = new URL('../fixtures/fastcdc/', import.meta.url)
const vectors = JSON.parse(readFileSync(new URL('vectors.json', fixtures), 'utf8')) as {
  file_sha256: string
  cases: Array<{ min: number; avg: number; max: number; normalization: number; seed: number;
    chunks: Array<{ hash: string; length: number; blake3?: string }> }>
}
const image = readFileSync(new URL('SekienAkashita.jpg', fixtures))
const IMPLS: ChunkerImplementation[] = ['native', 'js']
const SMALL = { min: 256, avg: 1024, max: 4096, level: 1, seed: 0n }

function lengthsOf(chunker: Chunker, data: Uint8Array): number[] {
  const r = chunker.cuts(data, true)
  return Array.from(r.lengths).slice(0, r.count)
}

/** Runs data through ChunkStream in the given pieces and returns the chunk lengths (zero runs expanded). */
function streamChunks(chunker: Chunker, pieces: Array<Buffer | number>): RawChunk[] {
  const s = new ChunkStream(chunker)
  const chunks: RawChunk[] = []
  for (const p of pieces) for (const c of typeof p === 'number' ? s.pushZeros(p) : s.push(p)) chunks.push(c)
  for (const c of s.end()) chunks.push(c)
  return chunks
}

const expand = (chunks: RawChunk[]): number[] => chunks.flatMap((c) => Array<number>(c.count).fill(c.length))

describe('FastCDC 2020 against the fastcdc crate reference vectors', () => {
  it('uses the published fixture file', () => {
    expect(createHash('sha256').update(image).digest('hex')).toBe(vectors.file_sha256)
  })
  for (const impl of IMPLS) {
    for (const c of vectors.cases) {
      it(`${impl}: min ${c.min} avg ${c.avg} max ${c.max} level ${c.normalization} seed ${c.seed}`, () => {
        const chunker = new Chunker({ min: c.min, avg: c.avg, max: c.max, level: c.normalization, seed: BigInt(c.seed) }, impl)
        const r = chunker.cuts(image, true, true)
        expect(Array.from(r.lengths).slice(0, r.count)).toEqual(c.chunks.map((x) => x.length))
        expect(r.hashes!.map(String)).toEqual(c.chunks.map((x) => x.hash))
        let pos = 0
        c.chunks.forEach((x) => {
          if (x.blake3) expect(hashBytes(image.subarray(pos, pos + x.length)).toString('hex')).toBe(x.blake3)
          pos += x.length
        })
      })
    }
    it(`${impl}: 10240 zero bytes give ten 1024-byte chunks with the reference hash`, () => {
      const chunker = new Chunker({ min: 64, avg: 256, max: 1024, level: 1, seed: 0n }, impl)
      const r = chunker.cuts(new Uint8Array(10240), true, true)
      expect(Array.from(r.lengths).slice(0, r.count)).toEqual(Array<number>(10).fill(1024))
      expect(r.hashes!.map(String)).toEqual(Array<string>(10).fill('14169102344523991076'))
    })
  }
})

describe('chunker properties', () => {
  const arbData = fc.uint8Array({ minLength: 0, maxLength: 40_000 }).chain((base) =>
    // mix random bytes with zero runs and repeats, the shapes real files have
    fc.array(fc.oneof(fc.constant(base), fc.nat(20_000).map((n) => new Uint8Array(n))), { maxLength: 4 }).map(
      (parts) => Buffer.concat([base, ...parts]),
    ),
  )

  it('chunks concatenate to the input, stay within min/max, and native equals the fallback', () => {
    const native = new Chunker(SMALL, 'native')
    const js = new Chunker(SMALL, 'js')
    fc.assert(
      fc.property(arbData, (data) => {
        const n = lengthsOf(native, data)
        expect(lengthsOf(js, data)).toEqual(n)
        expect(n.reduce((a, b) => a + b, 0)).toBe(data.length)
        n.forEach((len, i) => {
          expect(len).toBeLessThanOrEqual(SMALL.max)
          if (i < n.length - 1) expect(len).toBeGreaterThanOrEqual(SMALL.min)
          else expect(len).toBeGreaterThan(0)
        })
      }),
      { numRuns: 200 },
    )
  })

  it('streaming in arbitrary pieces, with holes fed as lengths, gives the one-shot cut points', () => {
    const chunker = new Chunker(SMALL, 'native')
    const arbPieces = fc.array(
      fc.oneof(fc.uint8Array({ maxLength: 9000 }).map((a) => Buffer.from(a)), fc.nat(30_000)),
      { maxLength: 8 },
    )
    fc.assert(
      fc.property(arbPieces, (pieces) => {
        const dense = Buffer.concat(pieces.map((p) => (typeof p === 'number' ? Buffer.alloc(p) : p)))
        const chunks = streamChunks(chunker, pieces)
        expect(expand(chunks)).toEqual(lengthsOf(chunker, dense))
        // chunks given as null data really are zeros at that place
        let pos = 0
        for (const c of chunks) {
          for (let i = 0; i < c.count; i++) {
            if (c.data === null) expect(dense.subarray(pos, pos + c.length).every((b) => b === 0)).toBe(true)
            else expect(c.data.equals(dense.subarray(pos, pos + c.length))).toBe(true)
            pos += c.length
          }
        }
      }),
      { numRuns: 300 },
    )
  })

  it('streams of several files sharing one chunker do not disturb each other (regression: shared length buffer)', () => {
    const chunker = new Chunker(SMALL, 'native')
    const a = randomBytes(200_000)
    const b = randomBytes(200_000)
    const alone = (d: Buffer) => streamChunks(chunker, [d]).map((c) => c.length)
    const [sa, sb] = [new ChunkStream(chunker), new ChunkStream(chunker)]
    const ga = sa.push(a)
    const gb = sb.push(b)
    const la: number[] = []
    const lb: number[] = []
    // interleave the two generators chunk by chunk, as concurrent files do in a push
    for (;;) {
      const x = ga.next()
      const y = gb.next()
      if (!x.done) la.push(x.value.length)
      if (!y.done) lb.push(y.value.length)
      if (x.done && y.done) break
    }
    for (const c of sa.end()) la.push(c.length)
    for (const c of sb.end()) lb.push(c.length)
    expect(la).toEqual(alone(a))
    expect(lb).toEqual(alone(b))
  })

  it('a huge hole costs no bytes: 1 TiB of zeros is one repeated chunk', () => {
    const chunker = new Chunker({ min: 16384, avg: 65536, max: 262144, level: 1, seed: 0n })
    const chunks = streamChunks(chunker, [Buffer.from('head'), 2 ** 40, Buffer.from('tail')])
    expect(chunks.length).toBeLessThan(10)
    expect(chunks.reduce((a, c) => a + c.length * c.count, 0)).toBe(2 ** 40 + 8)
  })

  it('an edit in the middle of a large file changes only the chunks around it', () => {
    const params = { min: 16384, avg: 65536, max: 262144, level: 1, seed: 0n }
    const chunker = new Chunker(params)
    // fixed data and a fixed seed: the bound below is what the algorithm gives in practice, not a
    // guarantee for every input, so the test must not draw a new input on every run
    const a = bytes('edit', 8 * 1024 * 1024)
    fc.assert(
      fc.property(fc.integer({ min: 1_000_000, max: 7_000_000 }), fc.uint8Array({ minLength: 1, maxLength: 100 }), (at, patch) => {
        const b = Buffer.concat([a.subarray(0, at), Buffer.from(patch), a.subarray(at + 50)])
        const ids = (d: Buffer) => {
          const out: string[] = []
          let pos = 0
          for (const len of lengthsOf(chunker, d)) out.push(hashBytes(d.subarray(pos, (pos += len))).toString('hex'))
          return out
        }
        const before = ids(a)
        const after = new Set(ids(b))
        const lost = before.filter((id) => !after.has(id))
        // the chunk holding the edit, and at most one neighbour either side when a cut moved
        expect(lost.length).toBeGreaterThanOrEqual(1)
        expect(lost.length).toBeLessThanOrEqual(3)
        expect(before.length).toBeGreaterThan(60)
      }),
      { numRuns: 8, seed: 20261123 },
    )
  })
})
