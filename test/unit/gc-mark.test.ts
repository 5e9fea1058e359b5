// gc's mark phase against an rm that runs meanwhile (rm waits only for a gc's sweep, not its mark): a
// snapshot whose revisions and root went while gc read it is no root any more, and gc goes on; a
// snapshot a revision still names that cannot be read whole stops gc before anything is deleted.
import { describe, expect, it } from 'vitest'
import { hashBytes } from '../../src/chunk/hash.js'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { compareBytes, type Tree, type TreeEntry } from '../../src/format/tree.js'
import { gc } from '../../src/store/gc.js'
import { MemoryStore } from '../../src/store/memory-store.js'
import { objectKey, writeTree } from '../../src/store/objects.js'
import { removeRevisions } from '../../src/store/remove-revisions.js'
import { addRevision, listRevisions } from '../../src/store/revisions.js'
import { ensureStoreConfig } from '../../src/store/store-config.js'
import type { ReadOptions } from '../../src/store/store.js'

/** A memory store that runs `before` once, just before the first read of `key`. */
class RacingStore extends MemoryStore {
  trigger: { key: string; before: () => Promise<void> } | null = null

  override async get(key: string, options: ReadOptions = {}): Promise<Buffer> {
    const t = this.trigger
    if (t !== null && t.key === key) {
      this.trigger = null
      await t.before()
    }
    return super.get(key, options)
  }
}

function tree(name: string): Tree {
  const entry = (path: string, type: TreeEntry['type'], size: number): TreeEntry => ({
    path: Buffer.from(path),
    type,
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtimeSec: 0,
    mtimeNsec: 0,
    size,
    target: null,
    rdev: 0,
    xattrs: [],
    chunks: size === 0 ? [] : [{ id: hashBytes(Buffer.from(name)), offset: 0, length: size, count: 1 }],
  })
  return { chunker: DEFAULT_CHUNKER, entries: [entry('', 'dir', 0), entry(name, 'file', 100)].sort((a, b) => compareBytes(a.path, b.path)) }
}

async function twoSnapshots(): Promise<{ s: RacingStore; kept: string; removed: string }> {
  const s = new RacingStore()
  await s.open({ create: true })
  await ensureStoreConfig(s)
  const kept = await writeTree(s, tree('kept'))
  const removed = await writeTree(s, tree('removed'))
  await addRevision(s, { id: kept, name: 'kept', size: 100, source: 's' })
  await addRevision(s, { id: removed, name: 'removed', size: 100, source: 's' })
  return { s, kept, removed }
}

describe('gc marks while rm removes', () => {
  it('a snapshot removed (revisions and root) while gc read it is skipped, and the sweep keeps the rest', async () => {
    const { s, kept, removed } = await twoSnapshots()
    s.trigger = { key: objectKey('tree', removed), before: async () => void (await removeRevisions(s, [removed])) }
    const report = await gc(s, { graceMs: 0 })
    expect(s.trigger).toBeNull() // the race happened
    expect((await listRevisions(s)).map((r) => r.id)).toEqual([kept])
    expect(await s.has(objectKey('tree', kept))).toBe(true)
    expect(report.freed.tree.objects).toBe(0) // rm took the root already
  })

  it('a snapshot a revision still names whose root is missing stops gc, nothing deleted', async () => {
    const { s, removed } = await twoSnapshots()
    const before = [...(await collect(s))]
    s.trigger = { key: objectKey('tree', removed), before: async () => s.deleteMany([objectKey('tree', removed)]) }
    await expect(gc(s, { graceMs: 0 })).rejects.toMatchObject({ code: 'ERR_SNAPSHOT_DAMAGED' })
    expect([...(await collect(s))]).toEqual(before.filter((k) => k !== objectKey('tree', removed)))
  })
})

async function collect(s: MemoryStore): Promise<string[]> {
  const out: string[] = []
  for await (const k of s.list('')) out.push(k)
  return out.sort()
}
