// Inputs for the compressor tests: deterministic, and shaped like what layers hold (text with skewed
// word frequencies, incompressible runs, zeros), so every encoder path is taken.

/** Deterministic bytes: a xorshift stream. */
export function randomBytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    b[i] = x & 0xff
  }
  return b
}

/** Text-like bytes: words from a small vocabulary with skewed frequencies, lines and numbers. */
export function text(n: number, seed: number): Buffer {
  const words = 'the of and to in is for on that with as by this from be are at or layer image file tar gzip zstd block deflate frame window match offset length huffman table'.split(' ')
  const r = randomBytes(n, seed)
  const parts: string[] = []
  let len = 0
  for (let i = 0; len < n; i++) {
    const v = r[i % n]!
    const w = v % 7 === 0 ? String(v * 37 + i) : words[(v * v) % words.length]!
    const sep = v % 13 === 0 ? '\n' : ' '
    parts.push(w, sep)
    len += w.length + 1
  }
  return Buffer.from(parts.join('')).subarray(0, n)
}

/** About 2.8 MB of text, random bytes and zeros, crossing every block and window size the encoders use. */
export function mixedInput(): Buffer {
  return Buffer.concat([text(1_100_000, 1), randomBytes(400_000, 2), Buffer.alloc(700_000), text(500_000, 3), randomBytes(77_777, 4)])
}
