import { mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { hashBytes } from '../../src/chunk/hash.js'
import { toHex } from '../../src/format/id.js'
import { CODEC_RAW, CODEC_ZSTD, decodeObject, encodeObject, HEADER_BYTES } from '../../src/format/object.js'
import { FileStore } from '../../src/store/file-store.js'
import { objectKey } from '../../src/store/objects.js'
import { storeFromUrl } from '../../src/store/open-store.js'
import { isLocalChunkStore } from '../../src/store/store.js'
import { tempDir } from '../helpers/cli.js'
import { storeConformance } from './conformance.js'

storeConformance('file', { fresh: async () => new FileStore(path.join(tempDir(), 'store')), localChunks: true })

it('a failed put leaves no temporary file behind', async () => {
  const root = path.join(tempDir(), 'store')
  const s = new FileStore(root)
  await s.open({ create: true })
  // a file where the shard directory should be makes the write fail
  writeFileSync(path.join(root, 'chunks'), 'in the way')
  await expect(s.put('chunks/ab/x', Buffer.from('data'))).rejects.toMatchObject({ code: 'ERR_STORE_IO' })
  expect(readdirSync(root)).toEqual(['chunks'])
})

it('store URLs: plain paths and file:// name the same directory; other schemes are usage errors', () => {
  const d = tempDir()
  mkdirSync(path.join(d, 's'))
  expect((storeFromUrl(path.join(d, 's')) as FileStore).root).toBe(path.join(d, 's'))
  expect((storeFromUrl(`file://${path.join(d, 's')}`) as FileStore).root).toBe(path.join(d, 's'))
  expect(() => storeFromUrl('ftp://host/x')).toThrow(/unsupported store URL 'ftp:\/\/host\/x'/)
  expect(() => storeFromUrl('')).toThrow(/empty store URL/)
  expect(() => storeFromUrl('file://relative/x')).toThrow(/bad store URL/)
})

describe('addObjectSync (push workers write chunks through it)', () => {
  const fresh = async (): Promise<{ root: string; s: FileStore; add: (key: string, raw: Buffer) => number }> => {
    const root = path.join(tempDir(), 'store')
    const s = new FileStore(root)
    await s.open({ create: true })
    expect(isLocalChunkStore(s), 'the native addon must be built').toBe(true)
    return { root, s, add: (key, raw) => s.addObjectSync(key, raw) }
  }

  it('writes what decodeObject reads back: zstd when smaller, raw when not, and the same header as encodeObject', async () => {
    const { s, add } = await fresh()
    const text = Buffer.from('a line that repeats\n'.repeat(5000))
    const noise = randomBytes(70_000)
    const tiny = Buffer.from('tiny')
    for (const [raw, codec] of [[text, CODEC_ZSTD], [noise, CODEC_RAW], [tiny, CODEC_RAW]] as const) {
      const id = toHex(hashBytes(raw))
      const key = objectKey('chunk', id)
      const written = add(key, raw)
      const stored = await s.get(key)
      expect(written).toBe(stored.length)
      expect(stored[4]).toBe(codec)
      expect(stored.subarray(0, HEADER_BYTES)).toEqual(encodeObject(raw).subarray(0, HEADER_BYTES))
      expect(decodeObject(stored, id, key).equals(raw)).toBe(true)
    }
    expect(add(objectKey('chunk', toHex(hashBytes(text))), text), 'an object already there is not written again').toBe(0)
  })

  it('a failed write names the key, throws ERR_STORE_IO and leaves no temporary file behind', async () => {
    const { root, add } = await fresh()
    writeFileSync(path.join(root, 'chunks'), 'in the way')
    let thrown: unknown
    try {
      add('chunks/ab/x', Buffer.from('data'))
    } catch (err) {
      thrown = err
    }
    expect(thrown).toMatchObject({ code: 'ERR_STORE_IO' })
    expect((thrown as Error).message).toContain('chunks/ab/x')
    expect(readdirSync(root)).toEqual(['chunks'])
  })
})
