// snapdir stats: the recipe hit rate per producer family. One image whose seven layers were written by
// the real producers' code (Go's compress/gzip, klauspost pgzip and zstd, built at test time from
// Debian's sources; GNU gzip; the zstd command) or left uncompressed: a blob each of them regenerates
// is counted as a recipe of its family, and a blob kept raw under the family its header points at
// (pgzip at a block size no candidate has: pgzip's header, raw; GNU gzip and the zstd command: other
// gzip and zstd), with the reason push gave.
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DedupStats } from '../../src/oci/dedup-stats.js'
import { snapdirOk } from '../helpers/cli.js'
import { buildGoProgram } from '../helpers/go-program.js'
import { LayoutBuilder, OCI, requireTools } from '../helpers/oci.js'

requireTools('go', 'python3', 'gzip', 'zstd')

let work = ''
let gogzip = ''
let pgzip = ''
let kzstd = ''

beforeAll(() => {
  work = mkdtempSync(path.join(os.tmpdir(), 'snapdir-stats-producers-'))
  for (const [name, tool] of [['gogzip', 'go-gzip'], ['pgzip', 'pgzip-ref'], ['kzstd', 'zstd-ref']] as const) {
    const dir = path.join(work, name)
    mkdirSync(dir)
    const bin = buildGoProgram(dir, name, readFileSync(`test/tools/${tool}/main.go`, 'utf8'))
    if (name === 'gogzip') gogzip = bin
    else if (name === 'pgzip') pgzip = bin
    else kzstd = bin
  }
})
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true })
})

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

/** A tar of 1.5 MB (more than two pgzip blocks of 512 KiB) of text and random bytes, different for each seed. */
function layerTar(seed: number): Buffer {
  const script = [
    'import io, random, sys, tarfile',
    `r = random.Random(${seed})`,
    'b = io.BytesIO()',
    'with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:',
    '    for i in range(12):',
    '        words = " ".join(r.choice(["alpha", "beta", "gamma", "delta", "layer", "blob", str(i)]) for _ in range(16000))',
    '        data = words.encode() + r.randbytes(20000)',
    '        ti = tarfile.TarInfo("usr/share/f%02d" % i); ti.size = len(data); ti.mtime = 1700000000 + i; ti.mode = 0o644',
    '        t.addfile(ti, io.BytesIO(data))',
    'sys.stdout.buffer.write(b.getvalue())',
  ].join('\n')
  return execFileSync('python3', ['-c', script], { maxBuffer: 1 << 28 })
}

