import fc from 'fast-check'
import { Packr } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { MsgpackWriter } from '../../src/format/msgpack-writer.js'

// the options trees were always packed with: MsgpackWriter must give the same bytes, or snapshot IDs change
const packr = new Packr({ useRecords: false, bundleStrings: false, moreTypes: false })

type Value = number | string | Buffer | null | Value[]

function write(w: MsgpackWriter, v: Value): void {
  if (v === null) w.nil()
  else if (typeof v === 'number') w.number(v)
  else if (typeof v === 'string') w.str(v)
  else if (Buffer.isBuffer(v)) w.bin(v)
  else {
    w.array(v.length)
    for (const item of v) write(w, item)
  }
}

function written(v: Value, capacity?: number): Buffer {
  const w = new MsgpackWriter(capacity)
  write(w, v)
  return w.bytes()
}

describe('MsgpackWriter gives the bytes msgpackr gives', () => {
  it('at every integer width boundary, beyond 32 bits and for -0', () => {
    const edges = [0, 1, 0x1f, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 5 * 2 ** 40]
    const values = [...edges, ...edges.map((v) => -v), -0x20, -0x21, -0x80, -0x81, -0x8000, -0x8001, -(2 ** 31), -(2 ** 31) - 1, 0.5, -1.25]
    for (const v of values) expect([v, written(v).toString('hex')]).toEqual([v, packr.pack(v).toString('hex')])
  })

  it('for bytes, text and arrays at every length boundary', () => {
    for (const n of [0, 1, 0x1f, 0x20, 0xff, 0x100, 0xffff, 0x10000]) {
      const bin = Buffer.alloc(n, 0xab)
      expect(written(bin).equals(packr.pack(bin))).toBe(true)
      for (const text of ['a'.repeat(n), 'é'.repeat(Math.ceil(n / 2))]) expect(written(text).equals(packr.pack(text))).toBe(true)
    }
    for (const n of [0, 0xf, 0x10, 0xffff, 0x10000]) {
      const arr = Array.from({ length: n }, (_, i) => i % 3 === 0 ? null : i)
      expect(written(arr).equals(packr.pack(arr))).toBe(true)
    }
  })

  it('for any nesting of them, however small the starting buffer', () => {
    const leaf = fc.oneof(
      fc.constant(null),
      fc.integer({ min: -(2 ** 31) - 5, max: 2 ** 32 + 5 }),
      fc.maxSafeInteger(),
      fc.maxSafeNat(),
      fc.string({ maxLength: 40 }),
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    )
    const value = fc.letrec<{ v: Value }>((tie) => ({ v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 20 })) })).v
    fc.assert(fc.property(value, fc.integer({ min: 1, max: 64 }), (v, capacity) => written(v, capacity).equals(packr.pack(v))), { numRuns: 500 })
  })
})
