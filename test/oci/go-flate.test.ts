// oci/compress/go-flate.ts and native/go-flate.c: gzip written by our port of Go's compress/flate is
// byte for byte what Go 1.19's compress/gzip writes (as dockerd, BuildKit, containerd and crane call it),
// at every level, on several kinds of input, sizes across every block and window boundary, and odd
// splits of the input into writes. The reference is the real Go code, built here from Debian's golang-go.
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { crc32 } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { candidatesFor, createDeflateEncoder } from '../../src/oci/compress/compressor.js'
import { createGoFlateEncoder, encodeGoFlateSegment, GO_FLATE_LEVELS, GO_FLATE_START, hasRestartPoints, joinGoFlateSegments, type GoFlateRestart } from '../../src/oci/compress/go-flate.js'
import { createGzipMember, isGzipHeaderProblem, parseGzipHeader } from '../../src/oci/compress/gzip-member.js'
import { firstDifference, noise } from '../helpers/bytes.js'
import { buildGoProgram } from '../helpers/go-program.js'

/** gogzip LEVEL SPLITS FILE: FILE gzipped to stdout, written in pieces of SPLITS bytes (cycled; 0: the rest). */
const GO_GZIP = `package main

import (
	"compress/gzip"
	"os"
	"strconv"
	"strings"
)

func main() {
	level, _ := strconv.Atoi(os.Args[1])
	var sizes []int
	for _, s := range strings.Split(os.Args[2], ",") {
		n, _ := strconv.Atoi(s)
		sizes = append(sizes, n)
	}
	data, err := os.ReadFile(os.Args[3])
	if err != nil {
		panic(err)
	}
	w, err := gzip.NewWriterLevel(os.Stdout, level)
	if err != nil {
		panic(err)
	}
	for i := 0; len(data) > 0; i++ {
		n := sizes[i%len(sizes)]
		if n <= 0 || n > len(data) {
			n = len(data)
		}
		if _, err := w.Write(data[:n]); err != nil {
			panic(err)
		}
		data = data[n:]
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
}
`

let dir = ''
let gogzip = ''
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'snapdir-goflate-'))
  gogzip = buildGoProgram(dir, 'gogzip', GO_GZIP)
})
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})

let inputs = 0
const goOutputs = new Map<string, Buffer>()
function goGzip(level: number, data: Buffer, splits: number[]): Buffer {
  // the same input is compared several ways; Go compresses it once per level and split
  const key = `${level} ${splits.join(',')} ${createHash('sha256').update(data).digest('hex')}`
  const known = goOutputs.get(key)
  if (known) return known
  const file = path.join(dir, `input-${inputs++}`)
  writeFileSync(file, data)
  try {
    const out = execFileSync(gogzip, [String(level), splits.join(','), file], { maxBuffer: 1 << 30 })
    goOutputs.set(key, out)
    return out
  } finally {
    rmSync(file)
  }
}

/** Go's compress/gzip header with a zero ModTime and the default OS (unknown): XFL from the level. */
function goHeader(level: number): Buffer {
  return Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, level === 9 ? 2 : level === 1 ? 4 : 0, 255])
}

/** Ours, in the same writes as Go got (followWrites), or as the recipe encoder would (createDeflateEncoder). */
function ourGzip(level: number, data: Buffer, splits: number[], followWrites = true): Buffer {
  const encoder = followWrites ? createGoFlateEncoder(level, { followWrites }) : createDeflateEncoder({ family: 'go', level })
  const member = createGzipMember({ headerBytes: goHeader(level), encoder })
  const out: Buffer[] = []
  for (let i = 0, at = 0; at < data.length; i++) {
    let n = splits[i % splits.length]!
    if (n <= 0 || n > data.length - at) n = data.length - at
    out.push(member.write(data.subarray(at, at + n)))
    at += n
  }
  out.push(member.end())
  return Buffer.concat(out)
}

