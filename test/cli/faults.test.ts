// Faults in the store and hostile stores, as a user meets them through the CLI: a flipped or deleted
// chunk, a damaged tree, crafted trees that try to make pull write outside its target, and pushes
// that repeat or race. Damage is always reported with exit 1 naming the object (and the files it
// belongs to), and a failed pull never leaves a target or a temp dir behind.
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { Chunker } from '../../src/chunk/chunker.js'
import { hashBytes } from '../../src/chunk/hash.js'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { toHex } from '../../src/format/id.js'
import { encodeObject } from '../../src/format/object.js'
import { encodeTree, type TreeEntry } from '../../src/format/tree.js'
import { objectKey, type ObjectKind } from '../../src/store/objects.js'
import { ID_RE, bytes, listFiles, makeEdgeTree, manifest, snapdir, snapdirOk, tempDir, type RunResult } from '../helpers/cli.js'

// the same content in two files, large enough (>= 64 KiB) to be cut on its own rather than packed
// with its neighbours, so both files name the same chunks
const README = bytes('readme', 70_000)
const FIXED_TIME = new Date('2021-02-03T04:05:06Z')

/**
 * A small source tree with fixed content and times (so its tree object, and so every byte flip
 * below, is the same on every run): one chunk shared by two files, a 600 KB file of several chunks.
 */
function damageFixture(dir: string): { readmeChunk: string; smallChunks: Set<string> } {
  const files: Array<[string, Buffer]> = [
    ['docs/readme.txt', Buffer.from(README)],
    ['copy/readme-copy.txt', Buffer.from(README)],
    ['data/big.bin', bytes('big', 600_000)],
    ['data/other.bin', bytes('other', 20_000)],
    ['top.txt', Buffer.from('top level file\n')],
  ]
  for (const [rel, content] of files) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true })
    writeFileSync(path.join(dir, rel), content)
  }
  for (const rel of ['docs/readme.txt', 'copy/readme-copy.txt', 'data/big.bin', 'data/other.bin', 'top.txt', 'docs', 'copy', 'data', '.']) {
    utimesSync(path.join(dir, rel), FIXED_TIME, FIXED_TIME)
  }
  const id = (b: Buffer | string) => toHex(hashBytes(Buffer.from(b)))
  // other.bin and top.txt are packed together (path order), into one chunk
  const readmeChunks = chunkIds(README)
  return { readmeChunk: readmeChunks[0]!, smallChunks: new Set([...readmeChunks, id(Buffer.concat([bytes('other', 20_000), Buffer.from('top level file\n')]))]) }
}

/** The IDs of the chunks a file of this content is cut into. */
function chunkIds(content: Buffer): string[] {
  const r = new Chunker(DEFAULT_CHUNKER).cuts(content, true)
  const out: string[] = []
  let pos = 0
  for (let i = 0; i < r.count; i++) out.push(toHex(hashBytes(content.subarray(pos, (pos += r.lengths[i]!)))))
  return out
}

function objectFile(store: string, kind: ObjectKind, id: string): string {
  return path.join(store, ...objectKey(kind, id).split('/'))
}

/** Changes one byte of a stored object: the last one, which is payload (the header is 16 bytes). */
function flipLastByte(file: string): void {
  const b = readFileSync(file)
  expect(b.length).toBeGreaterThan(16)
  b[b.length - 1] = b[b.length - 1]! ^ 0x55
  writeFileSync(file, b)
}

/** Changes the byte in the middle of a stored object's payload. */
function flipMiddleByte(file: string): void {
  const b = readFileSync(file)
  expect(b.length).toBeGreaterThan(32)
  const at = 16 + Math.floor((b.length - 16) / 2)
  b[at] = b[at]! ^ 0x01
  writeFileSync(file, b)
}

function expectNoStack(r: RunResult): void {
  expect(r.stderr, 'no stack trace').not.toMatch(/^ {4}at /m)
  for (const line of r.stderr.split('\n').filter(Boolean)) expect(line, r.stderr).toMatch(/^snapdir: /)
}

