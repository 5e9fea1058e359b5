import { mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { expect, it } from 'vitest'
import { FileStore } from '../../src/store/file-store.js'
import { storeFromUrl } from '../../src/store/open-store.js'
import { tempDir } from '../helpers/cli.js'
import { storeConformance } from './conformance.js'

storeConformance('file', { fresh: async () => new FileStore(path.join(tempDir(), 'store')) })

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
