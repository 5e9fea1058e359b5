// A push or sync that fails leaves nothing that was not there: a store the command created (a
// directory, a bucket, or an empty directory or prefix it began to fill) is removed again, while an
// existing store keeps what it held (objects a failed command wrote there are gc's to sweep).
import { chmodSync, existsSync, mkdirSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { S3Client, HeadBucketCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import { bytes, listFiles, snapdir, snapdirOk, tempDir, type RunResult } from '../helpers/cli.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'
import { mountTmpfs } from '../helpers/tmpfs.js'

let server: S3Server
let s3: S3Client
beforeAll(async () => {
  server = await startS3Server(['existing'])
  s3 = new S3Client({
    region: 'us-east-1',
    endpoint: server.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: server.env.AWS_ACCESS_KEY_ID!, secretAccessKey: server.env.AWS_SECRET_ACCESS_KEY! },
  })
})
afterAll(async () => {
  s3.destroy()
  await server.close()
})

function expectFailure(r: RunResult, mention: string | RegExp): void {
  expect(r.status, r.stderr).toBe(1)
  const lines = r.stderr.split('\n').filter(Boolean)
  expect(lines, r.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(mention)
}

/** A pushed tree of several chunks; `damaged` is the store with one of its chunks deleted. */
async function stores(): Promise<{ t: string; good: string; damaged: string; id: string }> {
  const t = tempDir()
  const src = path.join(t, 'src')
  mkdirSync(src)
  for (let i = 0; i < 6; i++) writeFileSync(path.join(src, `f${i}`), bytes(`failed-writes${i}`, 300_000))
  const good = path.join(t, 'good')
  const id = (await snapdirOk(['push', '--store', good, src])).trim()
  const damaged = path.join(t, 'damaged')
  await snapdirOk(['sync', '--id', id, '--from', good, '--to', damaged])
  const chunks = listFiles(path.join(damaged, 'chunks')).sort()
  unlinkSync(path.join(damaged, 'chunks', chunks.at(-1)!))
  return { t, good, damaged, id }
}

async function bucketExists(bucket: string): Promise<boolean> {
  return s3.send(new HeadBucketCommand({ Bucket: bucket })).then(
    () => true,
    () => false,
  )
}

async function keysUnder(bucket: string, prefix: string): Promise<string[]> {
  const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))
  return (page.Contents ?? []).map((o) => o.Key!).sort()
}

describe('a failed sync', () => {
  test('of a snapshot the source does not hold: the new destination directory is not left behind', async () => {
    const { t, good } = await stores()
    const to = path.join(t, 'new', 'dest')
    expectFailure(await snapdir(['sync', '--id', 'a'.repeat(64), '--from', good, '--to', to]), 'a'.repeat(64))
    expect(existsSync(path.join(t, 'new'))).toBe(false)
  })

  test('of a damaged snapshot: a new directory is removed, an empty one emptied again, an existing store keeps only what it held', async () => {
    const { t, damaged, good, id } = await stores()
    const fresh = path.join(t, 'fresh')
    expectFailure(await snapdir(['sync', '--id', id, '--from', damaged, '--to', fresh]), /missing/)
    expect(existsSync(fresh)).toBe(false)

    const empty = path.join(t, 'empty')
    mkdirSync(empty)
    expectFailure(await snapdir(['sync', '--id', id, '--from', damaged, '--to', empty]), /missing/)
    expect(readdirSync(empty)).toEqual([])

    // a store with a revision: never removed; what it held is all still there
    const before = listFiles(good)
    const other = path.join(t, 'other-src')
    mkdirSync(other)
    writeFileSync(path.join(other, 'x'), bytes('other', 100_000))
    const existing = path.join(t, 'existing')
    await snapdirOk(['push', '--store', existing, other])
    const held = listFiles(existing)
    expectFailure(await snapdir(['sync', '--id', id, '--from', damaged, '--to', existing]), /missing/)
    for (const f of held) expect(listFiles(existing)).toContain(f)
    expect(listFiles(good)).toEqual(before)
  })

  test('into S3: a bucket it created is deleted, a new prefix in an existing bucket emptied', async () => {
    const { damaged, id } = await stores()
    const env = server.env
    expectFailure(await snapdir(['sync', '--id', id, '--from', damaged, '--to', 's3://made-by-sync/p'], { env }), /missing/)
    expect(await bucketExists('made-by-sync')).toBe(false)

    expectFailure(await snapdir(['sync', '--id', id, '--from', damaged, '--to', 's3://existing/new-prefix'], { env }), /missing/)
    expect(await bucketExists('existing')).toBe(true)
    expect(await keysUnder('existing', 'new-prefix/')).toEqual([])
  })
})

describe('a failed push', () => {
  test('into a new store on a disk that fills up: no store is left, only the one line naming the cause', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    mkdirSync(src)
    writeFileSync(path.join(src, 'big.bin'), bytes('push-full', 4_000_000))
    const disk = mountTmpfs(path.join(t, 'disk'), '2m')
    const store = path.join(disk, 'store')
    expectFailure(await snapdir(['push', '--store', store, src]), /no space left on device|ENOSPC/i)
    expect(readdirSync(disk)).toEqual([])
  })

  test('into S3, on a file it cannot read once chunks are going up (run as nobody): a bucket it created is deleted, a new prefix emptied', async () => {
    const t = tempDir()
    chmodSync(t, 0o755)
    const src = path.join(t, 'src')
    mkdirSync(path.join(src, 'sub'), { recursive: true })
    for (let i = 0; i < 4; i++) writeFileSync(path.join(src, `big${i}.bin`), bytes(`push-s3-${i}`, 400_000))
    const unreadable = path.join(src, 'sub', 'data.bin')
    writeFileSync(unreadable, bytes('unreadable', 100_000))
    chmodSync(unreadable, 0o000)
    const asNobody = { cwd: t, uid: 65534, env: { ...server.env, HOME: t } }
    expectFailure(await snapdir(['push', '--store', 's3://made-by-push/p', src], asNobody), unreadable)
    expect(await bucketExists('made-by-push')).toBe(false)
    expectFailure(await snapdir(['push', '--store', 's3://existing/pushed-prefix', src], asNobody), unreadable)
    expect(await keysUnder('existing', 'pushed-prefix/')).toEqual([])
  })

  test('into an existing store on a full disk: the store keeps its config, objects and revision', async () => {
    const t = tempDir()
    const small = path.join(t, 'small')
    mkdirSync(small)
    writeFileSync(path.join(small, 'x'), 'small\n')
    const disk = mountTmpfs(path.join(t, 'disk'), '2m')
    const store = path.join(disk, 'store')
    await snapdirOk(['push', '--store', store, small])
    const held = listFiles(store)
    const src = path.join(t, 'src')
    mkdirSync(src)
    writeFileSync(path.join(src, 'big.bin'), bytes('push-full', 4_000_000))
    expectFailure(await snapdir(['push', '--store', store, src]), /no space left on device|ENOSPC/i)
    for (const f of held) expect(listFiles(store)).toContain(f)
  })
})