/** Failure with exactly one `snapdir: ` line on stderr naming each of `mentions`. */
function expectOneLineFailure(r: RunResult, ...mentions: string[]): string {
  const shown = `stderr was:\n${r.stderr}`
  expect(r.status, shown).toBe(1)
  expect(r.stdout, shown).toBe('')
  expectNoStack(r)
  const lines = r.stderr.split('\n').filter(Boolean)
  expect(lines, shown).toHaveLength(1)
  for (const m of mentions) expect(lines[0]).toContain(m)
  return lines[0]!
}

interface Damaged {
  t: string
  store: string
  id: string
}

/** Pushes the damage fixture; `t` then holds only `src` and `store`. */
async function pushFixture(): Promise<Damaged & { readmeChunk: string; smallChunks: Set<string> }> {
  const t = tempDir()
  const src = path.join(t, 'src')
  const info = damageFixture(src)
  const store = path.join(t, 'store')
  const id = (await snapdirOk(['push', '--store', store, src])).trim()
  expect(id).toMatch(ID_RE)
  expect(await snapdir(['verify', '--store', store, '--id', id])).toMatchObject({ status: 0, stderr: '' })
  return { t, store, id, ...info }
}

/** A pull of the damaged snapshot: exit 1, and no target and no temp dir beside it afterwards. */
async function pullFails(d: Damaged): Promise<RunResult> {
  const before = readdirSync(d.t).sort()
  const out = path.join(d.t, 'out')
  const storeBefore = listFiles(d.store)
  const r = await snapdir(['pull', '--store', d.store, '--id', d.id, out])
  expect(r.status, r.stderr).toBe(1)
  expect(r.stdout).toBe('')
  expectNoStack(r)
  expect(existsSync(out), 'no half-written target').toBe(false)
  expect(readdirSync(d.t).sort(), 'no .out.snapdir-pull-* temp dir left').toEqual(before)
  expect(listFiles(d.store), 'pull does not change the store').toEqual(storeBefore)
  return r
}

describe('damaged chunks', () => {
  test('a flipped byte in a chunk two files share: verify and pull exit 1 naming the chunk and the files', async () => {
    const d = await pushFixture()
    flipLastByte(objectFile(d.store, 'chunk', d.readmeChunk))

    const v = await snapdir(['verify', '--store', d.store, '--id', d.id])
    expect(v.status, v.stderr).toBe(1)
    expectNoStack(v)
    expect(v.stderr).toContain(d.readmeChunk)
    expect(v.stderr).toContain('docs/readme.txt')
    expect(v.stderr).toContain('copy/readme-copy.txt')
    // only the damaged chunk is reported damaged
    const otherChunks = listFiles(path.join(d.store, 'chunks')).map((f) => path.basename(f)).filter((c) => c !== d.readmeChunk)
    expect(otherChunks.length).toBeGreaterThan(3)
    for (const c of otherChunks) expect(v.stderr).not.toContain(c)

    const p = await pullFails(d)
    expect(p.stderr).toContain(d.readmeChunk)
    expect(p.stderr).toMatch(/docs\/readme\.txt|copy\/readme-copy\.txt/)
  })

  test('a flipped byte in the middle of a chunk of a large file: verify and pull name it and the file', async () => {
    const d = await pushFixture()
    const bigChunks = listFiles(path.join(d.store, 'chunks')).map((f) => path.basename(f)).filter((c) => !d.smallChunks.has(c))
    expect(bigChunks.length).toBeGreaterThan(1)
    const victim = bigChunks.sort()[0]!
    flipMiddleByte(objectFile(d.store, 'chunk', victim))

    const v = await snapdir(['verify', '--store', d.store, '--id', d.id])
    expect(v.status, v.stderr).toBe(1)
    expectNoStack(v)
    expect(v.stderr).toContain(victim)
    expect(v.stderr).toContain('data/big.bin')
    expect(v.stderr).not.toContain('readme')

    const p = await pullFails(d)
    expect(p.stderr).toContain(victim)
    expect(p.stderr).toContain('data/big.bin')
  })

  test('a deleted chunk: verify and pull exit 1 naming the chunk and the file', async () => {
    const d = await pushFixture()
    const bigChunks = listFiles(path.join(d.store, 'chunks')).map((f) => path.basename(f)).filter((c) => !d.smallChunks.has(c))
    const victim = bigChunks.sort().at(-1)!
    unlinkSync(objectFile(d.store, 'chunk', victim))

    const v = await snapdir(['verify', '--store', d.store, '--id', d.id])
    expect(v.status, v.stderr).toBe(1)
    expectNoStack(v)
    expect(v.stderr).toContain(victim)
    expect(v.stderr).toContain('data/big.bin')
    expect(v.stderr).toMatch(/missing/i)

    const p = await pullFails(d)
    expect(p.stderr).toContain(victim)
    expect(p.stderr).toContain('data/big.bin')
  })

  test('a deleted chunk two files share: verify names both files', async () => {
    const d = await pushFixture()
    unlinkSync(objectFile(d.store, 'chunk', d.readmeChunk))
    const v = await snapdir(['verify', '--store', d.store, '--id', d.id])
    expect(v.status, v.stderr).toBe(1)
    expectNoStack(v)
    expect(v.stderr).toContain(d.readmeChunk)
    expect(v.stderr).toContain('docs/readme.txt')
    expect(v.stderr).toContain('copy/readme-copy.txt')
    const p = await pullFails(d)
    expect(p.stderr).toContain(d.readmeChunk)
  })
})