function expectSameAsGo(level: number, data: Buffer, splits: number[] = [0], what = 'input'): void {
  const go = goGzip(level, data, splits)
  expect(firstDifference(ourGzip(level, data, splits), go), `${what} at level ${level}, ${data.length} bytes in writes of ${splits.join(',')}`).toBe('equal')
  if (splits.length > 1 || splits[0] !== 0) {
    // the recipe encoder steps on full windows only: one large write's bytes, whatever the split
    const whole = goGzip(level, data, [0])
    expect(firstDifference(ourGzip(level, data, splits, false), whole), `${what} at level ${level}, not following the writes`).toBe('equal')
  }
}

/** Text-like bytes: words from a small vocabulary, deterministic, compressible about as much as prose. */
function words(seed: number, n: number): Buffer {
  const vocabulary = 'the of and to in is that for it as with was on be by at this are from or have an they which one you were her all she there would their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three'.split(' ')
  const out = Buffer.alloc(n)
  let x = seed >>> 0
  let at = 0
  while (at < n) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    const w = vocabulary[(x >>> 8) % vocabulary.length]!
    at += out.write((x & 0x1f) === 0 ? `${w}.\n` : `${w} `, at, 'latin1')
  }
  return out
}

/** A tar of a real directory tree (Go's own sources and one of its binaries: text and machine code). */
let tarBytes: Buffer | undefined
function realTar(): Buffer {
  return (tarBytes ??= execFileSync('tar', ['-cf', '-', '--sort=name', '-C', '/usr/lib/go-1.19', 'src/compress', 'src/archive', 'pkg/tool/linux_amd64/asm'], { maxBuffer: 1 << 30 }))
}

const ODD_SPLITS = [1, 7, 4096, 65535, 3, 100_000, 32_768, 262, 511, 512]

