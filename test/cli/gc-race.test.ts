// gc is safe while pushes and syncs run (docs/FORMAT.md, "Deleting: rm and gc"): a push or sync never
// loses an object it will name, whether it wrote the object itself or found it in the store already,
// unreferenced and old (the revision that named it removed). gc runs in a loop with no grace period
// at all, so only the writers' and gc's leases (src/store/write-lease.ts) stand between a writer and
// the sweep; pushes (or syncs) of trees that share most of their content with the revision removed
// just before run against it, and every snapshot a writer reported must verify whole. Without the
// leases this fails within a few rounds (objects a writer found, or had just written, are swept
// before its revision names them; without sync's lease the sync test fails in its second round).
import { mkdirSync, utimesSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ID_RE, bytes, listFiles, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'

const ROUNDS = 8

/** Round k's tree: four shared files (the same bytes every round), one of them changed, and a file of its own. */
function tree(at: string, k: number): string {
  mkdirSync(path.join(at, 'sub'), { recursive: true })
  for (let i = 0; i < 4; i++) writeFileSync(path.join(at, 'sub', `shared-${i}.bin`), bytes(i === k % 4 ? `shared-${i}-${k}` : `shared-${i}`, 600_000))
  for (let i = 0; i < 40; i++) writeFileSync(path.join(at, `small-${i}.txt`), `small ${i} ${i % 5 === k % 5 ? k : ''}\n`)
  writeFileSync(path.join(at, 'own.bin'), bytes(`own-${k}`, 300_000))
  return at
}

/**
 * `backdate` (a file store): after each rm, every object's mtime is set two hours back and gc keeps a
 * grace of one hour, so what the push writes itself is safe by the grace alone and only the objects it
 * finds in the store (old and unreferenced) are at stake: the case a grace period cannot cover.
 */
async function race(store: string, env: Record<string, string>, backdate = false, write?: (k: number) => Promise<string>): Promise<void> {
  const t = tempDir()
  let pushing = true
  const gcRuns: string[] = []
  const gcFailures: string[] = []
  // gc, over and over, until the pushes are done: every sweep finds the last round's revision removed
  let gcLoop: Promise<void> = Promise.resolve()
  const startGc = (): void => {
    gcLoop = (async () => {
      while (pushing && gcFailures.length === 0) {
        const r = await snapdir(['gc', '--store', store, '--grace', backdate ? '1h' : '0', '--json'], { env })
        if (r.status === 0) gcRuns.push(r.stdout)
        else gcFailures.push(r.stderr)
      }
    })()
  }
  const reported: string[] = []
  try {
    for (let k = 0; k < ROUNDS; k++) {
      let id: string
      if (write) id = await write(k)
      else {
        const push = await snapdir(['push', '--store', store, '--name', 'race', tree(path.join(t, `src-${k}`), k)], { env })
        expect(push.status, push.stderr).toBe(0)
        id = push.stdout.trim()
      }
      expect(id).toMatch(ID_RE)
      reported.push(id)
      if (k === 0) startGc() // the store exists now
      // whole now, while gc keeps sweeping: nothing it named was lost on the way
      const verify = await snapdir(['verify', '--store', store, '--id', id], { env })
      expect(verify.status, `round ${k}: ${verify.stdout}${verify.stderr}`).toBe(0)
      // its content is now unreferenced: the next round's push finds most of it in the store, old
      expect((await snapdir(['rm', '--store', store, id], { env })).status).toBe(0)
      if (backdate) {
        const old = (Date.now() - 2 * 3600_000) / 1000
        for (const f of listFiles(store)) if (!f.startsWith('locks')) utimesSync(path.join(store, f), old, old)
      }
    }
  } finally {
    pushing = false
    await gcLoop
  }
  expect(gcFailures).toEqual([])
  // the gc runs did delete: the race was real
  const freed = gcRuns.map((o) => (JSON.parse(o) as { freed: { chunk: { objects: number } } }).freed.chunk.objects)
  expect(freed.reduce((a, n) => a + n, 0)).toBeGreaterThan(0)
  expect(new Set(reported).size).toBe(ROUNDS)
}

describe('push and gc --grace 0 in a loop against one store', () => {
  test('a file store', async () => {
    await race(path.join(tempDir(), 'store'), {})
  }, 240_000)

  test('a file store, objects the pushes find old and unreferenced (grace 1h)', async () => {
    await race(path.join(tempDir(), 'store'), {}, true)
  }, 240_000)

  test('a file store the snapshots come into by sync', async () => {
    // the rounds' trees pushed to a source store first; each round syncs one into the store gc sweeps
    const t = tempDir()
    const source = path.join(t, 'source')
    const ids: string[] = []
    for (let k = 0; k < ROUNDS; k++) ids.push((await snapdirOk(['push', '--store', source, '--name', 'race', tree(path.join(t, `src-${k}`), k)])).trim())
    const store = path.join(t, 'store')
    await race(store, {}, false, async (k) => {
      const r = await snapdir(['sync', '--id', ids[k]!, '--from', source, '--to', store])
      expect(r.status, r.stderr).toBe(0)
      return ids[k]!
    })
  }, 240_000)

  describe('an S3 store', () => {
    let server: S3Server
    beforeAll(async () => {
      server = await startS3Server(['race'])
    })
    afterAll(async () => {
      await server.close()
    })
    test('s3rver', async () => {
      await race('s3://race/store', server.env)
    }, 240_000)
  })
})
