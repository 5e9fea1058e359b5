import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { storeFromUrl } from '../../src/store/open-store.js'
import { S3Store } from '../../src/store/s3-store.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'
import { storeConformance } from './conformance.js'

let server: S3Server
const saved = { ...process.env }

beforeAll(async () => {
  server = await startS3Server(['existing'])
  Object.assign(process.env, server.env)
})

afterAll(async () => {
  process.env = saved
  await server.close()
})

// each fresh store is a bucket that does not exist yet; push (open with create) makes it
storeConformance('s3 (s3rver on loopback)', {
  fresh: async () => storeFromUrl(`s3://t-${randomBytes(6).toString('hex')}/some/prefix`),
  localChunks: false,
})

it('stores under its prefix only, with the exact bytes sent (no checksum framing)', async () => {
  const a = storeFromUrl('s3://existing/a')
  const b = storeFromUrl('s3://existing/b')
  await a.open()
  await b.open()
  const data = randomBytes(300_000)
  await a.put('chunks/00/x', data)
  expect((await a.get('chunks/00/x')).equals(data)).toBe(true)
  expect(await b.has('chunks/00/x')).toBe(false)
  const keys: string[] = []
  for await (const k of a.list('chunks/')) keys.push(k)
  expect(keys).toEqual(['chunks/00/x'])
  await a.close()
  await b.close()
})

it('an endpoint that does not answer is one clear error naming the store', async () => {
  const s = storeFromUrl('s3://existing/p', { s3Endpoint: 'http://127.0.0.1:9' })
  expect(s).toBeInstanceOf(S3Store)
  await expect(s.open()).rejects.toMatchObject({ code: 'ERR_STORE_UNREACHABLE', message: expect.stringContaining('s3://existing/p') as unknown })
})

it('bucket names are checked before anything is sent', () => {
  expect(() => storeFromUrl('s3://Bad_Bucket!/x')).toThrow(/is not a bucket name/)
  expect(() => storeFromUrl('s3:///nobucket')).toThrow(/bad store URL/)
})
