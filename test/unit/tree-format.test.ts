import fc from 'fast-check'
import { Packr } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { decodeTree, encodeTree, ENTRY_TYPES, TreeEncoder, type Tree, type TreeEntry } from '../../src/format/tree.js'
import { SnapdirError } from '../../src/util/errors.js'

function entry(path: string | Buffer, type: TreeEntry['type'], extra: Partial<TreeEntry> = {}): TreeEntry {
  return {
    path: Buffer.isBuffer(path) ? path : Buffer.from(path),
    type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtimeSec: 1_600_000_000, mtimeNsec: 123_456_789,
    size: 0, target: type === 'symlink' || type === 'hardlink' ? Buffer.from('x') : null, rdev: 0, xattrs: [], chunks: [],
    ...extra,
  }
}

const file = (path: string, bytes: number): TreeEntry =>
  entry(path, 'file', { size: bytes, chunks: bytes ? [{ id: Buffer.alloc(32, 7), offset: 0, length: bytes, count: 1 }] : [] })

function tree(entries: TreeEntry[]): Tree {
  return { chunker: DEFAULT_CHUNKER, entries: [entry('', 'dir'), ...entries] }
}

function expectMalformed(t: Tree, why: RegExp): void {
  let err: unknown
  try {
    decodeTree(encodeTree(t), 'test tree')
  } catch (e) {
    err = e
  }
  expect(err).toBeInstanceOf(SnapdirError)
  expect((err as SnapdirError).code).toBe('ERR_TREE_MALFORMED')
  expect((err as SnapdirError).message).toMatch(why)
}

describe('tree encoding', () => {
  // names as raw bytes, including ones that are not UTF-8; no '/', NUL, '.' or '..'
  const arbName = fc
    .uint8Array({ minLength: 1, maxLength: 12 })
    .map((a) => Buffer.from(a.filter((b) => b !== 0x2f && b !== 0)))
    .filter((b) => b.length > 0 && b.toString('latin1') !== '.' && b.toString('latin1') !== '..')
  const arbXattrs = fc.uniqueArray(fc.tuple(arbName, fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a))), {
    selector: (x) => x[0].toString('hex'),
    maxLength: 3,
  })
  const arbLeaf = fc.record({
    type: fc.constantFrom<TreeEntry['type']>('file', 'symlink', 'char', 'block', 'fifo', 'socket', 'dir'),
    mode: fc.integer({ min: 0, max: 0o7777 }),
    uid: fc.nat(2 ** 32 - 1),
    gid: fc.nat(2 ** 32 - 1),
    mtimeSec: fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
    mtimeNsec: fc.integer({ min: 0, max: 999_999_999 }),
    size: fc.nat(2 ** 50),
    rdev: fc.nat(2 ** 32 - 1),
    xattrs: arbXattrs,
  })
  const arbTree = fc.uniqueArray(fc.tuple(arbName, arbLeaf), { selector: (x) => x[0].toString('hex'), maxLength: 20 }).map(
    (leaves): Tree =>
      tree(
        leaves.map(([name, l]) => {
          const e = entry(name, l.type, { ...l, size: 0, rdev: 0 })
          if (l.type === 'file') {
            e.size = l.size
            e.chunks = l.size ? [{ id: Buffer.alloc(32, 1), offset: 0, length: 65536, count: Math.floor(l.size / 65536) }, { id: Buffer.alloc(32, 2), offset: 0, length: (l.size % 65536) || 1, count: 1 }].filter((c) => c.count > 0) : []
            e.size = e.chunks.reduce((a, c) => a + c.length * c.count, 0)
          }
          if (l.type === 'char' || l.type === 'block') e.rdev = l.rdev
          return e
        }),
      ),
  )

  it('decodes to what was encoded, and any order of entries or xattrs encodes to the same bytes', () => {
    fc.assert(
      fc.property(arbTree, fc.nat(), (t, seed) => {
        const bytes = encodeTree(t)
        const back = decodeTree(bytes, 't')
        const sorted = [...t.entries].sort((a, b) => Buffer.compare(a.path, b.path))
        const canon = (e: TreeEntry) => ({ ...e, xattrs: [...e.xattrs].sort((a, b) => Buffer.compare(a[0], b[0])) })
        expect(back.entries.map(canon)).toEqual(sorted.map(canon))
        expect(back.chunker).toEqual(t.chunker)
        const shuffled = [...t.entries].sort(() => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % 3) - 1)
        const reversedXattrs = shuffled.map((e) => ({ ...e, xattrs: [...e.xattrs].reverse() }))
        expect(encodeTree({ ...t, entries: reversedXattrs }).equals(bytes)).toBe(true)
      }),
      { numRuns: 200 },
    )
  })

  it('gives the bytes msgpackr gives the wire form, which every snapshot ID so far was the hash of', () => {
    // the encoding as it was first written: msgpackr over positional arrays (format/tree.ts's header)
    const packr = new Packr({ useRecords: false, bundleStrings: false, moreTypes: false })
    const byPath = (a: TreeEntry, b: TreeEntry) => Buffer.compare(a.path, b.path)
    const wire = (t: Tree) => [
      'snapdir-tree', 1,
      [t.chunker.min, t.chunker.avg, t.chunker.max, t.chunker.level, t.chunker.seed.toString(), t.chunker.inlineMax ?? 0, t.chunker.packMax ?? 0],
      [...t.entries].sort(byPath).map((e) => [
        e.path, ENTRY_TYPES.indexOf(e.type), e.mode, e.uid, e.gid, e.mtimeSec, e.mtimeNsec, e.size, e.target, e.rdev,
        [...e.xattrs].sort((a, b) => Buffer.compare(a[0], b[0])).flat(),
        e.inline ?? e.chunks.flatMap((r) => [r.id, r.offset, r.length, r.count]),
      ]),
    ]
    const withInline = fc.tuple(arbTree, fc.uint8Array({ maxLength: 70_000 })).map(([t, content]) => {
      t.entries.push(entry('inline', 'file', { size: content.length, inline: Buffer.from(content) }))
      return t
    })
    fc.assert(fc.property(withInline, (t) => encodeTree(t).equals(packr.pack(wire(t)))), { numRuns: 300 })
  })

  it('gives the same bytes with any of its entries encoded ahead, in any order (as push does)', () => {
    fc.assert(
      fc.property(arbTree, fc.array(fc.nat()), (t, picks) => {
        const encoder = new TreeEncoder()
        for (const p of picks) encoder.add(t.entries[p % t.entries.length]!)
        return encoder.encode(t).equals(encodeTree(t))
      }),
      { numRuns: 200 },
    )
  })

  it('keeps nanosecond times, large sizes and non-UTF-8 names exactly', () => {
    const t = tree([file('big', 5 * 2 ** 40), entry(Buffer.from([0x62, 0xff, 0xfe]), 'fifo', { mtimeSec: -5, mtimeNsec: 999_999_999 })])
    t.entries[1]!.chunks = [{ id: Buffer.alloc(32, 3), offset: 0, length: 262144, count: (5 * 2 ** 40) / 262144 }]
    const back = decodeTree(encodeTree(t), 't')
    expect(back.entries[1]!.size).toBe(5 * 2 ** 40)
    expect(back.entries[2]!.path).toEqual(Buffer.from([0x62, 0xff, 0xfe]))
    expect(back.entries[2]!.mtimeSec).toBe(-5)
    expect(back.entries[2]!.mtimeNsec).toBe(999_999_999)
  })
})

