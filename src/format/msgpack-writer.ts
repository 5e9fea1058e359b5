// A msgpack writer for the few value kinds snapdir's trees hold (unsigned and signed integers, byte
// strings, short text, null, array headers), giving exactly the bytes msgpackr gives for them: the
// smallest encoding of each value, integers beyond 32 bits as float64. Why not msgpackr itself, which
// still decodes trees: encoding a Debian root file system's tree took it 50–100 ms at the end of every
// push, after the last chunk, where nothing else runs; this writer takes a fraction of that (and push
// no longer loads msgpackr at all). test/unit/msgpack-writer.test.ts holds it to msgpackr's bytes.

export class MsgpackWriter {
  private buf: Buffer
  private view: DataView
  private pos = 0

  constructor(capacity = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(Math.max(16, capacity))
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength)
  }

  /** How many bytes have been written. */
  get length(): number {
    return this.pos
  }

  /** The bytes written so far, copied out of the working buffer. */
  bytes(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos))
  }

  /** The size of the working buffer (grown as needed). */
  get capacity(): number {
    return this.buf.length
  }

  /** The bytes written so far, not copied: valid until the next write or reset. */
  written(): Buffer {
    return this.buf.subarray(0, this.pos)
  }

  /** Starts again from no bytes, keeping the working buffer. */
  reset(): void {
    this.pos = 0
  }

  /** Bytes that are already msgpack (written by another writer), appended as they are. */
  raw(bytes: Uint8Array): void {
    this.room(bytes.length)
    this.buf.set(bytes, this.pos)
    this.pos += bytes.length
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n))
    this.buf.copy(bigger, 0, 0, this.pos)
    this.buf = bigger
    this.view = new DataView(bigger.buffer, bigger.byteOffset, bigger.byteLength)
  }

  nil(): void {
    this.room(1)
    this.buf[this.pos++] = 0xc0
  }

  /** A number as msgpackr writes one: an integer in the smallest form that holds it, else float64. */
  number(v: number): void {
    this.room(9)
    if (v >>> 0 === v) {
      if (v < 0x80) this.buf[this.pos++] = v
      else this.sized(v, 0xcc, 0xcd, 0xce)
    } else if (v >> 0 === v) {
      if (v >= -0x20) this.buf[this.pos++] = 0x100 + v
      else if (v >= -0x80) this.put8(0xd0, v)
      else if (v >= -0x8000) this.put16(0xd1, v)
      else this.put32(0xd2, v)
    } else {
      this.buf[this.pos++] = 0xcb
      this.view.setFloat64(this.pos, v)
      this.pos += 8
    }
  }

  /** Raw bytes (msgpack bin). */
  bin(v: Uint8Array): void {
    this.room(v.length + 5)
    this.sized(v.length, 0xc4, 0xc5, 0xc6)
    this.buf.set(v, this.pos)
    this.pos += v.length
  }

  /** Text, as UTF-8 (msgpack str). */
  str(v: string): void {
    const bytes = Buffer.from(v, 'utf8')
    this.room(bytes.length + 5)
    if (bytes.length < 0x20) this.buf[this.pos++] = 0xa0 | bytes.length
    else this.sized(bytes.length, 0xd9, 0xda, 0xdb)
    this.pos += bytes.copy(this.buf, this.pos)
  }

  /** The header of an array of `n` items; the items follow. */
  array(n: number): void {
    this.room(5)
    if (n < 0x10) this.buf[this.pos++] = 0x90 | n
    else if (n < 0x10000) this.put16(0xdc, n)
    else this.put32(0xdd, n)
  }

  /** An unsigned value (an integer or a length) after the tag of the smallest of 8, 16 or 32 bits that holds it. */
  private sized(n: number, tag8: number, tag16: number, tag32: number): void {
    if (n < 0x100) this.put8(tag8, n)
    else if (n < 0x10000) this.put16(tag16, n)
    else this.put32(tag32, n)
  }

  // A tag and a big-endian value; negative values come out in two's complement, as the signed forms need.
  private put8(tag: number, v: number): void {
    this.buf[this.pos++] = tag
    this.buf[this.pos++] = v & 0xff
  }

  private put16(tag: number, v: number): void {
    this.buf[this.pos++] = tag
    this.view.setUint16(this.pos, v & 0xffff)
    this.pos += 2
  }

  private put32(tag: number, v: number): void {
    this.buf[this.pos++] = tag
    this.view.setUint32(this.pos, v >>> 0)
    this.pos += 4
  }
}
