// The snapshot closure (what a snapshot needs: its tree, its layers' refs and trees, their chunks) and
// the commit that writes what names a snapshot in the crash-safe order, over a store in memory.
import { describe, expect, it } from 'vitest'
import { hashBytes } from '../../src/chunk/hash.js'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { toHex } from '../../src/format/id.js'
import { compareBytes, type Tree, type TreeEntry } from '../../src/format/tree.js'
import { snapshotClosure } from '../../src/store/closure.js'
import { commitSnapshot } from '../../src/store/commit.js'
import { layerRefKey, readLayerRef, writeLayerRef } from '../../src/store/layer-refs.js'
import { MemoryStore } from '../../src/store/memory-store.js'
import { encodeTreeObject, objectKey, writeTree } from '../../src/store/objects.js'
import { addRevision, listRevisions } from '../../src/store/revisions.js'
import { SnapdirError } from '../../src/util/errors.js'

const chunk = (name: string): Buffer => hashBytes(Buffer.from(name))
const hex = (name: string): string => toHex(chunk(name))

function entry(path: string, type: TreeEntry['type'], chunks: Array<[string, number, number]> = []): TreeEntry {
  return {
    path: Buffer.from(path),
    type,
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtimeSec: 0,
    mtimeNsec: 0,
    size: chunks.reduce((a, [, , length]) => a + length, 0),
    target: null,
    rdev: 0,
    xattrs: [],
    chunks: chunks.map(([name, offset, length]) => ({ id: chunk(name), offset, length, count: 1 })),
  }
}

/** A tree of files, each [path, [chunk name, offset, length]...], with their parent directories. */
function tree(files: Array<[string, Array<[string, number, number]>]>): Tree {
  const dirs = new Set(files.flatMap(([p]) => p.split('/').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('/'))))
  const entries = [entry('', 'dir'), ...[...dirs].map((d) => entry(d, 'dir')), ...files.map(([p, c]) => entry(p, 'file', c))]
  return { chunker: DEFAULT_CHUNKER, entries: entries.sort((a, b) => compareBytes(a.path, b.path)) }
}

const diffId = (n: number): string => `sha256:${String(n).repeat(64)}`
const digest = (n: number): string => `sha256:${String(n + 5).repeat(64)}`

async function store(): Promise<MemoryStore> {
  const s = new MemoryStore()
  await s.open({ create: true })
  return s
}

