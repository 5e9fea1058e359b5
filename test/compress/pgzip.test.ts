// The pgzip encoder against the real thing: klauspost pgzip 1.2.5 on compress 1.15.12, built at test
// time from Debian's packages (test/tools/pgzip-ref), must write the same gzip bytes as our C encoder
// wrapped in gzip-member.ts, at every level, both block sizes that matter, on random bytes, text, zeros,
// a real tar, sizes around block and window boundaries and any split into write() calls. And layers
// umoci and skopeo themselves wrote come back byte for byte from their tar.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import zlib from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { candidatesFor, createDeflateEncoder, type DeflateParams } from '../../src/oci/compress/compressor.js'
import { createGzipMember, isGzipHeaderProblem, parseGzipHeader, type GzipHeader } from '../../src/oci/compress/gzip-member.js'
import { PGZIP_DEFAULT_BLOCK_SIZE, PGZIP_UMOCI_BLOCK_SIZE, PGZIP_ZERO_MTIME, createPgzipEncoder } from '../../src/oci/compress/pgzip.js'
import { firstDifference } from '../helpers/bytes.js'
import { mixedInput, randomBytes, text } from '../helpers/compressible.js'
import { buildGoProgram } from '../helpers/go-program.js'
import { requireTools, tool } from '../helpers/oci.js'

const GOPATH = '/usr/share/gocode'
const SOURCES = ['github.com/klauspost/pgzip', 'github.com/klauspost/compress/flate']
const LEVELS = [-2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
const KiB = 1024
const MiB = 1024 * KiB

let work: string
let refBin: string

beforeAll(() => {
  requireTools('go', 'umoci', 'skopeo', 'tar')
  const missing = SOURCES.filter((s) => !existsSync(path.join(GOPATH, 'src', s)))
  if (missing.length > 0) throw new Error(`${missing.join(', ')} not under ${GOPATH}: run make setup (scripts/setup.sh installs golang-github-klauspost-pgzip-dev and -compress-dev)`)
  work = mkdtempSync(path.join(os.tmpdir(), 'snapdir-pgzip-'))
  refBin = buildGoProgram(work, 'pgzip-ref', readFileSync('test/tools/pgzip-ref/main.go', 'utf8'))
})

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true })
})

/** What pgzip writes for input at that level and block size (its writes split at `split` bytes). */
function goGzip(input: Buffer, level: number, blockSize: number, split = MiB): Buffer {
  const r = spawnSync(refBin, [String(level), String(blockSize), String(split)], { input, maxBuffer: 1 << 30 })
  if (r.status !== 0) throw new Error(`pgzip-ref exited ${r.status}: ${r.stderr.toString()}`)
  return r.stdout
}

function header(gz: Buffer): GzipHeader {
  const h = parseGzipHeader(gz)
  if (isGzipHeaderProblem(h)) throw new Error(h.problem)
  return h
}

/** Our gzip member for input: the given header bytes, our encoder, writes cut at the given sizes (cycled). */
function ourGzip(input: Buffer, opts: { headerBytes: Buffer; level: number; blockSize: number; splits?: number[]; threads?: number }): Buffer {
  const encoder = createPgzipEncoder({ level: opts.level, blockSize: opts.blockSize, ...(opts.threads === undefined ? {} : { threads: opts.threads }) })
  const w = createGzipMember({ headerBytes: opts.headerBytes, encoder })
  const out: Buffer[] = []
  const splits = opts.splits ?? [input.length || 1]
  for (let at = 0, i = 0; at < input.length; i++) {
    const n = splits[i % splits.length]!
    out.push(w.write(input.subarray(at, at + n)))
    at += n
  }
  out.push(w.end())
  return Buffer.concat(out)
}

function expectSame(input: Buffer, level: number, blockSize: number, splits?: number[], threads?: number): void {
  const ref = goGzip(input, level, blockSize)
  const ours = ourGzip(input, { headerBytes: header(ref).headerBytes, level, blockSize, ...(splits ? { splits } : {}), ...(threads === undefined ? {} : { threads }) })
  expect(firstDifference(ours, ref), `level ${level}, block ${blockSize}, ${input.length} bytes`).toBe('equal')
}

