import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { objectKey } from '../../src/store/objects.js'
import { bytes, countObjects, killWhen, listFiles, makeEdgeTree, manifest, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'

interface Summary {
  alreadyComplete: boolean
  objects: { checked: number; copied: number; skipped: number }
  bytes: { copied: number; skipped: number }
  traces: { copied: number; skipped: number; malformed: number }
}

let server: S3Server
beforeAll(async () => {
  server = await startS3Server(['reg-a', 'reg-b'])
})
afterAll(async () => {
  await server.close()
})

const syncJson = async (id: string, from: string, to: string, extra: string[] = []): Promise<Summary> =>
  JSON.parse(await snapdirOk(['sync', '--json', '--id', id, '--from', from, '--to', to, ...extra], { env: server.env })) as Summary

/** A tree of 40 files of 200 KB: a few hundred chunks. */
function dataTree(dir: string): void {
  mkdirSync(dir)
  for (let i = 0; i < 40; i++) writeFileSync(path.join(dir, `f${i}`), bytes(`sync${i}`, 200_000))
}

/** dataTree pushed into a store `local` in a new temporary directory `t`, beside a `dest` not made yet. */
async function pushedDataTree(): Promise<{ t: string; src: string; local: string; dest: string; id: string }> {
  const t = tempDir()
  const src = path.join(t, 'src')
  const local = path.join(t, 'local')
  dataTree(src)
  const id = (await snapdirOk(['push', '--store', local, src])).trim()
  return { t, src, local, dest: path.join(t, 'dest'), id }
}

describe('sync between stores', () => {
  it('file -> S3 -> another S3 prefix -> file gives back the tree byte for byte; a re-sync copies nothing', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    makeEdgeTree(src)
    const local = path.join(t, 'local')
    const id = (await snapdirOk(['push', '--store', local, src])).trim()

    const first = await syncJson(id, local, 's3://reg-a/mirror')
    expect(first.alreadyComplete).toBe(false)
    expect(first.objects.copied).toBe(first.objects.checked)
    const second = await syncJson(id, 's3://reg-a/mirror', 's3://reg-b/other/prefix')
    expect(second.objects.copied).toBe(first.objects.copied)
    const back = path.join(t, 'back')
    await syncJson(id, 's3://reg-b/other/prefix', back)
    await snapdirOk(['pull', '--store', back, '--id', id, path.join(t, 'out')])
    expect(manifest(path.join(t, 'out'))).toBe(manifest(src))
    // the revision travels with the snapshot
    const revs = (await snapdirOk(['revisions', '--store', back])).trim().split('\n').map((l) => JSON.parse(l) as { id: string; name: string })
    expect(revs).toMatchObject([{ id, name: 'src' }])

    // complete at the destination: one request, nothing copied
    const again = await syncJson(id, local, 's3://reg-a/mirror')
    expect(again).toMatchObject({ alreadyComplete: true, objects: { checked: 1, copied: 0, skipped: 1 } })
  })

  it('a second snapshot sharing most chunks copies only the new ones; --dry-run reports the same and writes nothing', async () => {
    const { src, local, dest, id: id1 } = await pushedDataTree()
    await syncJson(id1, local, dest)
    writeFileSync(path.join(src, 'f7'), bytes('changed', 200_000))
    const id2 = (await snapdirOk(['push', '--store', local, src])).trim()

    const before = listFiles(dest)
    const dry = await syncJson(id2, local, dest, ['--dry-run'])
    expect(listFiles(dest)).toEqual(before)
    const real = await syncJson(id2, local, dest)
    expect(real.objects.copied).toBe(dry.objects.copied)
    // the changed file's chunks and the tree; everything else was there
    expect(real.objects.copied).toBeGreaterThanOrEqual(2)
    expect(real.objects.copied).toBeLessThanOrEqual(8)
    // the 39 unchanged files' chunks are not even asked about: the destination holds the tree the
    // revision names as its previous one, so it holds every chunk of that tree
    expect(dry.objects.checked).toBe(real.objects.checked)
    expect(real.objects.checked).toBeLessThanOrEqual(10)
    expect(await snapdirOk(['verify', '--store', dest, '--id', id2])).toMatch(/ 0 damaged/)
  })

  it('a corrupted source chunk stops the sync naming it, and nothing naming it reaches the destination', async () => {
    const { local, dest, id } = await pushedDataTree()
    const chunk = listFiles(path.join(local, 'chunks'))[3]!
    const file = path.join(local, 'chunks', chunk)
    const b = readFileSync(file)
    b[b.length - 1] = b[b.length - 1]! ^ 0xff
    writeFileSync(file, b)

    const r = await snapdir(['sync', '--id', id, '--from', local, '--to', dest])
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(path.basename(chunk))
    expect(r.stderr).toMatch(/used by f\d+/)
    expect(existsSync(path.join(dest, ...objectKey('tree', id).split('/')))).toBe(false)
    // the destination was new: the failed sync removed it, the chunks it had copied with it
    expect(existsSync(dest)).toBe(false)
  })

  it('a sync killed halfway, run again, completes and copies only what is still missing', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    const local = path.join(t, 'local')
    const dest = path.join(t, 'dest')
    mkdirSync(src)
    for (let i = 0; i < 30; i++) writeFileSync(path.join(src, `f${i}`), bytes(`kill${i}`, 2_000_000))
    const id = (await snapdirOk(['push', '--store', local, src])).trim()
    const chunks = listFiles(path.join(local, 'chunks'))
    const total = chunks.length

    // One source chunk becomes a named pipe: reading it waits for a writer that never comes, so the
    // sync cannot finish before it is killed however fast it runs; the other job copies on.
    const held = path.join(local, 'chunks', chunks[Math.floor(total / 2)]!)
    const heldBytes = readFileSync(held)
    rmSync(held)
    execFileSync('mkfifo', [held])
    await killWhen(['sync', '--id', id, '--from', local, '--to', dest, '--jobs', '2'], () => countObjects(path.join(dest, 'chunks')) >= 10)
    rmSync(held)
    writeFileSync(held, heldBytes)
    const copiedBefore = countObjects(path.join(dest, 'chunks'))
    expect(copiedBefore).toBeGreaterThanOrEqual(10)
    expect(copiedBefore).toBeLessThan(total)
    expect(existsSync(path.join(dest, 'trees'))).toBe(false)

    const s = await syncJson(id, local, dest)
    expect(s.objects.skipped).toBe(copiedBefore)
    // + the tree: its root and parts
    expect(s.objects.copied).toBe(total - copiedBefore + countObjects(path.join(local, 'trees')) + countObjects(path.join(local, 'tree-parts')))
    expect(await snapdirOk(['verify', '--store', dest, '--id', id])).toMatch(/ 0 damaged/)
  })

  it('the snapshot\'s access traces come with it byte for byte, after it; a malformed one is skipped with a warning; a re-sync copies none again', async () => {
    const { t, local, dest, id } = await pushedDataTree()
    const chunkIds = listFiles(path.join(local, 'chunks')).map((f) => path.basename(f))
    const pushTrace = async (chunks: string[]): Promise<string> => {
      const file = path.join(t, 'trace.json')
      writeFileSync(file, JSON.stringify({ snapdirTrace: 1, snapshot: id, view: 'tree', chunks }))
      return (await snapdirOk(['trace', 'push', '--store', local, file])).trim()
    }
    const key = await pushTrace(chunkIds.slice(0, 5))
    const at = (store: string, k: string) => path.join(store, ...k.split('/'))
    const bad = `refs/traces/${id}/rootfs`
    mkdirSync(path.dirname(at(local, bad)), { recursive: true })
    writeFileSync(at(local, bad), '{"snapdirTrace": 1, "chunks": 3}')

    const dry = await syncJson(id, local, dest, ['--dry-run'])
    expect(dry.traces).toEqual({ copied: 1, skipped: 0, malformed: 1 })
    expect(existsSync(dest)).toBe(false)

    // through an S3 store and back: listed and copied there as in a directory
    const r = await snapdir(['sync', '--json', '--id', id, '--from', local, '--to', 's3://reg-a/traced'], { env: server.env })
    expect(r.status, r.stderr).toBe(0)
    expect((JSON.parse(r.stdout) as Summary).traces).toEqual({ copied: 1, skipped: 0, malformed: 1 })
    expect(r.stderr).toMatch(new RegExp(`warning: skipping \\S*${bad}: `))
    const first = await syncJson(id, 's3://reg-a/traced', dest)
    expect(first.traces).toEqual({ copied: 1, skipped: 0, malformed: 0 })
    expect(readFileSync(at(dest, key))).toEqual(readFileSync(at(local, key)))
    expect(existsSync(at(dest, bad))).toBe(false)

    // complete at the destination: the trace there is left as it is
    const files = listFiles(dest)
    const again = await syncJson(id, 's3://reg-a/traced', dest)
    expect(again).toMatchObject({ alreadyComplete: true, objects: { copied: 0 }, traces: { copied: 0, skipped: 1, malformed: 0 } })
    expect(listFiles(dest)).toEqual(files)

    // a trace recorded again at the source since comes with the next sync of the complete snapshot
    await pushTrace(chunkIds.slice(5, 9))
    const text = await snapdirOk(['sync', '--id', id, '--from', local, '--to', dest], { env: server.env })
    expect(text).toContain('already complete')
    expect(text).toContain('copied 1 access trace(s)')
    expect(readFileSync(at(dest, key))).toEqual(readFileSync(at(local, key)))
  })

  it('bad input: a missing source store or snapshot, and a bad --jobs, are one clear line', async () => {
    const t = tempDir()
    const id = 'b'.repeat(64)
    const missing = await snapdir(['sync', '--id', id, '--from', path.join(t, 'nope'), '--to', path.join(t, 'dest')])
    expect(missing.status).toBe(1)
    expect(missing.stderr.trim()).toMatch(/^snapdir: store .*nope does not exist$/)
    expect(existsSync(path.join(t, 'dest'))).toBe(false)
    const jobs = await snapdir(['sync', '--id', id, '--from', t, '--to', path.join(t, 'd'), '--jobs', '0'])
    expect(jobs.status).toBe(2)
    expect(jobs.stderr.trim()).toMatch(/^snapdir: --jobs '0'/)
  })
})
