// Image names as users write them, and their spelling as store keys: safe on every store, one
// spelling per name, and the spelling gives the name back.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeKeyComponent, encodeKeyComponent, parseImageName } from '../../src/format/image-name.js'
import { imageNameKey } from '../../src/store/image-names.js'

describe('parseImageName', () => {
  it('takes a registry host with a port, a path, and a tag (latest when none is given)', () => {
    expect(parseImageName('localhost:5000/team/app:1.2')).toEqual({ name: 'localhost:5000/team/app', tag: '1.2' })
    expect(parseImageName('localhost:5000/team/app')).toEqual({ name: 'localhost:5000/team/app', tag: 'latest' })
    expect(parseImageName('debian:12-slim')).toEqual({ name: 'debian', tag: '12-slim' })
    expect(parseImageName('[::1]:5000/app:V1_x')).toEqual({ name: '[::1]:5000/app', tag: 'V1_x' })
    expect(parseImageName('Registry.Example/a__b/c-d:x')).toEqual({ name: 'Registry.Example/a__b/c-d', tag: 'x' })
  })

  it('refuses what is not NAME[:TAG], naming it', () => {
    for (const bad of ['', 'App:1', 'app:-x', 'app:', '/app', 'app//b', 'app@sha256:' + 'a'.repeat(64), 'a/b:c:d', 'app:' + 'x'.repeat(129)]) {
      expect(() => parseImageName(bad), bad).toThrow(/malformed image name/)
    }
  })
})

describe('key components', () => {
  it('hold only [a-z0-9._-] and %XX escapes, keep the usual characters, and hide no .tmp-', () => {
    expect(imageNameKey({ name: 'localhost:5000/team/app', tag: 'V1.0' })).toBe('refs/images/localhost%3A5000%2Fteam%2Fapp/%561.0')
    expect(encodeKeyComponent('a.tmp-b')).toBe('a.tmp%2Db')
    expect(decodeKeyComponent('a.tmp%2Db')).toBe('a.tmp-b')
  })

  it('round-trip every string, and each decodes from exactly one spelling', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (s) => {
        const k = encodeKeyComponent(s)
        expect(k).toMatch(/^(?:[a-z0-9._-]|%[0-9A-F]{2})*$/)
        expect(k).not.toContain('.tmp-')
        expect(decodeKeyComponent(k)).toBe(s)
      }),
    )
    // other spellings of the same name are not names: a lower-case escape, an escaped plain character
    expect(decodeKeyComponent('localhost%3a5000')).toBeNull()
    expect(decodeKeyComponent('%61pp')).toBeNull()
    expect(decodeKeyComponent('bad%')).toBeNull()
  })

  it('refuses a name too long to be one file name once spelled', () => {
    const name = Array.from({ length: 40 }, () => 'ab').join('/') // 119 characters, 39 slashes
    expect(() => imageNameKey({ name: `h.io:5000/${name}/${name}`, tag: 't' })).toThrow(/too long to store/)
  })
})