describe('Go compress/gzip, byte for byte', () => {
  it('writes the header dockerd writes, which names the levels it can come from', () => {
    for (const level of GO_FLATE_LEVELS) {
      const go = goGzip(level, Buffer.from('x'), [0])
      const header = parseGzipHeader(go)
      if (isGzipHeaderProblem(header)) throw new Error(header.problem)
      expect(header.headerBytes).toEqual(goHeader(level))
      expect(header.mtime).toBe(0)
      expect(header.os).toBe(255)
      const levels = candidatesFor(header).map((c) => c.level)
      expect(levels).toContain(level === -1 ? 6 : level)
    }
  })

  it('random, text and zeros at every level, in one write and in odd pieces', () => {
    const cases = { random: noise('go-flate random', 300_000), text: words(1, 400_000), zeros: Buffer.alloc(200_000) }
    for (const [name, data] of Object.entries(cases)) {
      for (const level of GO_FLATE_LEVELS) {
        expectSameAsGo(level, data, [0], name)
        expectSameAsGo(level, data, ODD_SPLITS, name)
      }
    }
  })

  it('a tar of a real directory tree at every level', () => {
    const tar = realTar()
    expect(tar.length).toBeGreaterThan(4 << 20)
    for (const level of GO_FLATE_LEVELS) {
      if (level === -1) continue // the same encoder as 6, checked on the smaller inputs
      expectSameAsGo(level, tar, level === 1 || level === 6 || level === 9 ? [32_768, 512, 1, 70_000] : [0])
    }
  })

  it('sizes at every block and window boundary', () => {
    // 16 (stored rather than Huffman-coded at level 1), 128, 2^14 tokens (a deflate block), 65,535 (a
    // stored or BestSpeed block), the 65,274 at which the window slides, 2 x 32 KiB and past them.
    const sizes = [0, 1, 3, 4, 16, 17, 127, 128, 129, 16_383, 16_384, 16_385, 65_273, 65_274, 65_275, 65_535, 65_536, 65_537, 98_304, 131_073]
    const data = Buffer.concat([noise('go-flate boundaries', 70_000), words(2, 70_000)])
    for (const size of sizes) {
      for (const level of GO_FLATE_LEVELS) if (level !== -1) expectSameAsGo(level, data.subarray(data.length - size))
    }
  })

  it('a stream past 16 MiB, where Go rebases its hash positions (levels 2..9 share that code)', () => {
    const data = Buffer.concat([words(3, 9 << 20), noise('go-flate long', 1 << 20), words(4, 8 << 20)])
    expectSameAsGo(6, data)
  })

  it('follows Go where the split into writes changes its output: a write that leaves the window end short of 64 KiB', () => {
    // Go's window slides when a fill finds the search position at 65,274 or past it. A write that ends
    // the window at 65,535 stops the search at 65,274 and the slide comes first, so position 65,274
    // loses the 262 bytes it could have matched; one large write searches 65,274 before sliding.
    const data = noise('go-flate split', 70_000)
    data.copy(data, 65_274, 32_600, 32_700)
    const whole = goGzip(6, data, [0])
    const split = goGzip(6, data, [65_535])
    expect(whole.equals(split)).toBe(false)
    expect(firstDifference(ourGzip(6, data, [0]), whole)).toBe('equal')
    expect(firstDifference(ourGzip(6, data, [65_535]), split)).toBe('equal')
    // writes at multiples of 32 KiB never end the window short of 64 KiB: the same bytes as one write
    expect(firstDifference(ourGzip(6, data, [32_768]), whole)).toBe('equal')
    // and an encoder that does not follow the writes gives one write's bytes for any split
    expect(firstDifference(ourGzip(6, data, [65_535], false), whole)).toBe('equal')
    expect(firstDifference(ourGzip(6, data, [1], false), whole)).toBe('equal')
  })

  it('refuses a level Go refuses, and an encoder that has ended', () => {
    expect(() => createDeflateEncoder({ family: 'go', level: 10 })).toThrow(/level must be -2\.\.9, got 10/)
    expect(() => createDeflateEncoder({ family: 'go', level: -3 })).toThrow(/level must be -2\.\.9/)
    const e = createDeflateEncoder({ family: 'go', level: 6 })
    e.end()
    expect(() => e.write(Buffer.from('x'))).toThrow(/the encoder has ended/)
  })
})

describe('gzip headers', () => {
  it('parses every optional field exactly and says what is wrong with a bad one', () => {
    const h = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0x1c, 1, 2, 3, 4, 0, 3, 3, 0]), Buffer.from('abc'), Buffer.from('name\0comment\0'), Buffer.from('deflate')])
    const parsed = parseGzipHeader(h)
    if (isGzipHeaderProblem(parsed)) throw new Error(parsed.problem)
    expect(parsed.headerBytes).toEqual(h.subarray(0, h.length - 7))
    expect(parsed.mtime).toBe(0x04030201)
    expect(parsed.os).toBe(3)
    expect(parsed.extra).toEqual(Buffer.from('abc'))
    expect(parsed.name).toEqual(Buffer.from('name'))
    expect(parsed.comment).toEqual(Buffer.from('comment'))
    expect(parseGzipHeader(h.subarray(0, 20))).toEqual({ problem: 'gzip header ends inside its comment', truncated: true })
    expect(parseGzipHeader(Buffer.from('PK\x03\x04xxxxxxxx'))).toMatchObject({ problem: 'not gzip (no 1f 8b magic)', truncated: false })
    expect(parseGzipHeader(Buffer.from([0x1f, 0x8b, 8, 0x20, 0, 0, 0, 0, 0, 0]))).toMatchObject({ truncated: false })
    // a header CRC (FHCRC) is checked, and rules out Go, which never writes one
    const withCrc = Buffer.from([0x1f, 0x8b, 8, 2, 0, 0, 0, 0, 0, 255, 0, 0])
    expect(parseGzipHeader(withCrc)).toMatchObject({ problem: 'gzip header CRC-16 does not match' })
    withCrc.writeUInt16LE(crc32(withCrc.subarray(0, 10)) & 0xffff, 10)
    const good = parseGzipHeader(withCrc)
    if (isGzipHeaderProblem(good)) throw new Error(good.problem)
    expect(good.headerBytes).toEqual(withCrc)
    expect(candidatesFor(good)).toEqual([])
  })
})

