// Uploads in progress and staged blobs, without HTTP: chunks appended in order (416 otherwise, with
// nothing appended), a chunk that breaks off midway leaves the upload as it was, a digest that does
// not match removes the upload, and what is left idle or unused is swept, but not what a push holds.
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { RegistryError } from '../../src/serve/errors.js'
import { StagedBlobs } from '../../src/serve/staged-blobs.js'
import { UploadSessions } from '../../src/serve/upload-sessions.js'
import { tempDir } from '../helpers/temp.js'

const sha = (alg: string, b: Buffer): string => `${alg}:${createHash(alg).update(b).digest('hex')}`

async function code(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e)
  if (!(err instanceof RegistryError)) throw new Error(`expected a RegistryError, got ${String(err)}`)
  return `${err.code} ${err.status}`
}

function clock(): { now: () => number; advance(ms: number): void } {
  let t = 1_000_000
  return { now: () => t, advance: (ms) => void (t += ms) }
}

describe('upload sessions', () => {
  it('takes chunks in order and checks the digest of the whole', async () => {
    const dir = path.join(tempDir(), 'uploads')
    const uploads = new UploadSessions({ dir, idleMs: 60_000 })
    await uploads.open()
    const s = await uploads.start('team/app')
    const blob = Buffer.from('0123456789abcdefghij')
    await uploads.append(s, Readable.from([blob.subarray(0, 10)]), { range: '0-9', length: 10 })
    expect(await code(uploads.append(s, Readable.from([blob.subarray(10)]), { range: '5-14', length: 10 }))).toBe('BLOB_UPLOAD_INVALID 416')
    expect(s.size).toBe(10)
    await uploads.append(s, Readable.from([blob.subarray(10)]), { range: '10-19' })
    expect(await code(Promise.resolve().then(() => uploads.get('other/repo', s.id)))).toBe('BLOB_UPLOAD_UNKNOWN 404')
    const done = await uploads.finish(s, sha('sha256', blob))
    expect(readFileSync(done.file)).toEqual(blob)
    expect(done.size).toBe(20)
    expect(uploads.count).toBe(0)
  })

  it('checks a sha512 digest too', async () => {
    const uploads = new UploadSessions({ dir: path.join(tempDir(), 'uploads'), idleMs: 60_000 })
    await uploads.open()
    const s = await uploads.start('app')
    const blob = Buffer.from('sha512 content')
    await uploads.append(s, Readable.from([blob]))
    expect((await uploads.finish(s, sha('sha512', blob))).digest).toBe(sha('sha512', blob))
  })

  it('keeps nothing of a chunk that breaks off, nor of an upload whose digest does not match', async () => {
    const dir = path.join(tempDir(), 'uploads')
    const uploads = new UploadSessions({ dir, idleMs: 60_000 })
    await uploads.open()
    const s = await uploads.start('app')
    await uploads.append(s, Readable.from([Buffer.from('whole')]))
    const broken = new Readable({ read() {} })
    broken.push(Buffer.alloc(1000, 1))
    setImmediate(() => broken.destroy(new Error('client went away')))
    await expect(uploads.append(s, broken)).rejects.toThrow('client went away')
    expect(s.size).toBe(5)
    expect(readFileSync(s.file).toString()).toBe('whole')
    // the hash was not advanced by the broken chunk either
    await uploads.append(s, Readable.from([Buffer.from('!')]))
    expect(await code(uploads.finish(s, sha('sha256', Buffer.from('other'))))).toBe('DIGEST_INVALID 400')
    expect(readdirSync(dir)).toEqual([])
    expect(uploads.count).toBe(0)
  })

  it('says SIZE_INVALID when fewer bytes arrive than Content-Length said, and keeps none of them', async () => {
    const uploads = new UploadSessions({ dir: path.join(tempDir(), 'uploads'), idleMs: 60_000 })
    await uploads.open()
    const s = await uploads.start('app')
    expect(await code(uploads.append(s, Readable.from([Buffer.from('abc')]), { length: 10 }))).toBe('SIZE_INVALID 400')
    expect(s.size).toBe(0)
  })

  it('sweeps sessions left idle, and removes them all at close', async () => {
    const dir = path.join(tempDir(), 'uploads')
    const c = clock()
    const uploads = new UploadSessions({ dir, idleMs: 1000, now: c.now })
    await uploads.open()
    const idle = await uploads.start('app')
    c.advance(600)
    const busy = await uploads.start('app')
    c.advance(600)
    expect(await uploads.sweep()).toBe(1)
    expect(existsSync(idle.file)).toBe(false)
    expect(existsSync(busy.file)).toBe(true)
    await uploads.close()
    expect(existsSync(dir)).toBe(false)
  })
})

