// The blob cache without HTTP: a blob filled once (its stream checked against its digest as it
// arrived) is served again from its file without being hashed again while the file is the one the
// fill left, and a file changed on disk after (in place, truncated, or replaced) is never served
// whole: the read fails before its last byte, the copy is dropped, the next read fills it again.
import * as crypto from 'node:crypto'
import { readdirSync, readFileSync, renameSync, truncateSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { BlobCache } from '../../src/serve/blob-cache.js'
import type { ServedBlob } from '../../src/serve/repository-images.js'
import { noise } from '../helpers/bytes.js'
import { tempDir } from '../helpers/temp.js'

// createHash as the real one, counted
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>()
  return { ...real, createHash: vi.fn(real.createHash) }
})
const createHash = vi.mocked(crypto.createHash)

const SIZE = 3 * 1024 * 1024 + 17

/** A blob whose stream checks its bytes as the store's does (fails at its end unless they hash to its digest); counts its streams. */
function servedBlob(bytes: Buffer): ServedBlob & { streams: number } {
  const digest = `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`
  const blob = {
    digest,
    size: bytes.length,
    what: `blob ${digest}`,
    streams: 0,
    async *content(): AsyncGenerator<Buffer> {
      blob.streams++
      for (let at = 0; at < bytes.length; at += 100_000) yield bytes.subarray(at, at + 100_000)
    },
  }
  return blob
}

/**
 * What a read gives: whether its bytes are `expected` (compared here: a deep equality of megabytes
 * is slow), how many it gave, and its error if it failed (then they stop short of the whole).
 */
async function read(cache: BlobCache, blob: ServedBlob, expected: Buffer, start = 0, end = blob.size): Promise<{ same: boolean; length: number; failed: string | null }> {
  const parts: Buffer[] = []
  let failed: string | null = null
  try {
    for await (const piece of cache.read(blob, start, end)) parts.push(Buffer.from(piece))
  } catch (err) {
    failed = (err as Error).message
  }
  const bytes = Buffer.concat(parts)
  return { same: bytes.equals(expected), length: bytes.length, failed }
}

const whole = { same: true, failed: null }

describe('blob cache', () => {
  let cache: BlobCache | null = null
  afterEach(async () => {
    await cache?.close()
    cache = null
  })

  async function filled(): Promise<{ dir: string; blob: ReturnType<typeof servedBlob>; bytes: Buffer; file: () => string }> {
    const dir = tempDir()
    cache = new BlobCache({ dir, maxBytes: 64 * 1024 * 1024 })
    await cache.open()
    const bytes = noise('blob-cache', SIZE)
    const blob = servedBlob(bytes)
    expect(await read(cache, blob, bytes)).toMatchObject(whole)
    expect(blob.streams).toBe(1)
    const file = (): string => path.join(dir, readdirSync(dir).find((f) => f.startsWith(blob.digest.replace(':', '-')))!)
    return { dir, blob, bytes, file }
  }

  it('serves a filled blob again, whole and by range, from its file without hashing it again', async () => {
    const { blob, bytes } = await filled()
    createHash.mockClear()
    expect(await read(cache!, blob, bytes)).toMatchObject(whole)
    expect(await read(cache!, blob, bytes.subarray(1000, 2_000_000), 1000, 2_000_000)).toMatchObject(whole)
    expect(createHash).not.toHaveBeenCalled()
    expect(blob.streams).toBe(1)
  })

  it('a file changed in place, truncated or replaced is caught: the read fails short of the whole, the next one fills it again', async () => {
    const { blob, bytes, file } = await filled()
    const changes: Array<[string, (f: string) => void]> = [
      ['a byte flipped', (f) => {
        const b = readFileSync(f)
        b[b.length >> 1]! ^= 0x01
        writeFileSync(f, b)
      }],
      ['truncated', (f) => truncateSync(f, SIZE - 1)],
      ['replaced by a file of the same bytes but one', (f) => {
        const b = Buffer.from(bytes)
        b[7]! ^= 0x80
        writeFileSync(`${f}.new`, b)
        renameSync(`${f}.new`, f)
      }],
    ]
    let streams = blob.streams
    for (const [what, change] of changes) {
      change(file())
      const got = await read(cache!, blob, bytes)
      expect(got.failed, what).not.toBeNull()
      expect(got.length, what).toBeLessThan(SIZE)
      // dropped: the next read fills it from the blob's stream again, whole
      expect(await read(cache!, blob, bytes), what).toMatchObject(whole)
      expect(blob.streams, what).toBe(++streams)
    }
  })
})
