import { createHash } from 'node:crypto'

/** Deterministic pseudo-random bytes (sha256 in counter mode), so fixtures are the same every run. */
export function bytes(seed: string, n: number): Buffer {
  const out: Buffer[] = []
  for (let i = 0, have = 0; have < n; i++) {
    const b = createHash('sha256').update(`${seed}:${i}`).digest()
    out.push(b)
    have += b.length
  }
  return Buffer.concat(out).subarray(0, n)
}