describe('staged blobs', () => {
  it('keeps a finished upload per repository, drops it once taken, and sweeps it when unused unless held', async () => {
    const root = tempDir()
    const c = clock()
    const uploads = new UploadSessions({ dir: path.join(root, 'uploads'), idleMs: 60_000 })
    const staged = new StagedBlobs({ dir: path.join(root, 'staged'), ttlMs: 1000, now: c.now })
    await uploads.open()
    await staged.open()
    const put = async (repo: string, content: string): Promise<string> => {
      const s = await uploads.start(repo)
      await uploads.append(s, Readable.from([Buffer.from(content)]))
      const done = await uploads.finish(s, sha('sha256', Buffer.from(content)))
      await staged.add(repo, done)
      return done.digest
    }
    const a = await put('team/app', 'a')
    const b = await put('team/app', 'b')
    expect(await staged.stat('team/app', a)).toMatchObject({ size: 1 })
    expect(await staged.stat('other', a)).toBeNull()
    const release = staged.pin('team/app', [a])
    c.advance(2000)
    expect(await staged.sweep()).toBe(1)
    expect(await staged.stat('team/app', b)).toBeNull()
    expect(await staged.stat('team/app', a)).not.toBeNull()
    await staged.drop('team/app', [a]) // held: stays
    expect(await staged.stat('team/app', a)).not.toBeNull()
    release()
    await staged.drop('team/app', [a])
    expect(await staged.stat('team/app', a)).toBeNull()
    expect(() => staged.pin('app', ['sha256:../../etc'])).toThrow(RegistryError)
  })

  it('a blob a drop is removing is gone for a push that holds it after the drop began, and an upload of it meanwhile stays', async () => {
    const root = tempDir()
    const uploads = new UploadSessions({ dir: path.join(root, 'uploads'), idleMs: 60_000 })
    const staged = new StagedBlobs({ dir: path.join(root, 'staged'), ttlMs: 60_000 })
    await uploads.open()
    await staged.open()
    const upload = async (repo: string, content: Buffer): Promise<Awaited<ReturnType<UploadSessions['finish']>>> => {
      const s = await uploads.start(repo)
      await uploads.append(s, Readable.from([content]))
      return uploads.finish(s, sha('sha256', content))
    }
    for (let i = 0; i < 20; i++) {
      const content = Buffer.from(`blob ${i}`)
      await staged.add('app', await upload('app', content))
      const digest = sha('sha256', content)
      // a push that took the blob drops it; another one holds it just after: it must not see a file
      // that vanishes under its reader (it reads the stored copy instead)
      const dropped = staged.drop('app', [digest])
      const release = staged.pin('app', [digest])
      expect(await staged.stat('app', digest)).toBeNull()
      release()
      await dropped
      // the same blob uploaded again while a drop removes it: the new upload stays
      await staged.add('app', await upload('app', content))
      const again = await upload('app', content)
      const droppedAgain = staged.drop('app', [digest])
      await staged.add('app', again)
      await droppedAgain
      expect(await staged.stat('app', digest)).toMatchObject({ size: content.length })
      await staged.drop('app', [digest])
    }
  })
})
