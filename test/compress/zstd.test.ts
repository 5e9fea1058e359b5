// The zstd encoder against the real thing: klauspost/compress 1.15.12's zstd.NewWriter with the options
// containers/image uses, built at test time from Debian's golang-github-klauspost-compress-dev
// (test/tools/zstd-ref), must write the same bytes as our C encoder on random bytes, text, zeros, a real
// tar, sizes around the block boundaries and the single-segment cut-off, and any split into write()
// calls. And a layer skopeo itself compressed with zstd comes back byte for byte from its tar.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decompress } from 'zstd-napi'
import { ZSTD_SPEED_DEFAULT, ZSTD_SPEED_FASTEST, createZstdEncoder, zstdCandidates } from '../../src/oci/compress/zstd.js'
import { firstDifference } from '../helpers/bytes.js'
import { mixedInput, randomBytes, text } from '../helpers/compressible.js'
import { buildGoProgram } from '../helpers/go-program.js'
import { requireTools, tool } from '../helpers/oci.js'

const GOPATH = '/usr/share/gocode'
const SOURCE = 'github.com/klauspost/compress/zstd'
const KiB = 1024
const BLOCK = 128 * KiB

let work: string
let refBin: string

beforeAll(() => {
  requireTools('go', 'umoci', 'skopeo', 'tar')
  if (!existsSync(path.join(GOPATH, 'src', SOURCE))) throw new Error(`${SOURCE} not under ${GOPATH}: run make setup (scripts/setup.sh installs golang-github-klauspost-compress-dev)`)
  work = mkdtempSync(path.join(os.tmpdir(), 'snapdir-zstd-'))
  refBin = buildGoProgram(work, 'zstd-ref', readFileSync('test/tools/zstd-ref/main.go', 'utf8'))
})

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true })
})

/** What klauspost's encoder writes for input (its writes split at `split` bytes, `concurrency` goroutines, 0: GOMAXPROCS; level 0: none given). */
function goZstd(input: Buffer, split = 32 * KiB, concurrency = 0, level = 0): Buffer {
  const r = spawnSync(refBin, [String(split), String(concurrency), String(level)], { input, maxBuffer: 1 << 30 })
  if (r.status !== 0) throw new Error(`zstd-ref exited ${r.status}: ${r.stderr.toString()}`)
  return r.stdout
}

/** Our stream for input, writes cut at the given sizes (cycled). */
function ourZstd(input: Buffer, splits: number[] = [input.length || 1]): Buffer {
  const e = createZstdEncoder({ level: ZSTD_SPEED_DEFAULT })
  const out: Buffer[] = []
  for (let at = 0, i = 0; at < input.length; i++) {
    const n = splits[i % splits.length]!
    out.push(e.write(input.subarray(at, at + n)))
    at += n
  }
  out.push(e.end())
  return Buffer.concat(out)
}

function expectSame(input: Buffer, splits?: number[]): void {
  const ref = goZstd(input)
  expect(firstDifference(ourZstd(input, splits), ref), `${input.length} bytes`).toBe('equal')
}

const mixed = mixedInput()

