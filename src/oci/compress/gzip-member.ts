// A gzip member (RFC 1952) around a raw DEFLATE stream: the header as the blob recorded it, byte for byte,
// and the CRC-32 and ISIZE trailer computed over the uncompressed input. Every compressor family shares
// this; each family only produces the DEFLATE bytes (compressor.ts).
// https://www.rfc-editor.org/rfc/rfc1952#section-2.3
import { crc32 } from 'node:zlib'
import type { DeflateEncoder } from './deflate-encoder.js'

/** FLG bits (RFC 1952 2.3.1). */
const FTEXT = 0x01
const FHCRC = 0x02
const FEXTRA = 0x04
const FNAME = 0x08
const FCOMMENT = 0x10
const RESERVED = 0xe0

/** FTEXT is only a hint to the reader; kept in headerBytes like every other bit. */
export const GZIP_FLAGS = { FTEXT, FHCRC, FEXTRA, FNAME, FCOMMENT } as const

/** A gzip member's header, parsed exactly: `headerBytes` is its whole encoding as found. */
export interface GzipHeader {
  headerBytes: Buffer
  /** FLG */
  flags: number
  /** MTIME, seconds, as the unsigned 32-bit number recorded (0: none) */
  mtime: number
  /** XFL: 2 best compression, 4 fastest, as the writer chose to say */
  xfl: number
  /** OS: 255 unknown, 3 Unix, ... */
  os: number
  /** FEXTRA's payload, without its length */
  extra?: Buffer
  /** NUL-terminated Latin-1 in the header; here without the NUL */
  name?: Buffer
  comment?: Buffer
  /** FHCRC: the header carries a CRC-16 of itself (checked: the low 16 bits of the CRC-32 before it) */
  headerCrc: boolean
}

/** Why a buffer does not start with a gzip header we can reproduce; `truncated` when more bytes could make it one. */
export interface GzipHeaderProblem {
  problem: string
  truncated: boolean
}

/**
 * The gzip header at the start of buf (the blob's first bytes: a long extra field, name or comment may
 * need more than a few hundred), or what is wrong with it. Nothing is assumed: another method than
 * deflate, a reserved flag or a wrong header CRC is a problem, so recorded bytes always describe a
 * valid member.
 */
export function parseGzipHeader(buf: Uint8Array): GzipHeader | GzipHeaderProblem {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  const short = (what: string): GzipHeaderProblem => ({ problem: `gzip header ends inside its ${what}`, truncated: true })
  const notGzip = { problem: 'not gzip (no 1f 8b magic)', truncated: false }
  if ((b.length >= 1 && b[0] !== 0x1f) || (b.length >= 2 && b[1] !== 0x8b)) return notGzip
  if (b.length < 10) return short('fixed part')
  if (b[2] !== 8) return { problem: `gzip compression method ${b[2]}, only 8 (deflate) exists`, truncated: false }
  const flags = b[3]!
  if (flags & RESERVED) return { problem: `gzip header has reserved flag bits set (FLG ${flags})`, truncated: false }
  let at = 10
  let extra: Buffer | undefined
  if (flags & FEXTRA) {
    if (b.length < at + 2) return short('extra field length')
    const xlen = b.readUInt16LE(at)
    if (b.length < at + 2 + xlen) return short('extra field')
    extra = b.subarray(at + 2, at + 2 + xlen)
    at += 2 + xlen
  }
  const zeroTerminated = (what: string): Buffer | GzipHeaderProblem => {
    const end = b.indexOf(0, at)
    if (end < 0) return short(what)
    const s = b.subarray(at, end)
    at = end + 1
    return s
  }
  let name: Buffer | undefined
  let comment: Buffer | undefined
  if (flags & FNAME) {
    const s = zeroTerminated('file name')
    if (!Buffer.isBuffer(s)) return s
    name = s
  }
  if (flags & FCOMMENT) {
    const s = zeroTerminated('comment')
    if (!Buffer.isBuffer(s)) return s
    comment = s
  }
  if (flags & FHCRC) {
    if (b.length < at + 2) return short('header CRC')
    if (b.readUInt16LE(at) !== (crc32(b.subarray(0, at)) & 0xffff)) return { problem: 'gzip header CRC-16 does not match', truncated: false }
    at += 2
  }
  const header: GzipHeader = {
    headerBytes: Buffer.from(b.subarray(0, at)),
    flags,
    mtime: b.readUInt32LE(4),
    xfl: b[8]!,
    os: b[9]!,
    headerCrc: (flags & FHCRC) !== 0,
  }
  if (extra) header.extra = Buffer.from(extra)
  if (name) header.name = Buffer.from(name)
  if (comment) header.comment = Buffer.from(comment)
  return header
}

export function isGzipHeaderProblem(h: GzipHeader | GzipHeaderProblem): h is GzipHeaderProblem {
  return 'problem' in h
}

/** The 8-byte trailer: CRC-32 of the uncompressed bytes and their length modulo 2^32, little-endian. */
export function gzipTrailer(crc: number, size: number): Buffer {
  const t = Buffer.alloc(8)
  t.writeUInt32LE(crc >>> 0, 0)
  t.writeUInt32LE(size % 2 ** 32, 4)
  return t
}

/**
 * Writes one gzip member: write() and end() return the bytes to append to the blob; the async forms
 * run the encoder on the libuv pool (DeflateEncoder), one call at a time.
 */
export interface GzipMemberWriter {
  write(input: Buffer): Buffer
  end(): Buffer
  writeAsync(input: Buffer): Promise<Buffer>
  endAsync(): Promise<Buffer>
}

/**
 * A gzip member with `headerBytes` as its header (written before the first DEFLATE byte) and `encoder`
 * producing its body; the trailer is the CRC-32 and length (mod 2^32) of everything written.
 */
export function createGzipMember(options: { headerBytes: Buffer; encoder: DeflateEncoder }): GzipMemberWriter {
  const { headerBytes, encoder } = options
  let headerDone = false
  let ended = false
  let crc = 0
  let size = 0
  const withHeader = (body: Buffer): Buffer => {
    if (headerDone) return body
    headerDone = true
    return body.length === 0 ? headerBytes : Buffer.concat([headerBytes, body])
  }
  const count = (input: Buffer): void => {
    if (ended) throw new Error('gzip member: write after end')
    crc = crc32(input, crc)
    size = (size + input.length) % 2 ** 32
  }
  const ending = (): void => {
    if (ended) throw new Error('gzip member: end called twice')
    ended = true
  }
  return {
    write(input) {
      count(input)
      return withHeader(encoder.write(input))
    },
    end() {
      ending()
      return Buffer.concat([withHeader(encoder.end()), gzipTrailer(crc, size)])
    },
    async writeAsync(input) {
      count(input)
      return withHeader(await encoder.writeAsync(input))
    },
    async endAsync() {
      ending()
      return Buffer.concat([withHeader(await encoder.endAsync()), gzipTrailer(crc, size)])
    },
  }
}
