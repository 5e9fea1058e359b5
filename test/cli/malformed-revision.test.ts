// One damaged record under refs/revisions/ (a truncated write by some other tool, a stray file) must
// not take the whole store down: `revisions`, `push` (which reads the log to link previous_id) and
// `sync --from` skip it with a warning on stderr that names it, and go on with the others. gc cannot
// skip it: the snapshot such a record names is unknown and may be kept by nothing else, so gc deletes
// nothing until the record is repaired or removed.
import { mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { ID_RE, bytes, listFiles, manifest, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'

function dir(at: string, seed: string): string {
  mkdirSync(path.join(at, 'sub'), { recursive: true })
  writeFileSync(path.join(at, 'a.txt'), `hello ${seed}\n`)
  writeFileSync(path.join(at, 'sub', 'b.bin'), bytes(seed, 50_000))
  return at
}

const BAD = ['00000000T000000000Z-not-json.json', '00000000T000000001Z-no-id.json', '00000000T000000002Z-array.json']

/** A store with one pushed snapshot and three malformed revision records next to its own. */
async function damagedStore(): Promise<{ t: string; store: string; src: string; id: string }> {
  const t = tempDir()
  const store = path.join(t, 'store')
  const src = dir(path.join(t, 'src'), 'one')
  const id = (await snapdirOk(['push', '--store', store, src])).trim()
  expect(id).toMatch(ID_RE)
  const revs = path.join(store, 'refs', 'revisions')
  writeFileSync(path.join(revs, BAD[0]!), '{"id": "trunc')
  writeFileSync(path.join(revs, BAD[1]!), '{"name": "x"}\n')
  writeFileSync(path.join(revs, BAD[2]!), '[1, 2]\n')
  return { t, store, src, id }
}

function expectWarnings(stderr: string): void {
  for (const name of BAD) expect(stderr).toMatch(new RegExp(`^snapdir: warning: .*refs/revisions/${name}`, 'm'))
  expect(stderr, 'no stack trace').not.toMatch(/^ {4}at /m)
}

describe('a malformed record under refs/revisions/', () => {
  test('revisions lists the good ones and warns about each bad one by name', async () => {
    const { store, id } = await damagedStore()
    const r = await snapdir(['revisions', '--store', store])
    expect(r.status, r.stderr).toBe(0)
    expectWarnings(r.stderr)
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string })
    expect(lines.map((l) => l.id)).toEqual([id])
  })

  test('push still records its revision, linked to the previous good one', async () => {
    const { t, store, id } = await damagedStore()
    const src2 = path.join(t, 'src')
    writeFileSync(path.join(src2, 'a.txt'), 'changed\n')
    const r = await snapdir(['push', '--store', store, src2])
    expect(r.status, r.stderr).toBe(0)
    expectWarnings(r.stderr)
    const id2 = r.stdout.trim()
    expect(id2).toMatch(ID_RE)
    const revs = (await snapdirOk(['revisions', '--store', store])).trim().split('\n').map((l) => JSON.parse(l) as { id: string; previous_id: string | null })
    expect(revs.map((x) => [x.id, x.previous_id])).toEqual([
      [id, null],
      [id2, id],
    ])
  })

  test('sync --from copies the snapshot and its revision', async () => {
    const { t, store, src, id } = await damagedStore()
    const to = path.join(t, 'copy')
    const r = await snapdir(['sync', '--id', id, '--from', store, '--to', to])
    expect(r.status, r.stderr).toBe(0)
    expectWarnings(r.stderr)
    await snapdirOk(['pull', '--store', to, '--id', id, path.join(t, 'out')])
    expect(manifest(path.join(t, 'out'))).toBe(manifest(src))
    const revs = (await snapdirOk(['revisions', '--store', to])).trim().split('\n').map((l) => JSON.parse(l) as { id: string })
    expect(revs.map((x) => x.id)).toEqual([id])
  })
})

describe('gc and a malformed record', () => {
  test('a snapshot whose only revision record was cut short is not swept: gc names the record and deletes nothing, then runs once it is gone', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const kept = (await snapdirOk(['push', '--store', store, '--name', 'kept', dir(path.join(t, 'kept'), 'kept')])).trim()
    const cut = (await snapdirOk(['push', '--store', store, '--name', 'cut', dir(path.join(t, 'cut'), 'cut')])).trim()
    const revs = path.join(store, 'refs', 'revisions')
    const record = path.join(revs, readdirSync(revs).find((f) => readFileSync(path.join(revs, f), 'utf8').includes(cut))!)
    writeFileSync(record, readFileSync(record).subarray(0, 20)) // a truncated write
    const before = listFiles(store)

    for (const args of [['--grace', '0'], ['--grace', '0', '--dry-run']]) {
      const r = await snapdir(['gc', '--store', store, ...args])
      expect(r.status, r.stderr).toBe(1)
      const lines = r.stderr.split('\n').filter(Boolean)
      expect(lines, r.stderr).toHaveLength(1)
      expect(lines[0]).toMatch(/^snapdir: gc: .*nothing was deleted/)
      expect(lines[0]).toContain(path.basename(record))
      expect(listFiles(store)).toEqual(before)
    }
    // the snapshot is all there: a repaired record would find it whole
    expect((await snapdir(['verify', '--store', store, '--id', cut])).status).toBe(0)

    // a tag record that is not one stops gc the same way
    const tags = path.join(store, 'refs', 'images', 'app')
    mkdirSync(tags, { recursive: true })
    writeFileSync(path.join(tags, 'latest'), '{"id": 1}\n')
    unlinkSync(record)
    const r = await snapdir(['gc', '--store', store, '--grace', '0'])
    expect(r.status, r.stderr).toBe(1)
    expect(r.stderr).toContain('refs/images/app/latest')
    expect(listFiles(store)).toEqual([...before.filter((f) => f !== path.relative(store, record)), 'refs/images/app/latest'].sort())

    // with both gone, gc frees what only the removed record named, and keeps the rest
    unlinkSync(path.join(tags, 'latest'))
    await snapdirOk(['gc', '--store', store, '--grace', '0'])
    expect((await snapdir(['verify', '--store', store, '--id', kept])).status).toBe(0)
    expect((await snapdir(['verify', '--store', store, '--id', cut])).status).toBe(1)
  })
})