describe('damaged tree', () => {
  test.each([
    { where: 'last byte', flip: flipLastByte },
    { where: 'middle byte', flip: flipMiddleByte },
  ])('a flipped $where in the tree object: pull and verify exit 1 with one line naming the snapshot', async ({ flip }) => {
    const d = await pushFixture()
    flip(objectFile(d.store, 'tree', d.id))
    const v = await snapdir(['verify', '--store', d.store, '--id', d.id])
    expectOneLineFailure(v, d.id)
    const p = await pullFails(d)
    expectOneLineFailure(p, d.id)
  })

  test('a deleted tree object: pull and verify exit 1 saying the snapshot is not in the store', async () => {
    const d = await pushFixture()
    unlinkSync(objectFile(d.store, 'tree', d.id))
    expectOneLineFailure(await snapdir(['verify', '--store', d.store, '--id', d.id]), d.id)
    expectOneLineFailure(await pullFails(d), d.id)
  })

  test.each([
    { what: 'missing', damage: (f: string) => unlinkSync(f), says: /is missing from/ },
    { what: 'flipped', damage: flipMiddleByte, says: /expected [0-9a-f]{64}, computed [0-9a-f]{64}/ },
  ])('a $what part of the tree: pull and verify exit 1 with one line naming the part and the snapshot', async ({ damage, says }) => {
    const d = await pushFixture()
    const parts = listFiles(d.store).filter((f) => f.startsWith('tree-parts/'))
    expect(parts.length).toBeGreaterThan(0)
    const part = path.basename(parts[0]!)
    damage(objectFile(d.store, 'tree-part', part))
    const v = expectOneLineFailure(await snapdir(['verify', '--store', d.store, '--id', d.id]), d.id, part)
    expect(v).toMatch(says)
    expect(v).not.toMatch(/is not in/)
    const p = expectOneLineFailure(await pullFails(d), d.id, part)
    expect(p).toMatch(says)
  })
})

// --- crafted trees: pull must never write outside its target ---------------------------------

type Kind = TreeEntry['type']

function entry(p: string, type: Kind, extra: Partial<TreeEntry> = {}): TreeEntry {
  return {
    path: Buffer.from(p),
    type,
    mode: type === 'dir' ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    mtimeSec: 1_600_000_000,
    mtimeNsec: 0,
    size: 0,
    target: null,
    rdev: 0,
    xattrs: [],
    chunks: [],
    ...extra,
  }
}

const PAYLOAD = Buffer.from('pwned by a crafted snapshot\n')

/** A file entry whose content is PAYLOAD (its chunk is written into the store by plantTree). */
function fileEntry(p: string): TreeEntry {
  return entry(p, 'file', { size: PAYLOAD.length, chunks: [{ id: hashBytes(PAYLOAD), offset: 0, length: PAYLOAD.length, count: 1 }] })
}

function symlinkEntry(p: string, target: string): TreeEntry {
  return entry(p, 'symlink', { mode: 0o777, target: Buffer.from(target) })
}

function hardlinkEntry(p: string, target: string): TreeEntry {
  return entry(p, 'hardlink', { target: Buffer.from(target) })
}

