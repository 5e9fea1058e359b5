// Content digests as the distribution spec uses them (`sha256:<hex>`, `sha512:<hex>`), checked with
// node's hashes: a manifest whole, a blob as it streams through.
import { createHash, type Hash } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'

const DIGEST = /^(sha256|sha512):([a-f0-9]+)$/
const LENGTH: Record<string, number> = { sha256: 64, sha512: 128 }

/** The hash algorithm of a valid digest, or null. */
export function digestAlgorithm(digest: string): 'sha256' | 'sha512' | null {
  const m = DIGEST.exec(digest)
  if (!m || m[2]!.length !== LENGTH[m[1]!]) return null
  return m[1] as 'sha256' | 'sha512'
}

export function digestOf(bytes: Buffer, algorithm: 'sha256' | 'sha512' = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`
}

/**
 * Passes bytes through while hashing and counting them; at the end (or as soon as there are more than
 * `size`), fails with `mismatch(computed or a size text)` unless they are what `digest` names.
 */
export class DigestCheck extends Transform {
  private readonly hash: Hash
  private readonly algorithm: 'sha256' | 'sha512'
  private length = 0

  constructor(
    private readonly digest: string,
    private readonly size: number | undefined,
    private readonly mismatch: (problem: string) => Error,
  ) {
    // a few pieces of a blob answer (64 KiB each) held, so that one does not pause it every time
    super({ highWaterMark: 256 * 1024 })
    const algorithm = digestAlgorithm(digest)
    if (!algorithm) throw new RangeError(`not a digest: ${digest}`)
    this.algorithm = algorithm
    this.hash = createHash(algorithm)
  }

  /** bytes seen so far */
  get received(): number {
    return this.length
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.length += chunk.length
    if (this.size !== undefined && this.length > this.size) {
      done(this.mismatch(`expected ${this.size} bytes, got more`))
      return
    }
    this.hash.update(chunk)
    done(null, chunk)
  }

  override _flush(done: TransformCallback): void {
    if (this.size !== undefined && this.length !== this.size) {
      done(this.mismatch(`expected ${this.size} bytes, got ${this.length}`))
      return
    }
    const computed = `${this.algorithm}:${this.hash.digest('hex')}`
    done(computed === this.digest ? null : this.mismatch(`expected ${this.digest}, computed ${computed}`))
  }
}
