// snapdir rm and gc as a user runs them: rm removes revisions and nothing else, gc deletes what no
// revision needs once older than the grace period (objects, layer refs no revision lists, the access
// traces of what is gone, writers' leftover temporary files and stale leases), never what one does, and --keep-last, --dry-run and
// --json do what they say. The race with pushes is test/cli/gc-race.test.ts.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { ID_RE, bytes, listFiles, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { LayoutBuilder, OCI, sha256 } from '../helpers/oci.js'

interface Report {
  dryRun: boolean
  freed: Record<string, { objects: number; bytes: number }>
  live: { objects: number; bytes: number }
  young: { objects: number; bytes: number }
  removedRevisions: Array<{ id: string; name: string }>
}

function dir(at: string, seed: string): string {
  mkdirSync(path.join(at, 'sub'), { recursive: true })
  writeFileSync(path.join(at, 'shared.bin'), bytes('shared', 400_000))
  writeFileSync(path.join(at, 'sub', 'own.bin'), bytes(seed, 300_000))
  writeFileSync(path.join(at, 'note.txt'), `note ${seed}\n`)
  return at
}

async function push(store: string, src: string, name?: string): Promise<string> {
  const id = (await snapdirOk(['push', '--store', store, ...(name ? ['--name', name] : []), src])).trim()
  expect(id).toMatch(ID_RE)
  return id
}

async function gcJson(store: string, ...args: string[]): Promise<Report> {
  return JSON.parse(await snapdirOk(['gc', '--store', store, '--json', ...args])) as Report
}

const total = (r: Report): number => Object.values(r.freed).reduce((a, c) => a + c.objects, 0)

describe('snapdir rm', () => {
  test('removes every revision of the IDs given and their roots, and nothing else', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const a = await push(store, dir(path.join(t, 'a'), 'a'))
    const b = await push(store, dir(path.join(t, 'b'), 'b'))
    await push(store, path.join(t, 'a')) // a second revision of a
    const before = listFiles(store).filter((f) => !f.startsWith('refs/'))
    const out = await snapdirOk(['rm', '--store', store, a])
    expect(out.trim().split('\n')).toHaveLength(2)
    const left = (await snapdirOk(['revisions', '--store', store])).trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)
    expect(left).toEqual([b])
    const root = `trees/${a.slice(0, 2)}/${a}`
    expect(before).toContain(root)
    expect(listFiles(store).filter((f) => !f.startsWith('refs/'))).toEqual(before.filter((f) => f !== root))
  })

  test('a removed snapshot synced back before gc gets its revision again, and that gc keeps it', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const other = path.join(t, 'other')
    const a = await push(store, dir(path.join(t, 'a'), 'a'))
    await snapdirOk(['sync', '--id', a, '--from', store, '--to', other])
    await snapdirOk(['rm', '--store', store, a])
    await snapdirOk(['sync', '--id', a, '--from', other, '--to', store])
    const left = (await snapdirOk(['revisions', '--store', store])).trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)
    expect(left).toEqual([a])
    await gcJson(store, '--grace', '0')
    await snapdirOk(['verify', '--store', store, '--id', a])
  })

  test('an ID with no revision: one line, exit 2, nothing removed', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const a = await push(store, dir(path.join(t, 'a'), 'a'))
    const unknown = 'f'.repeat(64)
    const r = await snapdir(['rm', '--store', store, a, unknown])
    expect(r.status).toBe(2)
    expect(r.stderr).toBe(`snapdir: no revision of snapshot ${unknown} in ${store} (snapdir revisions lists them)\n`)
    expect((await snapdirOk(['revisions', '--store', store])).trim().split('\n')).toHaveLength(1)
    const bad = await snapdir(['rm', '--store', store, 'xyz'])
    expect(bad.status).toBe(2)
    expect(bad.stderr.trim().split('\n')).toHaveLength(1)
  })
})

