import fc from 'fast-check'
import { Packr } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { decodeTree, encodeTree, ENTRY_TYPES, TreeEncoder, type Tree, type TreeBytes, type TreeEntry } from '../../src/format/tree.js'
import { hashBytes } from '../../src/chunk/hash.js'
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

const sameBytes = (a: TreeBytes, b: TreeBytes): boolean => a.root.equals(b.root) && a.parts.length === b.parts.length && a.parts.every((p, i) => p.equals(b.parts[i]!))

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
        expect(sameBytes(encodeTree({ ...t, entries: reversedXattrs }), bytes)).toBe(true)
      }),
      { numRuns: 200 },
    )
  })

  it('gives, in format 1, the bytes msgpackr gives the wire form, which every format 1 snapshot ID was the hash of', () => {
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
      t.format = 1
      return t
    })
    fc.assert(fc.property(withInline, (t) => encodeTree(t).root.equals(packr.pack(wire(t))) && encodeTree(t).parts.length === 0), { numRuns: 300 })
  })

  it('gives the same bytes with its entries added in any order, each at its place (as push does), in either format', () => {
    fc.assert(
      fc.property(arbTree, fc.nat(), fc.constantFrom<1 | 2>(1, 2), (t, seed, format) => {
        t.format = format
        const sorted = [...t.entries].sort((a, b) => Buffer.compare(a.path, b.path))
        const order = sorted.map((_, i) => i).sort(() => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % 3) - 1)
        const encoder = new TreeEncoder(t.chunker, format)
        for (const i of order) encoder.add(sorted[i]!, i)
        expect(encoder.count).toBe(sorted.length)
        return sameBytes(encoder.encode(), encodeTree(t))
      }),
      { numRuns: 200 },
    )
  })

  it('refuses an entry added twice at one place, and a tree with a place never filled', () => {
    const encoder = new TreeEncoder(DEFAULT_CHUNKER)
    encoder.add(entry('', 'dir'), 0)
    expect(() => encoder.add(entry('a', 'dir'), 0)).toThrow(/a second entry at position 0/)
    encoder.add(entry('b', 'dir'), 2)
    expect(() => encoder.encode()).toThrow(/entry 1 of 3 of a tree was never encoded/)
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

describe('inline content (format 1)', () => {
  const tree1 = (entries: TreeEntry[]): Tree => ({ ...tree(entries), format: 1 })
  it('a small file kept in the tree comes back with its bytes, and must match its size', () => {
    const f = entry('small', 'file', { size: 5, inline: Buffer.from('hello') })
    const back = decodeTree(encodeTree(tree1([f])), 't')
    expect(back.entries[1]!.inline).toEqual(Buffer.from('hello'))
    expect(back.entries[1]!.chunks).toEqual([])
    expect(back.format).toBe(1)
    expectMalformed(tree1([entry('small', 'file', { size: 6, inline: Buffer.from('hello') })]), /inline content of 5 bytes, size says 6/)
    expectMalformed(tree1([entry('l', 'symlink', { inline: Buffer.from('x') })]), /inline content/)
  })

  it('format 2 holds none: encoding one is a bug, and one planted in a part is refused', () => {
    expect(() => encodeTree(tree([entry('small', 'file', { size: 5, inline: Buffer.from('hello') })]))).toThrow(/no file content/)
    // an empty file expanded from a layer has empty inline bytes: nothing to keep, it encodes as no chunks
    const back = decodeTree(encodeTree(tree([entry('empty', 'file', { inline: Buffer.alloc(0) })])), 't')
    expect(back.entries[1]!.inline).toBeUndefined()
    const packr = new Packr({ useRecords: false, bundleStrings: false, moreTypes: false })
    const enc = encodeTree(tree([]))
    const part = packr.pack([[Buffer.alloc(0), 1, 0o755, 0, 0, 0, 0, 0, null, 0, [], []], [Buffer.from('f'), 0, 0o644, 0, 0, 0, 0, 2, null, 0, [], Buffer.from('hi')]])
    const root = packr.pack(['snapdir-tree', 2, [65536, 65536, 65536, 1, '0', 0, 0], [hashBytes(part), 2]])
    expect(enc.parts).toHaveLength(1)
    expect(() => decodeTree({ root, parts: [part] }, 't')).toThrow(/inline content in a format 2 tree/)
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

describe('format 2: a root naming parts', () => {
  const many = (n: number, prefix = 'f'): TreeEntry[] => {
    const dirs = [entry('d', 'dir')]
    return [...dirs, ...Array.from({ length: n }, (_, i) => file(`d/${prefix}${String(i).padStart(6, '0')}`, 100 + i))]
  }

  it('cuts the entries into parts of whole entries, each named by the root with its entry count', () => {
    const t = tree(many(10_000))
    const { root, parts } = encodeTree(t)
    // one anchor in 64 names: about 10000/64 parts
    expect(parts.length).toBeGreaterThan(100)
    expect(parts.length).toBeLessThan(260)
    expect(decodeTree({ root, parts }, 't').entries).toHaveLength(10_002)
    const back = decodeTree({ root, parts }, 't')
    expect(back.entries.map((e) => e.path.toString())).toEqual(t.entries.map((e) => e.path.toString()).sort())
    expect(() => decodeTree({ root, parts: parts.slice(1) }, 't')).toThrow(/names \d+ parts/)
    expect(() => decodeTree({ root, parts: [parts[1]!, parts[0]!, ...parts.slice(2)] }, 't')).toThrow(/part 0 is/)
  })

  it('a one-entry edit changes the root and one part; an added file at most two parts', () => {
    const before = encodeTree(tree(many(10_000)))
    const edited = many(10_000)
    edited[5000]!.mtimeSec += 1
    edited[5000]!.chunks = [{ id: Buffer.alloc(32, 9), offset: 0, length: edited[5000]!.size, count: 1 }]
    const after = encodeTree(tree(edited))
    const old = new Set(before.parts.map((p) => p.toString('hex')))
    expect(after.parts.filter((p) => !old.has(p.toString('hex')))).toHaveLength(1)
    expect(after.root.equals(before.root)).toBe(false)
    const added = encodeTree(tree([...many(10_000), file('d/f005000x', 7)]))
    expect(added.parts.filter((p) => !old.has(p.toString('hex'))).length).toBeLessThanOrEqual(2)
  })

  it('an entry larger than a part is a part of its own', () => {
    const big = file('d/huge', 1)
    big.chunks = Array.from({ length: 3000 }, (_, i) => ({ id: Buffer.alloc(32, i % 256), offset: 0, length: 262144, count: 1 }))
    big.size = 3000 * 262144
    const t = tree([...many(300), big])
    const { root, parts } = encodeTree(t)
    expect(parts.some((p) => p.length > 64 * 1024)).toBe(true)
    expect(parts.filter((p) => p.length > 64 * 1024)).toHaveLength(1)
    expect(decodeTree({ root, parts }, 't').entries.find((e) => e.path.toString() === 'd/huge')!.chunks).toHaveLength(3000)
  })

  it('carries a recipe (a layer blob regenerated from a recipe object) and refuses a malformed one', () => {
    const blob = entry('blob', 'file', { size: 12345, recipe: 'ab'.repeat(32) })
    const back = decodeTree(encodeTree(tree([blob])), 't')
    expect(back.entries[1]!.recipe).toBe('ab'.repeat(32))
    expect(back.entries[1]!.size).toBe(12345)
    expect(() => encodeTree(tree([entry('blob', 'file', { recipe: 'nope' })]))).toThrow(/not an ID/)
    expect(() => encodeTree({ ...tree([blob]), format: 1 })).toThrow(/format 1/)
  })

  it('gives the bytes docs/FORMAT.md describes, written with msgpackr (parts cut before an anchor or at 64 KiB)', () => {
    const packr = new Packr({ useRecords: false, bundleStrings: false, moreTypes: false })
    const wire = (e: TreeEntry): unknown[] => [
      e.path, ENTRY_TYPES.indexOf(e.type), e.mode, e.uid, e.gid, e.mtimeSec, e.mtimeNsec, e.size, e.target, e.rdev,
      [...e.xattrs].sort((a, b) => Buffer.compare(a[0], b[0])).flat(), e.chunks.flatMap((r) => [r.id, r.offset, r.length, r.count]),
      ...(e.recipe === undefined ? [] : [Buffer.from(e.recipe, 'hex')]),
    ]
    const reference = (t: Tree): TreeBytes => {
      const entries = [...t.entries].sort((a, b) => Buffer.compare(a.path, b.path))
      const runs: TreeEntry[][] = []
      let bytes = 0
      for (const e of entries) {
        const size = packr.pack(wire(e)).length
        const anchor = hashBytes(e.path).readUInt32LE(4) % 64 === 0
        if (runs.length === 0 || (runs.at(-1)!.length > 0 && (anchor || bytes + size > 64 * 1024))) {
          runs.push([])
          bytes = 0
        }
        runs.at(-1)!.push(e)
        bytes += size
      }
      const parts = runs.map((r) => packr.pack(r.map(wire)))
      const c = t.chunker
      const root = packr.pack([
        'snapdir-tree', 2, [c.min, c.avg, c.max, c.level, c.seed.toString(), c.inlineMax ?? 0, c.packMax ?? 0],
        parts.flatMap((p, i) => [hashBytes(p), runs[i]!.length]),
      ])
      return { root, parts }
    }
    fc.assert(
      fc.property(fc.array(fc.nat(3000), { minLength: 1, maxLength: 600 }), (refs) => {
        // files of up to 3000 refs: parts cut at anchors and, now and then, at 64 KiB
        const entries = [entry('d', 'dir'), ...refs.map((n, i) => {
          const f = file(`d/${i}-${n}`, 1)
          f.chunks = Array.from({ length: n % 7 === 0 ? n : n % 5 }, (_, k) => ({ id: Buffer.alloc(32, k % 256), offset: 0, length: 100, count: 1 }))
          f.size = f.chunks.length * 100
          return f
        })]
        return sameBytes(encodeTree(tree(entries)), reference(tree(entries)))
      }),
      { numRuns: 50 },
    )
  })

  it('same tree, same ID: whatever the order given, and whatever order the entries were added in', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(20_000), { minLength: 1, maxLength: 400 }), fc.nat(), (sizes, seed) => {
        const entries = [entry('d', 'dir'), ...sizes.map((n, i) => file(`d/${i}-${n}`, n))]
        const a = encodeTree(tree(entries))
        const t = tree(entries)
        const sorted = [...t.entries].sort((x, y) => Buffer.compare(x.path, y.path))
        const order = sorted.map((_, i) => i).sort(() => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % 3) - 1)
        const encoder = new TreeEncoder(DEFAULT_CHUNKER)
        for (const i of order) encoder.add(sorted[i]!, i)
        return sameBytes(a, encoder.encode())
      }),
      { numRuns: 100 },
    )
  })
})