function run(command: string, args: string[], input: Buffer): Buffer {
  const r = spawnSync(command, args, { input, maxBuffer: 1 << 28 })
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${r.status}: ${r.stderr.toString()}`)
  return r.stdout
}

describe('snapdir stats: recipes per producer', () => {
  it('counts each layer blob under its producer family: recipes by their compressor, raw blobs by their header, with the reason', async () => {
    const file = path.join(work, 'go-input.tar')
    const layers = [
      { producer: 'go-gzip', recipe: true, type: OCI.layerGzip, blob: (tar: Buffer) => run(gogzip, ['-1', writeThen(file, tar)], Buffer.alloc(0)) },
      { producer: 'pgzip', recipe: true, type: OCI.layerGzip, blob: (tar: Buffer) => run(pgzip, ['-1', String(1 << 20)], tar) },
      // a block size neither containers/image's nor umoci's: its header is pgzip's, no candidate regenerates it
      { producer: 'pgzip', recipe: false, type: OCI.layerGzip, blob: (tar: Buffer) => run(pgzip, ['-1', String(512 << 10)], tar) },
      { producer: 'klauspost-zstd', recipe: true, type: OCI.layerZstd, blob: (tar: Buffer) => run(kzstd, [], tar) },
      { producer: 'tar', recipe: true, type: OCI.layerTar, blob: (tar: Buffer) => tar },
      { producer: 'gzip-other', recipe: false, type: OCI.layerGzip, blob: (tar: Buffer) => run('gzip', ['-n', '-c'], tar) },
      { producer: 'zstd-other', recipe: false, type: OCI.layerZstd, blob: (tar: Buffer) => run('zstd', ['-q', '-c', '-3'], tar) },
    ]
    const layout = path.join(work, 'layout')
    const b = new LayoutBuilder(layout)
    const tars = layers.map((_, i) => layerTar(i + 1))
    const blobs = layers.map((l, i) => b.blob(l.blob(tars[i]!), l.type))
    const config = b.blob({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: tars.map(sha256) } }, OCI.config)
    b.writeIndex([b.manifest({ config, layers: blobs })])
    const store = path.join(work, 'store')
    const pushed = JSON.parse(await snapdirOk(['push', '--json', '--store', store, layout])) as { layerStorage: Array<{ digest: string; recipe?: string; raw?: string }> }
    const storage = new Map(pushed.layerStorage.map((l) => [l.digest, l]))
    // the image is what the test says it is: push kept as recipes exactly the blobs expected
    expect(blobs.map((d) => storage.get(d.digest)?.recipe !== undefined)).toEqual(layers.map((l) => l.recipe))

    const s = JSON.parse(await snapdirOk(['stats', '--json', '--store', store])) as DedupStats
    const size = (want: (l: (typeof layers)[number]) => boolean): number => blobs.filter((_, i) => want(layers[i]!)).reduce((a, d) => a + d.size, 0)
    const row = (producer: string, name: string, recipes: number, raw: number) => ({
      producer, name, blobs: recipes + raw, recipes, raw,
      bytes: size((l) => l.producer === producer), recipeBytes: size((l) => l.producer === producer && l.recipe),
    })
    expect(s.blobs.producers).toEqual([
      row('go-gzip', 'Go compress/gzip', 1, 0),
      row('pgzip', 'klauspost pgzip', 1, 1),
      row('gzip-other', 'other gzip', 0, 1),
      row('klauspost-zstd', 'klauspost zstd', 1, 0),
      row('zstd-other', 'other zstd', 0, 1),
      row('tar', 'uncompressed tar', 1, 0),
    ])
    const raw = new Map(s.blobs.raw.map((r) => [r.digest, r]))
    expect(raw.size).toBe(3)
    for (const [i, d] of blobs.entries()) {
      if (layers[i]!.recipe) continue
      // the reason is push's, word for word
      expect(raw.get(d.digest)).toEqual({ digest: d.digest, bytes: d.size, producer: layers[i]!.producer, reason: storage.get(d.digest)!.raw })
    }
    expect(raw.get(blobs[2]!.digest)!.reason).toMatch(/^none of the compressors this gzip header XFL 0, OS 255 allows regenerates it \(/)

    const text = await snapdirOk(['stats', '--store', store])
    const line = (start: string): string => text.split('\n').find((l) => l.startsWith(start)) ?? ''
    expect(line('producer')).toMatch(/^producer +blobs +recipes +raw +recipes\/blobs +blob bytes +as recipes$/)
    expect(line('Go compress/gzip')).toMatch(/ 1 +1 +0 +100% +[\d,]+ +100%$/)
    expect(line('klauspost pgzip')).toMatch(new RegExp(` 2 +1 +1 +50% +${size((l) => l.producer === 'pgzip').toLocaleString('en-US')} +\\d+%$`))
    expect(line('other gzip')).toMatch(/ 1 +0 +1 +0% +[\d,]+ +0%$/)
    expect(line('other zstd')).toMatch(/ 1 +0 +1 +0% +[\d,]+ +0%$/)
    expect(line('uncompressed tar')).toMatch(/ 1 +1 +0 +100% +[\d,]+ +100%$/)
    expect(text).toContain(`raw ${blobs[2]!.digest} (${blobs[2]!.size.toLocaleString('en-US')} bytes, by its header klauspost pgzip): none of the compressors`)
  })
})

function writeThen(file: string, data: Buffer): string {
  writeFileSync(file, data)
  return file
}
