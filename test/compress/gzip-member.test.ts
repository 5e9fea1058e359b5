// The gzip container: every header field read exactly (members written by GNU gzip, and by hand with
// each optional field, checked valid by zlib's own reader), and a member written back from recorded
// header bytes, a deflate stream and the CRC-32/ISIZE trailer that zlib accepts.
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { GZIP_FLAGS, createGzipMember, gzipTrailer, isGzipHeaderProblem, parseGzipHeader } from '../../src/oci/compress/gzip-member.js'
import { tempDir } from '../helpers/temp.js'

/** A member with the given header fields around zlib's deflate of content. */
function member(content: Buffer, f: { mtime?: number; xfl?: number; os?: number; extra?: Buffer; name?: string; comment?: string; hcrc?: boolean; text?: boolean }): Buffer {
  let flags = 0
  const parts: Buffer[] = []
  if (f.text) flags |= GZIP_FLAGS.FTEXT
  if (f.extra) {
    flags |= GZIP_FLAGS.FEXTRA
    const len = Buffer.alloc(2)
    len.writeUInt16LE(f.extra.length)
    parts.push(len, f.extra)
  }
  if (f.name !== undefined) {
    flags |= GZIP_FLAGS.FNAME
    parts.push(Buffer.from(f.name, 'latin1'), Buffer.from([0]))
  }
  if (f.comment !== undefined) {
    flags |= GZIP_FLAGS.FCOMMENT
    parts.push(Buffer.from(f.comment, 'latin1'), Buffer.from([0]))
  }
  if (f.hcrc) flags |= GZIP_FLAGS.FHCRC
  const fixed = Buffer.from([0x1f, 0x8b, 8, flags, 0, 0, 0, 0, f.xfl ?? 0, f.os ?? 3])
  fixed.writeUInt32LE(f.mtime ?? 0, 4)
  let head = Buffer.concat([fixed, ...parts])
  if (f.hcrc) {
    const crc = Buffer.alloc(2)
    crc.writeUInt16LE(zlib.crc32(head) & 0xffff)
    head = Buffer.concat([head, crc])
  }
  return Buffer.concat([head, zlib.deflateRawSync(content), gzipTrailer(zlib.crc32(content), content.length)])
}

describe('parseGzipHeader', () => {
  it('reads what GNU gzip writes: FNAME, MTIME, XFL, OS', () => {
    const dir = tempDir()
    const file = path.join(dir, 'hello.txt')
    writeFileSync(file, 'hello gzip\n'.repeat(100))
    const r = spawnSync('gzip', ['-9', '-c', file])
    expect(r.status).toBe(0)
    const h = parseGzipHeader(r.stdout)
    if (isGzipHeaderProblem(h)) throw new Error(h.problem)
    expect(h.name?.toString('latin1')).toBe('hello.txt')
    expect(h.flags).toBe(GZIP_FLAGS.FNAME)
    expect(h.xfl).toBe(2)
    expect(h.os).toBe(3)
    expect(h.mtime).toBeGreaterThan(0)
    expect(h.headerBytes.equals(r.stdout.subarray(0, 10 + 'hello.txt'.length + 1))).toBe(true)
  })

  it('reads every optional field, and the bytes zlib reads as a valid member', () => {
    const content = Buffer.from('content '.repeat(50))
    const gz = member(content, { mtime: 0x886e0900, xfl: 4, os: 255, extra: Buffer.from('AB\x04\x00data'), name: 'caf\xe9.tar', comment: 'made by hand', hcrc: true, text: true })
    expect(zlib.gunzipSync(gz).equals(content)).toBe(true)
    const h = parseGzipHeader(gz)
    if (isGzipHeaderProblem(h)) throw new Error(h.problem)
    expect(h.flags).toBe(GZIP_FLAGS.FTEXT | GZIP_FLAGS.FEXTRA | GZIP_FLAGS.FNAME | GZIP_FLAGS.FCOMMENT | GZIP_FLAGS.FHCRC)
    expect({ mtime: h.mtime, xfl: h.xfl, os: h.os }).toEqual({ mtime: 0x886e0900, xfl: 4, os: 255 })
    expect(h.extra?.toString('latin1')).toBe('AB\x04\x00data')
    expect(h.name?.toString('latin1')).toBe('caf\xe9.tar')
    expect(h.comment?.toString('latin1')).toBe('made by hand')
    expect(h.headerCrc).toBe(true)
    expect(h.headerBytes.length).toBe(10 + 2 + 8 + 9 + 13 + 2)
  })

  it('says what is wrong, and whether more bytes could help', () => {
    const good = member(Buffer.from('x'), { name: 'a-long-name', comment: 'c', extra: Buffer.from('xx'), hcrc: true })
    const headerLength = 10 + 4 + 12 + 2 + 2
    for (let n = 0; n < headerLength; n++) {
      const r = parseGzipHeader(good.subarray(0, n))
      expect(isGzipHeaderProblem(r) && r.truncated, `${n} bytes`).toBe(true)
    }
    expect(isGzipHeaderProblem(parseGzipHeader(good.subarray(0, headerLength)))).toBe(false)
    const problem = (b: Buffer): string => {
      const r = parseGzipHeader(b)
      return isGzipHeaderProblem(r) && !r.truncated ? r.problem : 'no problem'
    }
    expect(problem(Buffer.from('PK\x03\x04 not gzip at all'))).toBe('not gzip (no 1f 8b magic)')
    const method = Buffer.from(good)
    method[2] = 7
    expect(problem(method)).toBe('gzip compression method 7, only 8 (deflate) exists')
    const reserved = Buffer.from(good)
    reserved[3] = reserved[3]! | 0x20
    expect(problem(reserved)).toBe('gzip header has reserved flag bits set (FLG 62)')
    const crc = Buffer.from(good)
    crc[headerLength - 1] = crc[headerLength - 1]! ^ 0xff
    expect(problem(crc)).toBe('gzip header CRC-16 does not match')
  })
})

describe('createGzipMember', () => {
  it('writes the recorded header, the encoder stream and a trailer zlib accepts', () => {
    const content = Buffer.from('the same bytes back '.repeat(1000))
    const original = member(content, { name: 'layer.tar', mtime: 1234 })
    const h = parseGzipHeader(original)
    if (isGzipHeaderProblem(h)) throw new Error(h.problem)
    const raw = zlib.deflateRawSync(content)
    let given = 0
    const write = (b: Buffer): Buffer => {
      given += b.length
      return Buffer.alloc(0)
    }
    const encoder = { write, end: () => raw, writeAsync: async (b: Buffer) => write(b), endAsync: async () => raw }
    const w = createGzipMember({ headerBytes: h.headerBytes, encoder })
    const out = Buffer.concat([w.write(content.subarray(0, 7)), w.write(content.subarray(7)), w.write(Buffer.alloc(0)), w.end()])
    expect(given).toBe(content.length)
    expect(out.equals(original)).toBe(true)
    expect(() => w.end()).toThrow(/end called twice/)
  })

  it('wraps ISIZE modulo 2^32', () => {
    expect(gzipTrailer(0xffffffff, 2 ** 32 + 5).equals(Buffer.from([0xff, 0xff, 0xff, 0xff, 5, 0, 0, 0]))).toBe(true)
  })
})