describe('snapshotClosure', () => {
  it('a snapshot no revision names is its own tree alone: chunks with their files and the bytes read of each', async () => {
    const s = await store()
    const id = await writeTree(s, tree([['a', [['x', 0, 100]]], ['b', [['x', 100, 50], ['y', 0, 10]]]]))
    const c = await snapshotClosure(s, id)
    expect(c.layers).toEqual([])
    expect(c.revisions).toEqual([])
    expect(c.damage).toEqual([])
    expect(c.trees).toEqual([{ id, layer: null, state: 'read' }])
    expect(c.size).toBe(160)
    expect([...c.chunks.values()]).toEqual([
      { id: hex('x'), needs: 150, users: [{ tree: id, layer: null, files: ['a', 'b'] }] },
      { id: hex('y'), needs: 10, users: [{ tree: id, layer: null, files: ['b'] }] },
    ])
    const bare = await snapshotClosure(s, id, { files: false })
    expect(bare.chunks.get(hex('x'))!.users).toEqual([{ tree: id, layer: null, files: [] }])
  })

  it('an unknown snapshot is ERR_SNAPSHOT_NOT_FOUND naming it and the store', async () => {
    const s = await store()
    await expect(snapshotClosure(s, 'c'.repeat(64))).rejects.toMatchObject({ code: 'ERR_SNAPSHOT_NOT_FOUND', message: `snapshot ${'c'.repeat(64)} is not in memory:memory` })
  })

  it('an image: the union of the layers its revisions list, each ref read, chunks shared across trees listed once', async () => {
    const s = await store()
    const l1 = await writeTree(s, tree([['etc/passwd', [['p', 0, 10]]], ['lib/shared', [['x', 0, 200]]]]))
    const l2 = await writeTree(s, tree([['usr/bin/sh', [['sh', 0, 30]]]]))
    const id = await writeTree(s, tree([['blobs/sha256/1', [['x', 0, 120]]]]))
    await writeLayerRef(s, { diffId: diffId(1), digests: [digest(1)], mediaType: 'm', tree: l1 })
    await writeLayerRef(s, { diffId: diffId(2), digests: [digest(2)], mediaType: 'm', tree: l2 })
    // two revisions of the snapshot: one lists both layers, one only the first (and another snapshot's)
    await addRevision(s, { id, name: 'img', size: 1, source: 's', image: { layers: [{ digest: digest(1), diffId: diffId(1), tree: l1 }] } })
    await addRevision(s, { id: 'd'.repeat(64), name: 'other', size: 1, source: 's', image: { layers: [{ digest: digest(3), diffId: diffId(3), tree: l2 }] } })
    await addRevision(s, {
      id,
      name: 'img',
      size: 1,
      source: 's',
      image: { layers: [{ digest: digest(1), diffId: diffId(1), tree: l1 }, { digest: digest(2), diffId: diffId(2), tree: l2 }] },
    })
    const c = await snapshotClosure(s, id)
    expect(c.revisions.map((r) => r.id)).toEqual([id, id])
    expect(c.layers.map((l) => [l.diffId, l.tree, l.ref?.tree])).toEqual([
      [diffId(1), l1, l1],
      [diffId(2), l2, l2],
    ])
    expect(c.damage).toEqual([])
    expect(c.trees.map((t) => [t.id, t.layer?.diffId ?? null, t.state])).toEqual([
      [id, null, 'read'],
      [l1, diffId(1), 'read'],
      [l2, diffId(2), 'read'],
    ])
    expect([...c.chunks.keys()]).toEqual([hex('x'), hex('p'), hex('sh')])
    const x = c.chunks.get(hex('x'))!
    expect(x.needs).toBe(200)
    expect(x.users.map((u) => [u.tree, u.layer?.diffId ?? null, u.files])).toEqual([
      [id, null, ['blobs/sha256/1']],
      [l1, diffId(1), ['lib/shared']],
    ])
  })

  it('a layer tree or ref missing, damaged or naming another tree is listed as damage; the rest is still listed', async () => {
    const s = await store()
    const l1 = await writeTree(s, tree([['a', [['a', 0, 1]]]]))
    const l2 = await writeTree(s, tree([['b', [['b', 0, 1]]]]))
    const l3 = await writeTree(s, tree([['c', [['c', 0, 1]]]]))
    const id = await writeTree(s, tree([]))
    await writeLayerRef(s, { diffId: diffId(1), digests: [digest(1)], mediaType: 'm', tree: l1 })
    await s.put(layerRefKey(diffId(2)), Buffer.from('not json'))
    await writeLayerRef(s, { diffId: diffId(3), digests: [digest(3)], mediaType: 'm', tree: l1 })
    await writeLayerRef(s, { diffId: diffId(4), digests: [digest(4)], mediaType: 'm', tree: 'e'.repeat(64) })
    await addRevision(s, {
      id,
      name: 'img',
      size: 0,
      source: 's',
      image: {
        layers: [
          { digest: digest(1), diffId: diffId(1), tree: l1 },
          { digest: digest(2), diffId: diffId(2), tree: l2 },
          { digest: digest(3), diffId: diffId(3), tree: l3 },
          { digest: digest(4), diffId: diffId(4), tree: 'e'.repeat(64) },
        ],
      },
    })
    // l2's tree corrupt, l3's ref names l1, layer 4's tree missing
    const stored = await s.get(objectKey('tree', l2))
    stored[stored.length - 1]! ^= 1
    await s.put(objectKey('tree', l2), stored)
    const c = await snapshotClosure(s, id)
    expect(c.damage.map((d) => [d.layer.diffId, d.object, d.key, d.problem])).toEqual([
      [diffId(2), 'ref', layerRefKey(diffId(2)), 'corrupt'],
      [diffId(2), 'tree', objectKey('tree', l2), 'corrupt'],
      [diffId(3), 'ref', layerRefKey(diffId(3)), 'mismatch'],
      [diffId(4), 'tree', objectKey('tree', 'e'.repeat(64)), 'missing'],
    ])
    expect(c.damage[3]!.detail).toContain('e'.repeat(64))
    expect(c.trees.map((t) => t.state)).toEqual(['read', 'read', 'damaged', 'read', 'damaged'])
    // the chunks of the trees that could be read
    expect([...c.chunks.keys()]).toEqual([hex('a'), hex('c')])
  })

  it('a part of a layer tree missing or damaged is damage naming the part; a part of the own tree is ERR_SNAPSHOT_DAMAGED naming it', async () => {
    const s = new LosingStore()
    await s.open({ create: true })
    const l1 = encodeTreeObject(tree([['a', [['a', 0, 1]]]]))
    const l2 = encodeTreeObject(tree([['b', [['b', 0, 1]]]]))
    await writeTree(s, l1)
    await writeTree(s, l2)
    const own = encodeTreeObject(tree([['o', [['o', 0, 1]]]]))
    const id = await writeTree(s, own)
    for (const [n, t] of [[1, l1.id], [2, l2.id]] as const) await writeLayerRef(s, { diffId: diffId(n), digests: [digest(n)], mediaType: 'm', tree: t })
    await addRevision(s, { id, name: 'img', size: 1, source: 's', image: { layers: [1, 2].map((n) => ({ digest: digest(n), diffId: diffId(n), tree: n === 1 ? l1.id : l2.id })) } })
    const p1 = l1.parts![0]!.id
    const p2 = l2.parts![0]!.id
    s.lost.add(objectKey('tree-part', p1))
    const damaged = Buffer.from(l2.parts![0]!.object)
    damaged[damaged.length - 1]! ^= 1
    await s.put(objectKey('tree-part', p2), damaged)
    const c = await snapshotClosure(s, id)
    expect(c.damage.map((d) => [d.layer.diffId, d.object, d.key, d.problem])).toEqual([
      [diffId(1), 'tree', objectKey('tree-part', p1), 'missing'],
      [diffId(2), 'tree', objectKey('tree-part', p2), 'corrupt'],
    ])
    expect(c.damage[0]!.detail).toContain(`part ${p1} of tree ${l1.id} is missing`)
    expect(c.damage[1]!.detail).toContain(`part ${p2} of tree ${l2.id}`)
    expect(c.trees.map((t) => t.state)).toEqual(['read', 'damaged', 'damaged'])

    s.lost.add(objectKey('tree-part', own.parts![0]!.id))
    const err = await snapshotClosure(s, id).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'ERR_SNAPSHOT_DAMAGED' })
    expect((err as Error).message).toContain(own.parts![0]!.id)
    expect((err as Error).message).toContain(id)
  })

  it('skipTree: a layer tree complete elsewhere is neither read nor its chunks listed; keepTreeObjects keeps what was read', async () => {
    const s = await store()
    const l1 = await writeTree(s, tree([['a', [['a', 0, 1]]]]))
    const l2 = encodeTreeObject(tree([['b', [['b', 0, 1]]]]))
    await writeTree(s, l2)
    const own = encodeTreeObject(tree([]))
    const id = await writeTree(s, own)
    for (const [n, t] of [[1, l1], [2, l2.id]] as const) await writeLayerRef(s, { diffId: diffId(n), digests: [digest(n)], mediaType: 'm', tree: t })
    await addRevision(s, { id, name: 'img', size: 0, source: 's', image: { layers: [1, 2].map((n) => ({ digest: digest(n), diffId: diffId(n), tree: n === 1 ? l1 : l2.id })) } })
    const c = await snapshotClosure(s, id, { keepTreeObjects: true, skipTree: async (t) => t === l1 })
    expect(c.trees.map((t) => [t.id, t.state, t.object, t.parts])).toEqual([
      [id, 'read', own.object, own.parts],
      [l1, 'skipped', undefined, undefined],
      [l2.id, 'read', l2.object, l2.parts],
    ])
    expect([...c.chunks.keys()]).toEqual([hex('b')])
  })
})

