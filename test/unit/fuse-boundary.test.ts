// What crosses the FUSE boundary: the inode-table rows and event numbers C and TypeScript both use are
// checked against each other when the addon loads (and one that differs refuses to load); mount's
// options are validated in C with messages naming the option; and failures map to errno in one table.
import os from 'node:os'
import { describe, expect, it } from 'vitest'
import { Chunker } from '../../src/chunk/chunker.js'
import { CUT_JOB, CUT_WHERE, checkConstants, constantsDiffer, native } from '../../src/chunk/native.js'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { errnoFor } from '../../src/mount/errno.js'
import { FUSE_EVENT, fuseAddon, type FuseMountOptions } from '../../src/mount/fuse.js'
import { TABLE_LAYOUT } from '../../src/mount/inode-table.js'
import { SnapdirError, type ErrorCode } from '../../src/util/errors.js'

const { EIO } = os.constants.errno

/** A copy of obj without one key. */
function without<T extends object>(obj: T, key: string): T {
  const copy = { ...obj }
  delete (copy as Record<string, unknown>)[key]
  return copy
}

describe('the row layout shared with native/fusemount.c', () => {
  it('is the one the addon exports, and the addon loads', () => {
    const addon = fuseAddon()
    expect(constantsDiffer({ ...TABLE_LAYOUT, event: FUSE_EVENT }, addon.layout)).toBeNull()
    expect(Object.keys(addon.layout).sort()).toEqual(['dirent', 'event', 'flag', 'node', 'ref', 'xattr'])
  })

  it('a column that moved, went missing or came in addition is found and refused, named', () => {
    const c = structuredClone(fuseAddon().layout)
    const ours = { ...TABLE_LAYOUT, event: FUSE_EVENT }
    const swapped = { ...c, node: { ...c.node, mtimeSec: c.node!.mtimeNsec!, mtimeNsec: c.node!.mtimeSec! } }
    expect(constantsDiffer(ours, swapped)).toBe('node.mtimeSec is 8 in C, 7 here')
    expect(constantsDiffer(ours, { ...c, dirent: without(c.dirent!, 'ino') })).toBe('dirent.ino is undefined in C, 2 here')
    expect(constantsDiffer(ours, { ...c, ref: { ...c.ref, extra: 5 } })).toBe('ref.extra is 5 in C, absent here')
    expect(constantsDiffer(ours, without(c, 'flag'))).toBe('flag is missing from the addon')
    expect(() => checkConstants('snapdir_fuse', ours, swapped)).toThrow(
      expect.objectContaining({ code: 'ERR_NATIVE_UNAVAILABLE', message: expect.stringContaining('node.mtimeSec is 8 in C, 7 here') as unknown }),
    )
  })

  it('cutFiles numbers its jobs and failures as src/chunk/native.ts does', () => {
    expect(native).not.toBeNull()
    expect(native!.cutFilesWhere).toEqual(CUT_WHERE)
    expect(native!.cutFilesJob).toEqual(CUT_JOB)
  })
})

describe('options at the native boundary', () => {
  /** A one-directory table that would mount; each case spoils one option. */
  function table(): FuseMountOptions {
    const nodes = new Float64Array(TABLE_LAYOUT.node.flags + 1)
    nodes[TABLE_LAYOUT.node.mode] = 0o040755
    return {
      mountpoint: '/nonexistent-snapdir-mountpoint', fuseOptions: ['ro'], nodes, dirents: new Float64Array(0),
      xattrs: new Float64Array(0), refs: new Float64Array(0), chunkCount: 0, pool: Buffer.alloc(0), totalBytes: 0,
      cacheSeconds: 1, onEvent: () => {},
    }
  }

  it('mount names the option that is missing, of the wrong type or out of bounds, before mounting anything', () => {
    const fuse = fuseAddon()
    expect(() => fuse.mount(without(table(), 'nodes'))).toThrow('mount: options.nodes is required')
    expect(() => fuse.mount({ ...table(), refs: [] as unknown as Float64Array })).toThrow('mount: options.refs must be a Float64Array')
    expect(() => fuse.mount({ ...table(), onEvent: 1 as unknown as FuseMountOptions['onEvent'] })).toThrow('mount: options.onEvent must be a function')
    expect(() => fuse.mount({ ...table(), dirents: new Float64Array(4) })).toThrow('mount: options.dirents holds 4 numbers, not rows of 3')
    expect(() => fuse.mount({ ...table(), chunkCount: -1 })).toThrow('mount: options.chunkCount must be an integer')
    // a directory whose children lie past the dirents would be read out of bounds by the FUSE thread
    const bad = table()
    bad.nodes[TABLE_LAYOUT.node.childCount] = 1
    expect(() => fuse.mount(bad)).toThrow('mount: options.nodes row 0: its children are past the dirents')
    const badRef = { ...table(), refs: new Float64Array([0, 0, 10, 1, 10]) }
    expect(() => fuse.mount(badRef)).toThrow('mount: options.refs row 0: its chunk is not below chunkCount')
    expect(() => fuse.mount({ ...table(), mountpoint: '/nonexistent-snapdir-mountpoint' })).toThrow(
      expect.objectContaining({ code: 'ERR_MOUNT' }),
    )
  })

  it('cutFiles names the option that is missing or wrong', () => {
    const options = {
      chunker: {}, paths: [], sizes: new Float64Array(0), jobs: new Uint32Array(0), chunkDir: null, tmpTag: '', level: 3,
    }
    expect(() => native!.cutFiles(options)).toThrow('cutFiles: options.chunker must be a chunker handle')
    const chunker = new Chunker(DEFAULT_CHUNKER, 'native').handle!
    expect(() => native!.cutFiles({ ...options, chunker, sizes: new Float64Array(1) })).toThrow('cutFiles: options.sizes holds 1 sizes for 0 paths')
    expect(() => native!.cutFiles(without({ ...options, chunker }, 'level'))).toThrow('cutFiles: options.level is required')
    expect(() => native!.cutFiles({ ...options, chunker, jobs: new Uint32Array([0, 0, 1]) })).toThrow('cutFiles: options.jobs: job 0 names files outside the batch')
  })
})

describe('the FUSE errno table', () => {
  it('a chunk missing, damaged, late or aborted, and anything unnamed, is EIO on that read', () => {
    const codes: ErrorCode[] = ['ERR_OBJECT_MISSING', 'ERR_OBJECT_CORRUPT', 'ERR_STORE_UNREACHABLE', 'ERR_ABORTED', 'ERR_TREE_MALFORMED']
    for (const code of codes) expect(errnoFor(new SnapdirError(code, 'x')), code).toBe(EIO)
    expect(errnoFor(new Error('plain'))).toBe(EIO)
    expect(errnoFor('not even an error')).toBe(EIO)
  })
})
