// pull --tar - (the archive on stdout): a reader that goes away ends the command quietly, and a blob
// that fails its digest at its end never reaches the reader whole.
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { hashBytes } from '../../src/chunk/hash.js'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { toHex } from '../../src/format/id.js'
import { encodeObject } from '../../src/format/object.js'
import { encodeTree, type TreeEntry } from '../../src/format/tree.js'
import { objectKey, type ObjectKind } from '../../src/store/objects.js'
import { bytes, snapdirOk, spawnSnapdir, tempDir } from '../helpers/cli.js'

/** Runs snapdir with stdout kept as bytes; `readBytes` closes stdout once that much was read. */
function run(args: string[], readBytes = Infinity): Promise<{ status: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawnSnapdir(args)
    const out: Buffer[] = []
    let have = 0
    let stderr = ''
    child.stdout!.on('data', (d: Buffer) => {
      out.push(d)
      have += d.length
      if (have >= readBytes) child.stdout!.destroy() // as `head -c` does
    })
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ status: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out), stderr }))
  })
}

describe('pull --tar - when the reader goes away', () => {
  test('exit 1, nothing on stderr (as a tool killed by SIGPIPE), however early the reader stops', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    mkdirSync(src)
    writeFileSync(path.join(src, 'big.bin'), bytes('epipe', 4_000_000))
    const store = path.join(t, 'store')
    const id = (await snapdirOk(['push', '--store', store, src])).trim()
    for (const n of [1, 100, 300_000]) {
      const r = await run(['pull', '--store', store, '--id', id, '--tar', '-'], n)
      expect(r.stderr, `after ${n} bytes`).toBe('')
      expect(r.status).toBe(1)
    }
  })
})

function entry(p: string, type: TreeEntry['type'], extra: Partial<TreeEntry> = {}): TreeEntry {
  return {
    path: Buffer.from(p), type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtimeSec: 1_600_000_000, mtimeNsec: 0,
    size: 0, target: null, rdev: 0, xattrs: [], chunks: [], ...extra,
  }
}

function writeObject(store: string, kind: ObjectKind, raw: Buffer): string {
  const id = toHex(hashBytes(raw))
  const file = path.join(store, ...objectKey(kind, id).split('/'))
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(file, encodeObject(raw))
  return id
}

/** A file entry of these pieces, each stored as a chunk of its own. */
function fileOf(store: string, p: string, pieces: Buffer[]): TreeEntry {
  const chunks = pieces.map((b) => ({ id: Buffer.from(writeObject(store, 'chunk', b), 'hex'), offset: 0, length: b.length, count: 1 }))
  return entry(p, 'file', { size: pieces.reduce((n, b) => n + b.length, 0), chunks })
}

describe('pull --tar - of an image whose blob does not hash to its name', () => {
  test('exit 1 naming the blob, and the stream stops inside that blob: its last bytes never go out', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    mkdirSync(path.join(t, 'empty'))
    await snapdirOk(['push', '--store', store, path.join(t, 'empty')]) // a valid store with its config
    // every chunk is sound; only the blob's name is not the digest of its bytes
    const pieces = [bytes('blob-a', 60_000), bytes('blob-b', 60_000), bytes('blob-c', 60_000)]
    const wrong = 'b'.repeat(64)
    const { root, parts } = encodeTree({
      chunker: DEFAULT_CHUNKER,
      entries: [
        entry('', 'dir'),
        entry('blobs', 'dir'),
        entry('blobs/sha256', 'dir'),
        fileOf(store, `blobs/sha256/${wrong}`, pieces),
        fileOf(store, 'oci-layout', [Buffer.from('{"imageLayoutVersion":"1.0.0"}')]),
      ],
    })
    for (const part of parts) writeObject(store, 'tree-part', part)
    const id = writeObject(store, 'tree', root)

    const r = await run(['pull', '--store', store, '--id', id, '--tar', '-'])
    expect(r.status, r.stderr).toBe(1)
    const lines = r.stderr.split('\n').filter(Boolean)
    expect(lines, r.stderr).toHaveLength(1)
    expect(lines[0]).toContain(`blobs/sha256/${wrong}`)
    expect(lines[0]).toContain(id)
    // the blob was streamed as its chunks were verified, all but its last piece
    expect(r.stdout.includes(pieces[0]!)).toBe(true)
    expect(r.stdout.includes(pieces[2]!), 'the unverified end of the blob was sent').toBe(false)
    // so a reader sees a truncated archive, not a whole entry with wrong bytes
    const list = spawnSync('tar', ['-t'], { input: r.stdout, encoding: 'utf8' })
    expect(list.status, list.stdout).not.toBe(0)
    expect(list.stderr).toMatch(/unexpected EOF/i)
  })
})