describe('zstd encoder: byte for byte what klauspost/compress 1.15.12 writes at SpeedDefault', () => {
  it('text, random bytes, zeros and a low-entropy stream', () => {
    expectSame(mixed)
    expectSame(randomBytes(1_000_000, 9))
    expectSame(Buffer.alloc(3_000_000))
    expectSame(text(2_000_000, 5))
    expectSame(Buffer.from(randomBytes(2_000_000, 3).map((x) => x & 3)))
  })

  it('a real tar of a directory tree', () => {
    const tar = spawnSync('tar', ['--sort=name', '-cf', '-', '-C', '/usr/share', 'perl'], { maxBuffer: 1 << 30 })
    expect(tar.status).toBe(0)
    expect(tar.stdout.length).toBeGreaterThan(8 * 1024 * KiB)
    expectSame(tar.stdout)
  })

  it('sizes around the block, literal-only and single-segment boundaries', () => {
    const sizes = [0, 1, 2, 15, 16, 17, 31, 32, 33, 255, 256, 257, 1023, 1024, 1025, 65535, 65536, 65791, 65792, 100_000, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 2 * BLOCK + 5, 3 * BLOCK - 1]
    for (const n of sizes) {
      expectSame(mixed.subarray(0, n))
      expectSame(text(n, 7))
      expectSame(randomBytes(n, 8))
    }
  })

  it('the same stream for any split into write() calls, and whatever Go\'s concurrency', () => {
    expectSame(mixed, [1, 7, 4096, 65535, 131_071, 3, 1_000_003, 16_385])
    expectSame(mixed, [BLOCK])
    const ref = goZstd(mixed, 1_000_003, 1)
    expect(goZstd(mixed, 4096, 4)).toEqual(ref)
    expect(firstDifference(ourZstd(mixed, [33_333]), ref)).toBe('equal')
  })

  it('the async calls (on the libuv pool) give the same stream, and refuse a call while one runs', async () => {
    const ref = goZstd(mixed)
    const e = createZstdEncoder({ level: ZSTD_SPEED_DEFAULT })
    const parts: Buffer[] = []
    for (let at = 0; at < mixed.length; at += 333_333) parts.push(await e.writeAsync(mixed.subarray(at, at + 333_333)))
    const pending = e.endAsync()
    expect(() => e.write(Buffer.from('x'))).toThrow(/busy with an async call/)
    parts.push(await pending)
    expect(firstDifference(Buffer.concat(parts), ref)).toBe('equal')
    expect(() => e.end()).toThrow(/the encoder has ended/)
  })

  it('writes the frame fields Go writes: 8 MiB window and checksum for a stream, content size and single segment below one block', () => {
    const stream = ourZstd(text(300_000, 1))
    // magic, FHD 0x04 (checksum, no content size, not single segment), window descriptor 0x68 (2^23)
    expect([...stream.subarray(0, 6)]).toEqual([0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x68])
    const small = ourZstd(text(100_000, 1))
    // FHD 0xa4: checksum, single segment, a 4-byte content size (100,000); no window descriptor
    expect([...small.subarray(0, 9)]).toEqual([0x28, 0xb5, 0x2f, 0xfd, 0xa4, 0xa0, 0x86, 0x01, 0x00])
    expect(ourZstd(Buffer.alloc(0))).toHaveLength(0)
    expect(decompress(stream)).toEqual(text(300_000, 1))
  })

  it('SpeedFastest (WithEncoderLevel(1): 4 MiB window, 64 KiB blocks, literal-only blocks raw) too', () => {
    const tar = spawnSync('tar', ['--sort=name', '-cf', '-', '-C', '/usr/share', 'perl'], { maxBuffer: 1 << 30 })
    for (const input of [mixed, tar.stdout, text(65_535, 3), text(65_536, 3), text(70_000, 3), randomBytes(200_000, 4), Buffer.alloc(500_000)]) {
      const ref = goZstd(input, 32 * KiB, 0, ZSTD_SPEED_FASTEST)
      const e = createZstdEncoder({ level: ZSTD_SPEED_FASTEST })
      const ours = Buffer.concat([e.write(input.subarray(0, 77_777)), e.write(input.subarray(77_777)), e.end()])
      expect(firstDifference(ours, ref), `${input.length} bytes`).toBe('equal')
    }
    const stream = goZstd(mixed, 32 * KiB, 0, ZSTD_SPEED_FASTEST)
    expect([...stream.subarray(4, 6)]).toEqual([0x04, 0x60])
    expect(zstdCandidates(stream)).toEqual({ candidates: [{ family: 'klauspost', level: 1, windowSize: 4 << 20, blockSize: 64 << 10, checksum: true }] })
  })

  it('refuses a level it cannot reproduce, and a used encoder', () => {
    expect(() => createZstdEncoder({ level: 3 })).toThrow(/options.level must be one of 2, 1 \(klauspost EncoderLevel\), got 3/)
    const e = createZstdEncoder({ level: ZSTD_SPEED_DEFAULT })
    e.end()
    expect(() => e.end()).toThrow(/the encoder has ended/)
  })
})

describe('layers the tools users meet wrote', () => {
  it('skopeo copy --dest-compress-format zstd (containers/image): regenerated byte for byte from its tar', () => {
    const dir = mkdtempSync(path.join(work, 'skopeo-'))
    const layout = path.join(dir, 'layout')
    const bundle = path.join(dir, 'bundle')
    tool('umoci', ['init', '--layout', layout])
    tool('umoci', ['new', '--image', `${layout}:t`])
    tool('umoci', ['unpack', '--image', `${layout}:t`, bundle])
    const rootfs = path.join(bundle, 'rootfs')
    mkdirSync(path.join(rootfs, 'etc', 'app'), { recursive: true })
    writeFileSync(path.join(rootfs, 'etc', 'app', 'words.txt'), text(1_700_000, 11))
    writeFileSync(path.join(rootfs, 'etc', 'app', 'random.bin'), randomBytes(300_000, 12))
    writeFileSync(path.join(rootfs, 'zeros'), Buffer.alloc(200_000))
    tool('umoci', ['repack', '--image', `${layout}:t`, bundle])
    const zst = path.join(dir, 'zstd')
    tool('skopeo', ['copy', '--dest-compress-format', 'zstd', `oci:${layout}:t`, `oci:${zst}:t`])

    const blobs = path.join(zst, 'blobs', 'sha256')
    const index = JSON.parse(readFileSync(path.join(zst, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
    const manifest = JSON.parse(readFileSync(path.join(blobs, index.manifests[0]!.digest.slice(7)), 'utf8')) as { layers: Array<{ digest: string; mediaType: string }> }
    expect(manifest.layers).toHaveLength(1)
    expect(manifest.layers[0]!.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd')
    const digest = manifest.layers[0]!.digest
    const blob = readFileSync(path.join(blobs, digest.slice(7)))
    const tar = decompress(blob)
    expect(tar.length).toBeGreaterThan(8 * BLOCK)
    const ours = ourZstd(tar, [65_536])
    expect(firstDifference(ours, blob)).toBe('equal')
    expect(`sha256:${createHash('sha256').update(ours).digest('hex')}`).toBe(digest)
  })
})