async function writeObject(store: string, kind: ObjectKind, raw: Buffer): Promise<string> {
  const id = toHex(hashBytes(raw))
  const file = objectFile(store, kind, id)
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(file, encodeObject(raw))
  return id
}

/** Writes a tree (with the root entry first) and PAYLOAD's chunk straight into a valid store. */
async function plantTree(store: string, entries: TreeEntry[]): Promise<string> {
  await writeObject(store, 'chunk', PAYLOAD)
  const { root, parts } = encodeTree({ chunker: DEFAULT_CHUNKER, entries: [entry('', 'dir'), ...entries] })
  for (const part of parts) await writeObject(store, 'tree-part', part)
  return writeObject(store, 'tree', root)
}

interface Crafted {
  name: string
  /** entries besides the root; `ctx` has the absolute paths a test sets up outside the target */
  entries: (ctx: { outsideDir: string; outsideFile: string; absVictim: string }) => TreeEntry[]
  /** what the one-line message must name */
  mention: (ctx: { outsideDir: string; outsideFile: string; absVictim: string }) => string
}

const CRAFTED: Crafted[] = [
  { name: "a file at '../evil'", entries: () => [fileEntry('../evil')], mention: () => '../evil' },
  { name: 'a file at an absolute path', entries: (c) => [fileEntry(c.absVictim)], mention: (c) => c.absVictim },
  {
    name: "a file at 'a/../../evil'",
    entries: () => [entry('a', 'dir'), fileEntry('a/../../evil')],
    mention: () => 'a/../../evil',
  },
  {
    name: 'a symlink to an outside dir, then a file through it',
    entries: (c) => [symlinkEntry('link', c.outsideDir), fileEntry('link/pwned')],
    mention: () => 'link/pwned',
  },
  {
    name: "a symlink to '..', then a file through it",
    entries: () => [symlinkEntry('up', '..'), fileEntry('up/evil')],
    mention: () => 'up/evil',
  },
  {
    name: 'a symlink to an outside dir, then a directory through it',
    entries: (c) => [symlinkEntry('link', c.outsideDir), entry('link/made-dir', 'dir')],
    mention: () => 'link/made-dir',
  },
  {
    name: "a hardlink to '../outside-file'",
    entries: () => [hardlinkEntry('h', '../outside-file')],
    mention: () => '../outside-file',
  },
  {
    name: 'a hardlink to an absolute outside path',
    entries: (c) => [hardlinkEntry('h', c.outsideFile)],
    mention: (c) => c.outsideFile,
  },
  {
    name: 'a hardlink to a path not in the tree',
    entries: () => [fileEntry('real'), hardlinkEntry('z-link', 'not-in-tree')],
    mention: () => 'not-in-tree',
  },
]

describe('pull never writes outside its target, whatever the tree says', () => {
  test.each(CRAFTED)('$name: exit 1 with one clear line, nothing outside, no target', async (c) => {
    const t = tempDir()
    const seedDir = path.join(t, 'seed')
    mkdirSync(seedDir)
    writeFileSync(path.join(seedDir, 'x.txt'), 'x\n')
    const store = path.join(t, 'store')
    await snapdirOk(['push', '--store', store, seedDir]) // a valid store: config, objects, revision

    // `work` is the parent of the target: '../evil' and friends would land here
    const work = path.join(t, 'work')
    mkdirSync(work)
    const outsideDir = path.join(t, 'outside-dir')
    mkdirSync(outsideDir)
    const outsideFile = path.join(work, 'outside-file')
    writeFileSync(outsideFile, 'outside\n')
    const absVictim = `${t}-abs-victim`
    const ctx = { outsideDir, outsideFile, absVictim }
    const id = await plantTree(store, c.entries(ctx))
    expect(id).toMatch(ID_RE)

    // everything under t (store included) as tree-manifest.py describes it; the one thing pull may
    // change is the mtime of the target's parent, where it may create (and remove) its temp dir
    const everything = () => ({
      t: manifest(t)
        .split('\n')
        .map((l) => (l.includes('"path":"work"') ? l.replace(/"mtime_ns":\d+,/, '') : l))
        .join('\n'),
      abs: existsSync(absVictim),
    })
    const before = everything()
    const target = path.join(work, 'target')
    try {
      const r = await snapdir(['pull', '--store', store, '--id', id, target])
      const line = expectOneLineFailure(r, c.mention(ctx))
      expect(line).toMatch(/^snapdir: /)
      expect(existsSync(target)).toBe(false)
      expect(existsSync(absVictim), `${absVictim} must not be created`).toBe(false)
      for (const p of [path.join(work, 'evil'), path.join(t, 'evil'), path.join(outsideDir, 'pwned'), path.join(outsideDir, 'made-dir')]) {
        expect(() => lstatSync(p), `${p} must not be created`).toThrow()
      }
      expect(readFileSync(outsideFile, 'utf8')).toBe('outside\n')
      expect(statSync(outsideFile).nlink).toBe(1)
      expect(readdirSync(work).sort(), 'no target and no temp dir in the parent').toEqual(['outside-file'])
      // nothing anywhere under the test dir changed (store included): bytes, modes, times, links
      expect(everything()).toEqual(before)
    } finally {
      rmSync(absVictim, { recursive: true, force: true })
    }
  })
})