/** A store in memory that has lost the objects named in `lost`. */
class LosingStore extends MemoryStore {
  readonly lost = new Set<string>()
  override async get(key: string): Promise<Buffer> {
    if (this.lost.has(key)) throw new SnapdirError('ERR_OBJECT_MISSING', `${key} is missing from ${this.url}`, { data: { key } })
    return super.get(key)
  }
}

/** A store in memory that records what is written and when it is flushed. */
class RecordingStore extends MemoryStore {
  readonly log: string[] = []
  override async put(key: string, data: Buffer): Promise<void> {
    this.log.push(key.split('/').slice(0, 2).join('/'))
    await super.put(key, data)
  }
  override async flush(): Promise<void> {
    this.log.push('flush')
    await super.flush()
  }
}

describe('commitSnapshot', () => {
  it('writes tree parts, layer trees, refs, the tree and the revision in that order, each step flushed before the next names it', async () => {
    const s = new RecordingStore()
    await s.open({ create: true })
    const known = await writeTree(s, tree([['k', [['k', 0, 1]]]]))
    s.log.length = 0
    const fresh = tree([['f', [['f', 0, 1]]]])
    const freshEncoded = encodeTreeObject(fresh)
    const freshId = freshEncoded.id
    const own = encodeTreeObject(tree([['blob', [['z', 0, 5]]]]))
    const parts = [...freshEncoded.parts!, ...own.parts!].map((p) => 'tree-parts/' + p.id.slice(0, 2))
    const steps: string[] = []
    const revision = await commitSnapshot(s, {
      tree: own,
      layers: [
        { digest: digest(1), diffId: diffId(1), tree: fresh, ref: { digests: [digest(1)], mediaType: 'm' } },
        { digest: digest(2), diffId: diffId(2), tree: known, ref: null },
      ],
      revision: { name: 'img', size: 5, source: '/src' },
      onStep: (step) => steps.push(step),
    })
    expect(parts).toHaveLength(2)
    expect(s.log).toEqual([...parts, 'flush', 'trees/' + freshId.slice(0, 2), 'flush', 'refs/layers', 'flush', 'trees/' + own.id.slice(0, 2), 'flush', 'refs/revisions', 'flush'])
    expect(steps).toEqual(['layer-trees', 'layer-refs', 'tree', 'revision'])
    expect(revision).toMatchObject({
      id: own.id,
      name: 'img',
      size: 5,
      source: '/src',
      previous_id: null,
      image: {
        layers: [
          { digest: digest(1), diffId: diffId(1), tree: freshId },
          { digest: digest(2), diffId: diffId(2), tree: known },
        ],
      },
    })
    expect(await listRevisions(s)).toEqual([revision])
    expect(await readLayerRef(s, diffId(1))).toEqual({ diffId: diffId(1), digests: [digest(1)], mediaType: 'm', tree: freshId })
    expect(await readLayerRef(s, diffId(2))).toBeNull()
    // the closure of what was committed
    const c = await snapshotClosure(s, own.id)
    expect(c.trees.map((t) => t.id)).toEqual([own.id, freshId, known])
  })

  it('a plain directory: the tree and the revision only, with no image field', async () => {
    const s = new RecordingStore()
    await s.open({ create: true })
    const own = encodeTreeObject(tree([]))
    const revision = await commitSnapshot(s, { tree: own, revision: { name: 'd', size: 0, source: '/d' } })
    expect(s.log).toEqual(['tree-parts/' + own.parts![0]!.id.slice(0, 2), 'flush', 'trees/' + own.id.slice(0, 2), 'flush', 'refs/revisions', 'flush'])
    expect(revision).not.toHaveProperty('image')
  })
})