describe('restart points (levels 4..9)', () => {
  /** Encodes data whole noting restart points, then in segments from the points `pick` keeps, and compares both with Go. */
  async function expectSegmentsJoinToGo(level: number, data: Buffer, pick: (r: GoFlateRestart, i: number) => boolean): Promise<GoFlateRestart[]> {
    const encoder = createGoFlateEncoder(level, { recordRestarts: true })
    const whole: Buffer[] = []
    for (let at = 0; at < data.length; at += 1 << 20) whole.push(encoder.write(data.subarray(at, at + (1 << 20))))
    whole.push(encoder.end())
    const restarts = encoder.restarts()
    const points = [GO_FLATE_START, ...restarts.filter(pick)]
    const parts = await Promise.all(
      points.map(async (from, i) => {
        const next = points[i + 1]
        const input = next ? data.subarray(from.base, next.input + (128 << 10)) : data.subarray(from.base)
        const bytes = await encodeGoFlateSegment({ level, from, endBit: next ? next.outBit : null, input, inputEnds: input.length === data.length - from.base })
        return { from, bytes }
      }),
    )
    const joined = joinGoFlateSegments(parts)
    expect(firstDifference(joined, Buffer.concat(whole)), `level ${level}, ${points.length} segments`).toBe('equal')
    // and the whole run is Go's (its header and trailer around it)
    const go = goGzip(level, data, [0])
    expect(firstDifference(joined, go.subarray(10, go.length - 8)), `level ${level} against Go`).toBe('equal')
    return restarts
  }

  it('segments encoded apart from recorded restart points, joined, are Go bytes', async () => {
    for (const level of [4, 6, 9]) {
      // every third block boundary, and one segment ending just after the first block
      const restarts = await expectSegmentsJoinToGo(level, realTar(), (_, i) => i === 0 || i % 3 === 0)
      expect(restarts.length).toBeGreaterThan(20)
    }
  })

  it('a point noted just before the window slides: the second encoder slides first', async () => {
    // 16,182 zeros put the 16,384th token of a block on the literal at window position 65,273 of
    // incompressible data, the last one a step handles before the next fill slides the window.
    const data = Buffer.concat([Buffer.alloc(16_182), noise('go-flate slide point', 400_000)])
    for (const level of [4, 6, 9]) {
      const restarts = await expectSegmentsJoinToGo(level, data, () => true)
      expect(restarts.filter((r) => r.input - r.base >= 65_274).length, `level ${level}`).toBeGreaterThan(0)
    }
  })

  it('says when a segment lacks input, and which levels have no restart points', async () => {
    const data = words(5, 600_000)
    const encoder = createGoFlateEncoder(6, { recordRestarts: true })
    encoder.write(data)
    encoder.end()
    const [first, second] = encoder.restarts()
    expect(first && second).toBeTruthy()
    await expect(encodeGoFlateSegment({ level: 6, from: first!, endBit: second!.outBit, input: data.subarray(first!.base, first!.input), inputEnds: false })).rejects.toThrow(/input ended before/)
    for (const level of [-2, 0, 1, 2, 3]) {
      expect(hasRestartPoints(level)).toBe(false)
      expect(() => createGoFlateEncoder(level, { recordRestarts: true })).toThrow(/restart points need level 4\.\.9/)
    }
    expect(() => createGoFlateEncoder(6, { recordRestarts: true, followWrites: true })).toThrow(/with followWrites/)
  })
})