const mixed = mixedInput()

describe('pgzip encoder: byte for byte what klauspost pgzip 1.2.5 writes', () => {
  it.each(LEVELS)('level %i, 256 KiB and 1 MiB blocks, on text, random bytes and zeros', (level) => {
    expectSame(mixed, level, PGZIP_UMOCI_BLOCK_SIZE)
    expectSame(mixed, level, PGZIP_DEFAULT_BLOCK_SIZE)
  })

  it('a real tar of a directory tree, every level at 1 MiB blocks, the default level at 256 KiB', () => {
    const tar = spawnSync('tar', ['--sort=name', '-cf', '-', '-C', '/usr/share', 'perl'], { maxBuffer: 1 << 30 })
    expect(tar.status).toBe(0)
    expect(tar.stdout.length).toBeGreaterThan(8 * MiB)
    for (const level of LEVELS) expectSame(tar.stdout, level, PGZIP_DEFAULT_BLOCK_SIZE)
    expectSame(tar.stdout, -1, PGZIP_UMOCI_BLOCK_SIZE)
  })

  it('sizes around block, tail, window and stored-block boundaries', () => {
    const src = Buffer.concat([text(600_000, 5), randomBytes(300_000, 6)])
    const B = PGZIP_UMOCI_BLOCK_SIZE
    const sizes = [0, 1, 12, 13, 32, 33, 127, 128, 16384, 16385, 65535, 65536, 65537, 131070, B - 1, B, B + 1, B + 16384, B + 16385, 2 * B, 2 * B + 1, 3 * B - 5]
    for (const level of [-1, 1, 6, 9, 0, -2]) {
      for (const n of sizes) expectSame(src.subarray(0, n), level, B)
    }
  })

  it('the same stream for any split into write() calls, with or without worker threads', () => {
    const input = Buffer.concat([mixed, text(300_000, 7)])
    const splits = [1, 7, 4096, 65535, 262_143, 3, 1_000_003, 16_385]
    for (const level of [-1, 4, 8]) {
      expectSame(input, level, PGZIP_UMOCI_BLOCK_SIZE, splits, 2)
      expectSame(input, level, PGZIP_UMOCI_BLOCK_SIZE, [33_333], 0)
      expectSame(input, level, PGZIP_DEFAULT_BLOCK_SIZE, [1, 999_999], 3)
    }
  })

  it('the async calls (on the libuv pool) give the same stream, and refuse a call while one runs', async () => {
    const input = Buffer.concat([mixed, text(300_000, 7)])
    const ref = goGzip(input, -1, PGZIP_UMOCI_BLOCK_SIZE)
    const e = createPgzipEncoder({ level: -1, blockSize: PGZIP_UMOCI_BLOCK_SIZE })
    const parts: Buffer[] = []
    for (let at = 0; at < input.length; at += 333_333) parts.push(await e.writeAsync(input.subarray(at, at + 333_333)))
    const pending = e.endAsync()
    expect(() => e.write(Buffer.from('x'))).toThrow(/busy with an async call/)
    parts.push(await pending)
    expect(firstDifference(Buffer.concat(parts), ref.subarray(header(ref).headerBytes.length, ref.length - 8))).toBe('equal')
    expect(() => e.end()).toThrow(/the encoder has ended/)
  })

  it('writes the header pgzip writes: MTIME of Go zero time, XFL from the level, OS 255', () => {
    for (const [level, xfl] of [[-1, 0], [1, 4], [9, 2], [5, 0]] as const) {
      const h = header(goGzip(Buffer.from('x'), level, PGZIP_DEFAULT_BLOCK_SIZE))
      expect({ mtime: h.mtime, xfl: h.xfl, os: h.os, flags: h.flags }).toEqual({ mtime: PGZIP_ZERO_MTIME, xfl, os: 255, flags: 0 })
      expect(candidatesFor(h)).toContainEqual({ family: 'pgzip', level: level === 5 ? -1 : level, blockSize: PGZIP_DEFAULT_BLOCK_SIZE })
    }
  })

  it('refuses a level or block size pgzip refuses', () => {
    expect(() => createPgzipEncoder({ level: 10, blockSize: MiB })).toThrow(/options.level must be an integer -2..9, got 10/)
    expect(() => createPgzipEncoder({ level: -1, blockSize: 16384 })).toThrow(/options.blockSize must be an integer 16385/)
    const e = createPgzipEncoder({ level: -1, blockSize: MiB })
    e.end()
    expect(() => e.end()).toThrow(/the encoder has ended/)
  })
})