// --- repeated and racing pushes ------------------------------------------------------------------

describe('pushes that repeat or race', () => {
  test('pushing the same directory twice writes no new chunks and prints the same ID', async () => {
    const t = tempDir()
    const src = path.join(t, 'edge')
    makeEdgeTree(src)
    const store = path.join(t, 'store')
    const id1 = (await snapdirOk(['push', '--store', store, src])).trim()
    expect(id1).toMatch(ID_RE)
    const chunks = listFiles(path.join(store, 'chunks'))
    const trees = listFiles(path.join(store, 'trees'))
    expect(chunks.length).toBeGreaterThan(10)
    const r = await snapdir(['push', '--store', store, src])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toBe(`${id1}\n`)
    expect(listFiles(path.join(store, 'chunks'))).toEqual(chunks)
    expect(listFiles(path.join(store, 'trees'))).toEqual(trees)
    // no temp files were left behind either
    expect(listFiles(store).filter((f) => f.includes('.tmp'))).toEqual([])
  })

  test('two pushes of different directories to one fresh store at once: both succeed, pull back and verify', async () => {
    const t = tempDir()
    const edge = path.join(t, 'edge')
    makeEdgeTree(edge)
    const small = path.join(t, 'small')
    mkdirSync(path.join(small, 'files'), { recursive: true })
    // shares content with the edge tree, so both pushes race to write the same chunk
    writeFileSync(path.join(small, 'files', 'small.txt'), readFileSync(path.join(edge, 'files', 'small.txt')))
    writeFileSync(path.join(small, 'files', 'random.bin'), bytes('race', 700_000))
    writeFileSync(path.join(small, 'note.txt'), 'small tree\n')
    const store = path.join(t, 'store') // does not exist yet: both pushes create it

    const [a, b] = await Promise.all([snapdir(['push', '--store', store, edge]), snapdir(['push', '--store', store, small])])
    expect(a.status, a.stderr).toBe(0)
    expect(b.status, b.stderr).toBe(0)
    expect(a.stdout).toMatch(/^[0-9a-f]{64}\n$/)
    expect(b.stdout).toMatch(/^[0-9a-f]{64}\n$/)
    const idA = a.stdout.trim()
    const idB = b.stdout.trim()
    expect(idA).not.toBe(idB)
    expect((await snapdirOk(['id', edge])).trim()).toBe(idA)
    expect((await snapdirOk(['id', small])).trim()).toBe(idB)

    for (const [id, src, name] of [[idA, edge, 'out-edge'], [idB, small, 'out-small']] as const) {
      const v = await snapdir(['verify', '--store', store, '--id', id])
      expect(v.status, v.stderr).toBe(0)
      expect(v.stderr).toBe('')
      const out = path.join(t, name)
      await snapdirOk(['pull', '--store', store, '--id', id, out])
      expect(manifest(out)).toBe(manifest(src))
    }

    const revs = (await snapdirOk(['revisions', '--store', store])).trimEnd().split('\n').map((l) => JSON.parse(l) as { id: string })
    expect(revs.map((r) => r.id).sort()).toEqual([idA, idB].sort())
    expect(listFiles(store).filter((f) => f.includes('.tmp'))).toEqual([])
  })
})
