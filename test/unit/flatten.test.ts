// Flattening layers and presenting them to overlayfs, on small hand-made layer trees: the cases a
// umoci-built image does not produce (views.test.ts checks a real one against umoci unpack).
import { describe, expect, it } from 'vitest'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import type { Tree, TreeEntry } from '../../src/format/tree.js'
import { flattenLayers, overlayLayers } from '../../src/oci/flatten.js'

type Kind = 'dir' | 'file' | 'hardlink' | 'symlink'

function entry(path: string, type: Kind, extra: Partial<TreeEntry> = {}): TreeEntry {
  return {
    path: Buffer.from(path), type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtimeSec: 100, mtimeNsec: 0,
    size: 0, target: null, rdev: 0, xattrs: [], chunks: [], inline: Buffer.from(path), ...extra,
  }
}
const implied = (path: string): TreeEntry => entry(path, 'dir', { mtimeSec: 0 })
const link = (path: string, target: string): TreeEntry => entry(path, 'hardlink', { target: Buffer.from(target) })

function layer(...entries: TreeEntry[]): Tree {
  const all = [entry('', 'dir'), ...entries].sort((a, b) => Buffer.compare(a.path, b.path))
  return { chunker: DEFAULT_CHUNKER, entries: all }
}

/** path → type, plus the target of hardlinks and a file's content */
function shape(entries: TreeEntry[]): Record<string, string> {
  return Object.fromEntries(
    entries.map((e) => [e.path.toString(), e.type === 'hardlink' ? `hardlink ${e.target!.toString()}` : e.type === 'file' ? `file ${e.inline!.toString()}` : e.type]),
  )
}

describe('flattenLayers', () => {
  it('a file replacing a directory removes what was under it; a directory over a directory keeps it', () => {
    const base = layer(entry('a', 'dir'), entry('a/x', 'file'), entry('b', 'dir'), entry('b/y', 'file'))
    const top = layer(entry('a', 'file'), entry('b', 'dir', { mode: 0o700 }))
    const out = flattenLayers([base, top])
    expect(shape(out)).toEqual({ '': 'dir', a: 'file a', b: 'dir', 'b/y': 'file b/y' })
    expect(out.find((e) => e.path.toString() === 'b')!.mode).toBe(0o700)
  })

  it('a directory a layer only implies keeps the attributes the layers below gave it', () => {
    const base = layer(entry('etc', 'dir', { mode: 0o711, mtimeSec: 5 }))
    const out = flattenLayers([base, layer(implied('etc'), entry('etc/new', 'file'))])
    expect(out.find((e) => e.path.toString() === 'etc')).toMatchObject({ mode: 0o711, mtimeSec: 5 })
  })

  it('deleting one name of a hardlinked file leaves the other with the content', () => {
    const base = layer(entry('f', 'file'), link('g', 'f'))
    const out = flattenLayers([base, layer(entry('.wh.f', 'file'))])
    expect(shape(out)).toEqual({ '': 'dir', g: 'file f' })
  })

  it('an opaque directory hides only lower layers; whiteouts and names under them are never shown', () => {
    const base = layer(entry('d', 'dir'), entry('d/old', 'file'), entry('keep', 'file'))
    const top = layer(entry('d', 'dir'), entry('d/.wh..wh..opq', 'file'), entry('d/new', 'file'), entry('.wh.nothing', 'file'), entry('.wh..wh.plnk', 'dir'), entry('.wh..wh.plnk/x', 'file'))
    expect(shape(flattenLayers([base, top]))).toEqual({ '': 'dir', d: 'dir', 'd/new': 'file d/new', keep: 'file keep' })
  })
})

describe('overlayLayers', () => {
  it('turns whiteouts into char 0/0 and opaque markers into the overlay xattr; a hardlink to a whiteout goes', () => {
    const base = layer(entry('d', 'dir', { mode: 0o700, mtimeSec: 9 }), entry('d/old', 'file'))
    const top = layer(implied('d'), entry('d/.wh..wh..opq', 'file'), entry('.wh.gone', 'file'), link('alias', '.wh.gone'), entry('d/new', 'file'))
    const [, upper] = overlayLayers([base, top])
    const byPath = new Map(upper!.map((e) => [e.path.toString(), e]))
    expect([...byPath.keys()]).toEqual(['', 'd', 'd/new', 'gone'])
    expect(byPath.get('gone')).toMatchObject({ type: 'char', rdev: 0, mode: 0 })
    expect(byPath.get('d')).toMatchObject({ mode: 0o700, mtimeSec: 9 })
    expect(byPath.get('d')!.xattrs.map(([n, v]) => `${n.toString()}=${v.toString()}`)).toEqual(['trusted.overlay.opaque=y'])
  })
})