describe('inline content', () => {
  it('a small file kept in the tree comes back with its bytes, and must match its size', () => {
    const f = entry('small', 'file', { size: 5, inline: Buffer.from('hello') })
    const back = decodeTree(encodeTree(tree([f])), 't')
    expect(back.entries[1]!.inline).toEqual(Buffer.from('hello'))
    expect(back.entries[1]!.chunks).toEqual([])
    expectMalformed(tree([entry('small', 'file', { size: 6, inline: Buffer.from('hello') })]), /inline content of 5 bytes, size says 6/)
    expectMalformed(tree([entry('l', 'symlink', { inline: Buffer.from('x') })]), /inline content/)
  })
})

describe('tree validation refuses trees that could escape or lie', () => {
  it.each([
    ['../evil', /'\.\.' component/],
    ['a/../../evil', /'\.\.' component|parent/],
    ['/etc/evil', /absolute/],
    ['./x', /'\.' component/],
    ['a//b', /empty component/],
  ])('path %s', (p, why) => {
    expectMalformed(tree([entry('a', 'dir'), file(p, 1)]), why)
  })

  it('an entry under a symlink (writing through it)', () => {
    expectMalformed(tree([entry('link', 'symlink', { target: Buffer.from('/tmp') }), file('link/pwned', 1)]), /parent is a symlink/)
  })

  it('an entry whose parent is missing', () => {
    expectMalformed(tree([file('nodir/x', 1)]), /parent is not in the tree/)
  })

  it('duplicate paths', () => {
    expectMalformed(tree([file('x', 1), file('x', 1)]), /out of order or repeated/)
  })

  it('hardlinks to a directory, to nothing, or outside', () => {
    expectMalformed(tree([entry('d', 'dir'), entry('l', 'hardlink', { target: Buffer.from('d') })]), /hardlink/)
    expectMalformed(tree([entry('l', 'hardlink', { target: Buffer.from('missing') })]), /hardlink/)
    expectMalformed(tree([entry('l', 'hardlink', { target: Buffer.from('../outside') })]), /hardlink/)
  })

  it('a repeated chunk ref that starts inside its chunk (only whole chunks repeat)', () => {
    const f = file('f', 10)
    f.chunks = [{ id: Buffer.alloc(32, 7), offset: 3, length: 5, count: 2 }]
    expectMalformed(tree([f]), /chunk 0/)
  })

  it('a file whose chunks do not add up to its size', () => {
    const f = file('f', 10)
    f.size = 11
    expectMalformed(tree([f]), /add up/)
  })

  it('a root that is not a directory, and bytes that are not a tree', () => {
    expectMalformed({ chunker: DEFAULT_CHUNKER, entries: [file('', 0)] }, /root directory/)
    expect(() => decodeTree(Buffer.from('not msgpack at all'), 't')).toThrow(/malformed tree/)
  })
})
