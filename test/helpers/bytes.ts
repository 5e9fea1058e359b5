import { createCipheriv, createHash } from 'node:crypto'

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

/**
 * Deterministic incompressible bytes at memory speed (the AES-256-CTR keystream of a key made from
 * `seed`): for bulk data whose exact bytes no test pins (bytes() costs a hash per 32 bytes).
 */
export function noise(seed: string, n: number): Buffer {
  const key = createHash('sha256').update(seed).digest()
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n))
}

/** 'equal', or where two buffers first differ: a failure message that says more than "not equal". */
export function firstDifference(ours: Buffer, theirs: Buffer): string {
  let i = 0
  while (i < ours.length && i < theirs.length && ours[i] === theirs[i]) i++
  return ours.equals(theirs) ? 'equal' : `differ at byte ${i} of ${theirs.length} (ours ${ours.length} bytes)`
}
