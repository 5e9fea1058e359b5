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

  /** Bytes `start` to `end` that another writer wrote (already msgpack), appended as they are. */
  copyFrom(other: MsgpackWriter, start: number, end: number): void {
    this.room(end - start)
    this.pos += other.buf.copy(this.buf, this.pos, start, end)
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
    const b = this.buf
    if (v >>> 0 === v) {
      if (v < 0x80) b[this.pos++] = v
      else if (v < 0x100) {
        b[this.pos++] = 0xcc
        b[this.pos++] = v
      } else if (v < 0x10000) {
        b[this.pos++] = 0xcd
        this.view.setUint16(this.pos, v)
        this.pos += 2
      } else {
        b[this.pos++] = 0xce
        this.view.setUint32(this.pos, v)
        this.pos += 4
      }
    } else if (v >> 0 === v) {
      if (v >= -0x20) b[this.pos++] = 0x100 + v
      else if (v >= -0x80) {
        b[this.pos++] = 0xd0
        b[this.pos++] = v + 0x100
      } else if (v >= -0x8000) {
        b[this.pos++] = 0xd1
        this.view.setInt16(this.pos, v)
        this.pos += 2
      } else {
        b[this.pos++] = 0xd2
        this.view.setInt32(this.pos, v)
        this.pos += 4
      }
    } else {
      b[this.pos++] = 0xcb
      this.view.setFloat64(this.pos, v)
      this.pos += 8
    }
  }

  /** Raw bytes (msgpack bin). */
  bin(v: Uint8Array): void {
    const n = v.length
    this.room(n + 5)
    const b = this.buf
    if (n < 0x100) {
      b[this.pos++] = 0xc4
      b[this.pos++] = n
    } else if (n < 0x10000) {
      b[this.pos++] = 0xc5
      this.view.setUint16(this.pos, n)
      this.pos += 2
    } else {
      b[this.pos++] = 0xc6
      this.view.setUint32(this.pos, n)
      this.pos += 4
    }
    b.set(v, this.pos)
    this.pos += n
  }

  /** Text, as UTF-8 (msgpack str). */
  str(v: string): void {
    const bytes = Buffer.from(v, 'utf8')
    const n = bytes.length
    this.room(n + 5)
    const b = this.buf
    if (n < 0x20) b[this.pos++] = 0xa0 | n
    else if (n < 0x100) {
      b[this.pos++] = 0xd9
      b[this.pos++] = n
    } else if (n < 0x10000) {
      b[this.pos++] = 0xda
      this.view.setUint16(this.pos, n)
      this.pos += 2
    } else {
      b[this.pos++] = 0xdb
      this.view.setUint32(this.pos, n)
      this.pos += 4
    }
    bytes.copy(b, this.pos)
    this.pos += n
  }

  /** The header of an array of `n` items; the items follow. */
  array(n: number): void {
    this.room(5)
    const b = this.buf
    if (n < 0x10) b[this.pos++] = 0x90 | n
    else if (n < 0x10000) {
      b[this.pos++] = 0xdc
      this.view.setUint16(this.pos, n)
      this.pos += 2
    } else {
      b[this.pos++] = 0xdd
      this.view.setUint32(this.pos, n)
      this.pos += 4
    }
  }
}
