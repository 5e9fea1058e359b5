// `sync --id A --id B` used to sync only B (the last --id won) and say nothing. Several --id, and
// --all (every snapshot the source's revisions name), sync each in turn; a mix of the two, or
// neither, is bad usage.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { bytes, manifest, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'

/** A store with three snapshots (three versions of one directory), and the directories' manifests. */
async function threeSnapshots(): Promise<{ t: string; store: string; ids: string[]; trees: string[] }> {
  const t = tempDir()
  const store = path.join(t, 'store')
  const ids: string[] = []
  const trees: string[] = []
  for (let i = 0; i < 3; i++) {
    const src = path.join(t, `src${i}`)
    mkdirSync(src)
    writeFileSync(path.join(src, 'same.bin'), bytes('shared', 80_000))
    writeFileSync(path.join(src, 'own.txt'), `version ${i}\n`)
    ids.push((await snapdirOk(['push', '--store', store, src])).trim())
    trees.push(manifest(src))
  }
  return { t, store, ids, trees }
}

async function expectHolds(t: string, store: string, ids: string[], trees: string[]): Promise<void> {
  for (const [i, id] of ids.entries()) {
    const out = path.join(t, `out-${id.slice(0, 8)}-${i}`)
    await snapdirOk(['pull', '--store', store, '--id', id, out])
    expect(manifest(out)).toBe(trees[i])
  }
}

describe('sync of several snapshots', () => {
  test('--id A --id B syncs both, one JSON line each with --json', async () => {
    const { t, store, ids, trees } = await threeSnapshots()
    const to = path.join(t, 'to')
    const r = await snapdir(['sync', '--json', '--id', ids[0]!, '--id', ids[2]!, '--from', store, '--to', to])
    expect(r.status, r.stderr).toBe(0)
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string })
    expect(lines.map((l) => l.id)).toEqual([ids[0], ids[2]])
    await expectHolds(t, to, [ids[0]!, ids[2]!], [trees[0]!, trees[2]!])
    const revs = (await snapdirOk(['revisions', '--store', to])).trim().split('\n').map((l) => JSON.parse(l) as { id: string })
    expect(revs.map((x) => x.id).sort()).toEqual([ids[0], ids[2]].sort())
  })

  test('--all syncs every snapshot the source lists', async () => {
    const { t, store, ids, trees } = await threeSnapshots()
    const to = path.join(t, 'to')
    const r = await snapdir(['sync', '--all', '--from', store, '--to', to])
    expect(r.status, r.stderr).toBe(0)
    await expectHolds(t, to, ids, trees)
  })

  test('--all with --id, or neither: exit 2, nothing created', async () => {
    const { t, store, ids } = await threeSnapshots()
    const to = path.join(t, 'to')
    const both = await snapdir(['sync', '--all', '--id', ids[0]!, '--from', store, '--to', to])
    expect(both.status).toBe(2)
    expect(both.stderr.trim()).toMatch(/^snapdir: .*--all.*--id|^snapdir: .*--id.*--all/)
    const neither = await snapdir(['sync', '--from', store, '--to', to])
    expect(neither.status).toBe(2)
    expect(neither.stderr.trim()).toMatch(/^snapdir: .*--id/)
    expect(existsSync(to)).toBe(false)
  })
})
