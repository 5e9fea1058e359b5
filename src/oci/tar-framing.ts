// The tar's framing, captured while a layer is expanded (layer-expand.ts): every byte of the tar that
// is not a regular file's content, in order (tar-split's idea, format/recipe.ts). The tar bytes come
// through feed() as they stream to the parser; when the parser starts a regular file's content the
// expander says where it starts and how long it is (content()), and those bytes are skipped, never
// kept. The parser never runs ahead of the bytes fed here (they reach it through this tap), so what
// waits is at most what the stream buffers between the two: the framing since the last file.
import { SnapdirError } from '../util/errors.js'

/** One regular file's content in the tar, with the framing before it. */
export interface FramingEvent<T> {
  framing: Buffer
  size: number
  /** what the expander gave for it (its inode) */
  owner: T
}

export class FramingCapture<T> {
  readonly events: Array<FramingEvent<T>> = []
  private pending: Buffer[] = []
  private pendingBytes = 0
  /** tar offset of the first pending byte */
  private pendingStart = 0
  /** tar bytes fed so far */
  private seen = 0
  /** bytes before this offset are file content: not kept */
  private skipUntil = 0

  /** `what` names the layer in errors */
  constructor(private readonly what: string) {}

  /** The next bytes of the tar, in order. */
  feed(chunk: Buffer): void {
    const start = this.seen
    this.seen += chunk.length
    const skip = Math.min(chunk.length, Math.max(0, this.skipUntil - start))
    if (skip === chunk.length) return
    // copied: the stream's buffer may be large, and only these bytes are wanted
    this.pending.push(Buffer.from(chunk.subarray(skip)))
    this.pendingBytes += chunk.length - skip
  }

  /** A regular file's content starts at tar offset `offset` and is `size` bytes long. */
  content(offset: number, size: number, owner: T): void {
    if (offset < this.pendingStart || offset > this.seen) {
      // the parser and this capture disagree on where the tar is: never guess
      throw new SnapdirError('ERR_SOURCE', `${this.what}: the tar's framing cannot be followed (content at byte ${offset}, framing read to ${this.pendingStart})`)
    }
    const framing = this.take(offset - this.pendingStart)
    this.events.push({ framing, size, owner })
    // whatever of the content is already here goes; the rest is skipped as it comes
    this.drop(Math.min(size, this.pendingBytes))
    this.pendingStart = offset + size
    this.skipUntil = offset + size
  }

  /** The framing after the last file: everything left, up to the tar's end (`tarSize` bytes in all). */
  finish(tarSize: number): Buffer {
    if (this.seen !== tarSize || this.pendingStart + this.pendingBytes !== tarSize) {
      throw new SnapdirError('ERR_SOURCE', `${this.what}: the tar ends inside a file's content (${tarSize} bytes, content to ${this.pendingStart})`)
    }
    return this.take(this.pendingBytes)
  }

  private take(n: number): Buffer {
    if (n > this.pendingBytes) throw new SnapdirError('ERR_INTERNAL', `internal error: framing of ${n} bytes asked, ${this.pendingBytes} held`)
    const parts: Buffer[] = []
    let left = n
    while (left > 0) {
      const head = this.pending[0]!
      if (head.length <= left) {
        parts.push(head)
        this.pending.shift()
        left -= head.length
      } else {
        parts.push(head.subarray(0, left))
        this.pending[0] = head.subarray(left)
        left = 0
      }
    }
    this.pendingBytes -= n
    this.pendingStart += n
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
  }

  private drop(n: number): void {
    this.take(n)
  }
}