/** The single layer of the image in an OCI layout: its digest, gzip blob and tar. */
function onlyLayer(layout: string): { digest: string; blob: Buffer; tar: Buffer } {
  const blobs = path.join(layout, 'blobs', 'sha256')
  const index = JSON.parse(readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
  const manifest = JSON.parse(readFileSync(path.join(blobs, index.manifests[0]!.digest.slice(7)), 'utf8')) as { layers: Array<{ digest: string; mediaType: string }> }
  expect(manifest.layers).toHaveLength(1)
  expect(manifest.layers[0]!.mediaType).toMatch(/gzip/)
  const digest = manifest.layers[0]!.digest
  const blob = readFileSync(path.join(blobs, digest.slice(7)))
  return { digest, blob, tar: zlib.gunzipSync(blob) }
}

/** The candidates the blob's header allows that regenerate it exactly (sha256 equal to its digest). */
function regenerating(layer: { digest: string; blob: Buffer; tar: Buffer }): DeflateParams[] {
  const h = header(layer.blob)
  expect({ mtime: h.mtime, xfl: h.xfl, os: h.os }).toEqual({ mtime: PGZIP_ZERO_MTIME, xfl: 0, os: 255 })
  return candidatesFor(h).filter((p) => {
    const w = createGzipMember({ headerBytes: h.headerBytes, encoder: createDeflateEncoder(p) })
    const out = Buffer.concat([w.write(layer.tar), w.end()])
    return `sha256:${createHash('sha256').update(out).digest('hex')}` === layer.digest
  })
}

/** An image of one layer made with umoci: a small tree of text, random bytes and zeros. */
function umociImage(dir: string): string {
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
  return layout
}

describe('layers the tools users meet wrote', () => {
  it('umoci 0.4.7: regenerated byte for byte from its tar, at the default level with 256 KiB blocks', () => {
    const layer = onlyLayer(umociImage(mkdtempSync(path.join(work, 'umoci-'))))
    expect(layer.tar.length).toBeGreaterThan(3 * PGZIP_UMOCI_BLOCK_SIZE)
    expect(regenerating(layer)).toEqual([{ family: 'pgzip', level: -1, blockSize: PGZIP_UMOCI_BLOCK_SIZE }])
  })

  it('skopeo recompressing (containers/image): the default level with 1 MiB blocks', () => {
    const dir = mkdtempSync(path.join(work, 'skopeo-'))
    const layout = umociImage(dir)
    tool('skopeo', ['copy', '--dest-decompress', `oci:${layout}:t`, `dir:${path.join(dir, 'plain')}`])
    tool('skopeo', ['copy', '--dest-compress', '--dest-compress-format', 'gzip', `dir:${path.join(dir, 'plain')}`, `oci:${path.join(dir, 'again')}:t`])
    const layer = onlyLayer(path.join(dir, 'again'))
    expect(layer.tar.length).toBeGreaterThan(PGZIP_DEFAULT_BLOCK_SIZE)
    expect(regenerating(layer)).toEqual([{ family: 'pgzip', level: -1, blockSize: PGZIP_DEFAULT_BLOCK_SIZE }])
  })
})
