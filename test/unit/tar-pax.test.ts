// oci/tar-pax.ts: PAX records byte-exact, and the header fields read through them.
import { describe, expect, it } from 'vitest'
import { decodePax, makedev, mtimeOf, paxNumber, xattrsOf } from '../../src/oci/tar-pax.js'

const record = (key: string, value: Buffer | string): Buffer => {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'latin1'), Buffer.from(value as string, typeof value === 'string' ? 'latin1' : undefined), Buffer.from('\n')])
  // the length counts its own digits
  let len = body.length + 1
  while (String(len).length + body.length !== len) len++
  return Buffer.concat([Buffer.from(String(len)), body])
}

describe('decodePax', () => {
  it('keeps values byte for byte (binary xattrs, names that are not UTF-8) and stops at NUL padding', () => {
    const binary = Buffer.from([0x01, 0x80, 0xff, 0x00, 0x0a, 0x3d])
    const buf = Buffer.concat([record('SCHILY.xattr.security.capability', binary), record('path', Buffer.from([0x63, 0xe9])), Buffer.alloc(20)])
    const pax = decodePax(buf)
    expect(Buffer.from(pax['SCHILY.xattr.security.capability']!, 'latin1')).toEqual(binary)
    expect(Buffer.from(pax.path!, 'latin1')).toEqual(Buffer.from([0x63, 0xe9]))
  })

  it('refuses a record whose length is wrong or that has no key', () => {
    expect(() => decodePax(Buffer.from('99 path=x\n'))).toThrow(/malformed PAX record at byte 0/)
    expect(() => decodePax(Buffer.concat([record('a', 'b'), Buffer.from('6 =xy\n')]))).toThrow(/malformed PAX record at byte 6/)
    expect(() => decodePax(Buffer.from('x path=y\n'))).toThrow(/malformed/)
  })
})

describe('header fields', () => {
  it('reads mtime with nanoseconds, before 1970 too, or falls back to the header', () => {
    const header = new Date(1_600_000_000_500)
    expect(mtimeOf(header, {})).toEqual({ mtimeSec: 1_600_000_000, mtimeNsec: 0 })
    expect(mtimeOf(header, { mtime: '1600000000.123456789123' })).toEqual({ mtimeSec: 1_600_000_000, mtimeNsec: 123_456_789 })
    expect(mtimeOf(header, { mtime: '-1.25' })).toEqual({ mtimeSec: -2, mtimeNsec: 750_000_000 })
    expect(mtimeOf(header, { mtime: '-3' })).toEqual({ mtimeSec: -3, mtimeNsec: 0 })
    expect(mtimeOf(header, { mtime: 'soon' })).toEqual({ mtimeSec: 1_600_000_000, mtimeNsec: 0 })
  })

  it('takes ids only as safe decimal integers', () => {
    expect(paxNumber('3000000')).toBe(3_000_000)
    expect(paxNumber(undefined)).toBeUndefined()
    expect(paxNumber('-1')).toBeUndefined()
    expect(paxNumber('99999999999999999999')).toBeUndefined()
  })

  it("reads xattrs from SCHILY records, and from libarchive's where SCHILY has none of that name", () => {
    const xattrs = xattrsOf({
      'SCHILY.xattr.user.a': 'from schily',
      'LIBARCHIVE.xattr.user.a': Buffer.from('from libarchive').toString('base64'),
      'LIBARCHIVE.xattr.user.%62%FF': Buffer.from([0, 1, 2]).toString('base64'),
      mtime: '1',
    })
    expect(xattrs).toEqual([
      [Buffer.from('user.a'), Buffer.from('from schily')],
      [Buffer.from([0x75, 0x73, 0x65, 0x72, 0x2e, 0x62, 0xff]), Buffer.from([0, 1, 2])],
    ])
  })

  it("encodes device numbers as glibc's makedev does (values from Python's os.makedev)", () => {
    expect(makedev(1, 3)).toBe(259)
    expect(makedev(300, 70000)).toBe(286338160)
    expect(makedev(5000, 3)).toBe(17592186275843)
  })
})
