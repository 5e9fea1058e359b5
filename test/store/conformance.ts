// The behaviour every Store backend owes its callers. Each backend's test file calls this with a
// factory; a new backend (s3, memory) passes this suite before anything else uses it.
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { isLocalChunkStore, isSweepStore, type Store } from '../../src/store/store.js'
import { SnapdirError } from '../../src/util/errors.js'

export interface StoreFactory {
  /** a store that does not exist yet */
  fresh(): Promise<Store>
  /** whether the backend is a LocalChunkStore (push writes chunks into it natively) */
  localChunks: boolean
  /** whether gc and rm can sweep it (SweepStore); every backend but a cache (default true) */
  sweep?: boolean
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = []
  for await (const k of it) out.push(k)
  return out.sort()
}

export function storeConformance(name: string, factory: StoreFactory): void {
  describe(`${name} store conformance`, () => {
    const opened = async (): Promise<Store> => {
      const s = await factory.fresh()
      await s.open({ create: true })
      return s
    }

    it('refuses to open a store that does not exist unless asked to create it', async () => {
      const s = await factory.fresh()
      await expect(s.open()).rejects.toMatchObject({ code: 'ERR_STORE_NOT_FOUND' })
      await s.open({ create: true })
      await s.open()
      await s.close()
      await s.close() // idempotent
    })

    it('open is shared by concurrent callers; open with create after a failed open creates; close is idempotent and final', async () => {
      const s = await factory.fresh()
      const plain = s.open()
      const created = s.open({ create: true }) // while the open without create is under way
      await expect(plain).rejects.toMatchObject({ code: 'ERR_STORE_NOT_FOUND' })
      await created
      await s.put('config', Buffer.from('x'))
      // the store is there now: opens without and with create both succeed without redoing anything
      await Promise.all([s.open(), s.open({ create: true }), s.open()])
      expect((await s.get('config')).toString()).toBe('x')
      await Promise.all([s.close(), s.close()])
      await s.close()
      await expect(s.open()).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' })
    })

    it('close before open is fine, and final', async () => {
      const s = await factory.fresh()
      await s.close()
      await expect(s.open({ create: true })).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' })
    })

    it('a get whose signal has aborted rejects with ERR_ABORTED, and the store goes on working', async () => {
      const s = await opened()
      await s.put('chunks/ab/abort', randomBytes(1000))
      const controller = new AbortController()
      controller.abort(new Error('stop'))
      await expect(s.get('chunks/ab/abort', { signal: controller.signal })).rejects.toMatchObject({ code: 'ERR_ABORTED' })
      await expect(s.get('chunks/ab/missing', { signal: controller.signal })).rejects.toMatchObject({ code: 'ERR_ABORTED' })
      expect((await s.get('chunks/ab/abort', { signal: new AbortController().signal })).length).toBe(1000)
    })

    it(`is ${factory.localChunks ? '' : 'not '}a LocalChunkStore`, async () => {
      const s = await opened()
      expect(isLocalChunkStore(s)).toBe(factory.localChunks)
      if (isLocalChunkStore(s)) {
        expect(s.addObjectSync('chunks/ef/local', Buffer.from('raw'))).toBeGreaterThan(0)
        expect(await s.has('chunks/ef/local')).toBe(true)
      }
    })

    it('gives back exactly what was put, and says what it has', async () => {
      const s = await opened()
      const data = randomBytes(300_000)
      expect(await s.has('chunks/ab/abc')).toBe(false)
      expect(await s.size('chunks/ab/abc')).toBeNull()
      await s.put('chunks/ab/abc', data)
      expect(await s.has('chunks/ab/abc')).toBe(true)
      expect(await s.size('chunks/ab/abc')).toBe(300_000)
      expect((await s.get('chunks/ab/abc')).equals(data)).toBe(true)
      await s.put('empty', Buffer.alloc(0))
      expect((await s.get('empty')).length).toBe(0)
    })

    it('reports a missing object as ERR_OBJECT_MISSING naming the key', async () => {
      const s = await opened()
      const err = await s.get('trees/00/nothing').catch((e: unknown) => e)
      expect(err).toBeInstanceOf(SnapdirError)
      expect((err as SnapdirError).code).toBe('ERR_OBJECT_MISSING')
      expect((err as SnapdirError).message).toContain('trees/00/nothing')
    })

    it('put is idempotent and concurrent puts of one key leave one whole object', async () => {
      const s = await opened()
      const data = randomBytes(1_000_000)
      await Promise.all(Array.from({ length: 8 }, () => s.put('chunks/cd/same', data)))
      await s.put('chunks/cd/same', data)
      expect((await s.get('chunks/cd/same')).equals(data)).toBe(true)
      expect(await collect(s.list('chunks/'))).toEqual(['chunks/cd/same'])
    })

    it('lists keys under a prefix and nothing else (no temporary files)', async () => {
      const s = await opened()
      const keys = ['refs/revisions/1.json', 'refs/revisions/2.json', 'trees/aa/x', 'config']
      await Promise.all(keys.map((k) => s.put(k, Buffer.from(k))))
      expect(await collect(s.list('refs/revisions/'))).toEqual(['refs/revisions/1.json', 'refs/revisions/2.json'])
      expect(await collect(s.list('trees/'))).toEqual(['trees/aa/x'])
      expect(await collect(s.list('chunks/'))).toEqual([])
      await s.flush()
    })

    it(`is ${factory.sweep === false ? 'not ' : ''}a SweepStore: lists with sizes and times, deletes in batches`, async () => {
      const s = await opened()
      expect(isSweepStore(s)).toBe(factory.sweep !== false)
      if (!isSweepStore(s)) return
      const before = Date.now() - 2_000 // S3's times are whole seconds
      const keys = ['chunks/aa/one', 'chunks/bb/two', 'trees/cc/three', 'config']
      await Promise.all(keys.map((k) => s.put(k, Buffer.from(k))))
      const listed = []
      for await (const o of s.listObjects('')) listed.push(o)
      listed.sort((a, b) => (a.key < b.key ? -1 : 1))
      expect(listed.map((o) => [o.key, o.size])).toEqual([...keys].sort().map((k) => [k, k.length]))
      for (const o of listed) expect(o.modified).toBeGreaterThanOrEqual(before)
      await s.deleteMany(['chunks/aa/one', 'trees/cc/three', 'chunks/never/there'])
      expect(await collect(s.list(''))).toEqual(['chunks/bb/two', 'config'])
    })
  })
}