describe('snapdir gc', () => {
  test('keeps what is younger than the grace, then frees what only a removed revision used', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const a = await push(store, dir(path.join(t, 'a'), 'a'))
    const b = await push(store, dir(path.join(t, 'b'), 'b'))
    await snapdirOk(['rm', '--store', store, a])
    // the default grace (1h): nothing is old enough
    const young = await gcJson(store)
    expect(total(young)).toBe(0)
    expect(young.young.objects).toBeGreaterThan(0)
    const before = listFiles(store)
    const dry = await gcJson(store, '--grace', '0', '--dry-run')
    expect(dry.dryRun).toBe(true)
    expect(listFiles(store)).toEqual(before)
    const report = await gcJson(store, '--grace', '0')
    expect(report.freed).toEqual(dry.freed)
    // a's own file and its tree's parts (rm took its root); the shared file stays
    expect(report.freed.chunk!.objects).toBeGreaterThan(0)
    expect(report.freed['tree-part']!.objects).toBeGreaterThan(0)
    expect(report.freed.tree?.objects ?? 0).toBe(0)
    expect(existsSync(path.join(store, 'trees', a.slice(0, 2), a))).toBe(false)
    expect((await snapdir(['verify', '--store', store, '--id', b])).status).toBe(0)
    expect(total(await gcJson(store, '--grace', '0'))).toBe(0)
    // the text report: one line per kind and a total
    expect(await snapdirOk(['gc', '--store', store, '--grace', '0'])).toMatch(/^chunks +0 objects +0 bytes$/m)
  })

  test('--keep-last N keeps the newest N revisions of each name', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const ids: string[] = []
    for (const seed of ['1', '2', '3']) ids.push(await push(store, dir(path.join(t, seed), seed), 'app'))
    const other = await push(store, dir(path.join(t, 'o'), 'o'), 'other')
    const report = await gcJson(store, '--grace', '0', '--keep-last', '1')
    expect(report.removedRevisions.map((r) => r.id)).toEqual(ids.slice(0, 2))
    expect(report.freed.revision!.objects).toBe(2)
    const left = (await snapdirOk(['revisions', '--store', store])).trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)
    expect(left).toEqual([ids[2], other])
    for (const id of [ids[2]!, other]) expect((await snapdir(['verify', '--store', store, '--id', id])).status).toBe(0)
    const bad = await snapdir(['gc', '--store', store, '--keep-last', '0'])
    expect(bad.status).toBe(2)
  })

  test("sweeps killed writers' temporary files and stale leases older than the grace", async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const a = await push(store, dir(path.join(t, 'a'), 'a'))
    const chunk = listFiles(store).find((f) => f.startsWith('chunks/'))!
    // as put() and the native writers name them: <final>.tmp-<pid>-<rand>-<n>, <final>.tmp-<tag>-n-<n>
    const old = (Date.now() - 2 * 3600_000) / 1000
    const leftovers = [`${chunk}.tmp-123-abcd-0`, `trees/00/${'0'.repeat(64)}.tmp-123-abcd-n-1f`, 'config.tmp-9-ef01-2', 'locks/writers/20260101T000000000Z-dead.json']
    for (const f of leftovers) {
      mkdirSync(path.dirname(path.join(store, f)), { recursive: true })
      writeFileSync(path.join(store, f), 'partial')
      utimesSync(path.join(store, f), old, old)
    }
    const fresh = `${chunk}.tmp-456-abcd-0`
    writeFileSync(path.join(store, fresh), 'still being written')
    const report = await gcJson(store, '--grace', '1h')
    expect(report.freed.temporary!.objects).toBe(3)
    expect(report.freed.lease!.objects).toBe(1)
    for (const f of leftovers) expect(existsSync(path.join(store, f)), f).toBe(false)
    expect(existsSync(path.join(store, fresh))).toBe(true)
    expect((await snapdir(['verify', '--store', store, '--id', a])).status).toBe(0)
  })

  test('images: a layer no remaining revision lists goes with its ref, tree and recipe; a shared one stays', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const layer = (name: string, content: Buffer): Buffer => {
      const d = path.join(t, `layer-${name}`)
      mkdirSync(d, { recursive: true })
      writeFileSync(path.join(d, `${name}.bin`), content)
      const out = path.join(t, `${name}.tar`)
      const r = spawnSync('tar', ['-C', d, '--mtime=2020-01-01', '--owner=0', '--group=0', '-cf', out, '.'])
      expect(r.status, String(r.stderr)).toBe(0)
      return readFileSync(out)
    }
    const base = layer('base', bytes('base', 300_000))
    const image = (name: string): string => {
      const own = layer(name, bytes(name, 200_000))
      const lb = new LayoutBuilder(path.join(t, `image-${name}`))
      const layers = [lb.blob(base, OCI.layerTar), lb.blob(own, OCI.layerTar)]
      const config = lb.blob({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [base, own].map((b) => `sha256:${sha256(b)}`) } }, OCI.config)
      lb.writeIndex([lb.manifest({ config, layers })])
      return lb.dir
    }
    const one = await push(store, image('one'))
    const two = await push(store, image('two'))
    const refs = (): string[] => listFiles(path.join(store, 'refs', 'layers'))
    expect(refs()).toHaveLength(3)
    // access traces of both images' rootfs views and of each layer (what mounts and the snapshotter record)
    const own = layer('one', bytes('one', 200_000))
    const traced = [
      { snapshot: one, view: 'rootfs' },
      { snapshot: two, view: 'rootfs' },
      { snapshot: sha256(own), view: 'layer' },
      { snapshot: sha256(base), view: 'layer' },
    ]
    for (const [i, trace] of traced.entries()) {
      const file = path.join(t, `trace-${i}.json`)
      writeFileSync(file, JSON.stringify({ snapdirTrace: 1, ...trace, chunks: [] }))
      await snapdirOk(['trace', 'push', '--store', store, file])
    }
    const traces = (): string[] => listFiles(path.join(store, 'refs', 'traces'))
    expect(traces()).toHaveLength(4)
    await snapdirOk(['rm', '--store', store, one])
    const report = await gcJson(store, '--grace', '0')
    expect(report.freed['layer-ref']!.objects).toBe(1)
    expect(report.freed.recipe!.objects).toBe(1)
    expect(report.freed.tree!.objects).toBe(1) // image one's own layer's tree (rm took its bundle's root)
    expect(refs()).not.toContain(sha256(own))
    expect(refs()).toContain(sha256(base))
    // the traces of the removed image and of its own layer went with them; the others stay
    expect(report.freed.trace!.objects).toBe(2)
    expect(traces().sort()).toEqual([`${two}/rootfs`, `${sha256(base)}/layer`].sort())
    const verify = await snapdir(['verify', '--store', store, '--id', two])
    expect(verify.status, verify.stderr).toBe(0)
    expect(total(await gcJson(store, '--grace', '0'))).toBe(0)
  })
})
