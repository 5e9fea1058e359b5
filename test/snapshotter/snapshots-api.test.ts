// containerd's snapshots API as `snapdir snapshotter` serves it, over its unix socket, with the
// semantics of containerd's overlayfs snapshotter and its snapshot testsuite: the mounts it returns
// are mounted for real and read with plain fs calls; errors carry the gRPC status containerd maps
// back to its own; the metadata survives a kill -9; Cleanup removes what a killed call left.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { tempDir } from '../helpers/cli.js'
import { SnapshotsClient, startSnapshotter, type Mount, type SnapshotterProcess } from '../helpers/snapshotter.js'

let dir: string
let sn: SnapshotterProcess
let client: SnapshotsClient
const mounted: string[] = []

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`)
}

/** Mounts what the snapshotter returned at a new directory, as containerd's mount package does. */
function mountAt(mounts: Mount[]): string {
  expect(mounts).toHaveLength(1)
  const m = mounts[0]!
  const target = tempDir('snapdir-sn-mnt-')
  if (m.type === 'bind') {
    run('mount', ['--rbind', m.source, target])
    if (m.options.includes('ro')) run('mount', ['-o', 'remount,ro,bind', target])
  } else {
    run('mount', ['-t', m.type, m.source, '-o', m.options.join(','), target])
  }
  mounted.push(target)
  return target
}

function unmountAll(): void {
  while (mounted.length > 0) run('umount', ['-R', mounted.pop()!])
}

async function status(p: Promise<unknown>): Promise<number> {
  try {
    await p
  } catch (err) {
    return (err as grpc.ServiceError).code
  }
  return grpc.status.OK
}

beforeAll(async () => {
  dir = tempDir()
  sn = await startSnapshotter(dir)
  client = new SnapshotsClient(sn.address)
})

afterEach(() => unmountAll())

afterAll(async () => {
  unmountAll()
  client?.close()
  expect(await sn?.stop()).toBe(0)
})

describe('snapdir snapshotter: the snapshots API', () => {
  test('prepare, write, commit; a child sees its parent through overlayfs and hides what it deletes', async () => {
    const base = await client.prepare('base-active')
    expect(base).toEqual([{ type: 'bind', source: expect.stringContaining(sn.root) as unknown, target: '', options: ['rw', 'rbind'] }])
    const b = mountAt(base)
    mkdirSync(path.join(b, 'etc'))
    writeFileSync(path.join(b, 'etc', 'msg'), 'from base\n')
    writeFileSync(path.join(b, 'etc', 'doomed'), 'deleted above\n')
    unmountAll()
    await client.commit('base', 'base-active', { 'containerd.io/snapshot.ref': 'base' })
    expect(await status(client.mounts('base-active'))).toBe(grpc.status.NOT_FOUND)
    expect((await client.stat('base')).kind).toBe('COMMITTED')

    const child = await client.prepare('child-active', 'base')
    expect(child[0]!.type).toBe('overlay')
    expect(child[0]!.options).toEqual(expect.arrayContaining([expect.stringMatching(/^upperdir=/), expect.stringMatching(/^workdir=/), expect.stringMatching(/^lowerdir=/)]))
    const c = mountAt(child)
    expect(readFileSync(path.join(c, 'etc', 'msg'), 'utf8')).toBe('from base\n')
    writeFileSync(path.join(c, 'etc', 'msg'), 'from child\n')
    unlinkSync(path.join(c, 'etc', 'doomed'))
    unmountAll()
    await client.commit('child', 'child-active')

    // a view of the top: read-only, both layers, the deletion applied
    const view = await client.view('top-view', 'child')
    const v = mountAt(view)
    expect(readFileSync(path.join(v, 'etc', 'msg'), 'utf8')).toBe('from child\n')
    expect(existsSync(path.join(v, 'etc', 'doomed'))).toBe(false)
    expect(() => writeFileSync(path.join(v, 'etc', 'new'), 'x')).toThrow(/EROFS/)
    // a view of one parent is a read-only bind of it; of two parents an overlay of lower dirs only
    const grand = await client.prepare('grand-active', 'child')
    expect(grand[0]!.options.find((o) => o.startsWith('lowerdir='))!.split(':')).toHaveLength(2)
    const baseView = await client.view('base-view', 'base')
    expect(baseView[0]).toMatchObject({ type: 'bind', options: ['ro', 'rbind'] })
    expect(view[0]!.options.some((o) => o.startsWith('upperdir='))).toBe(false)
    // Mounts gives the same again
    expect(await client.mounts('grand-active')).toEqual(grand)
    unmountAll()
    for (const k of ['grand-active', 'base-view', 'top-view']) await client.remove(k)
  })

  test('errors carry the status containerd maps back: exists, not found, precondition, invalid', async () => {
    await client.prepare('e-active')
    expect(await status(client.prepare('e-active'))).toBe(grpc.status.ALREADY_EXISTS)
    expect(await status(client.prepare('e2', 'no-such-parent'))).toBe(grpc.status.NOT_FOUND)
    expect(await status(client.prepare('e3', 'e-active'))).toBe(grpc.status.INVALID_ARGUMENT) // parent not committed
    expect(await status(client.stat('nothing'))).toBe(grpc.status.NOT_FOUND)
    expect(await status(client.remove('nothing'))).toBe(grpc.status.NOT_FOUND)
    await client.commit('e', 'e-active')
    expect(await status(client.commit('e', 'e-active'))).toBe(grpc.status.NOT_FOUND) // it is committed now
    await client.view('e-view', 'e')
    expect(await status(client.commit('e-view-c', 'e-view'))).toBe(grpc.status.FAILED_PRECONDITION)
    await client.prepare('e-child', 'e')
    expect(await status(client.commit('e', 'e-child'))).toBe(grpc.status.ALREADY_EXISTS)
    expect(await status(client.remove('e'))).toBe(grpc.status.FAILED_PRECONDITION) // it has children
    expect(await status(client.mounts('e'))).toBe(grpc.status.FAILED_PRECONDITION) // committed: no mounts
    expect(await status(client.update('e', { a: 'b' }, ['parent']))).toBe(grpc.status.INVALID_ARGUMENT)
    expect(await status(client.prepare('e-big', '', { k: 'v'.repeat(5000) }))).toBe(grpc.status.INVALID_ARGUMENT)
    expect(await status(client.list(['labels."unterminated']))).toBe(grpc.status.INVALID_ARGUMENT)
    for (const k of ['e-child', 'e-view', 'e']) await client.remove(k)
    expect(await status(client.stat('e'))).toBe(grpc.status.NOT_FOUND)
  })

  test('labels: set at commit, updated one by one or all at once; Stat and List show them', async () => {
    await client.prepare('l-active', '', { before: 'commit' })
    expect((await client.stat('l-active')).labels).toEqual({ before: 'commit' })
    await client.commit('l', 'l-active', { a: '1', b: '2' })
    const before = await client.stat('l')
    expect(before.labels).toEqual({ a: '1', b: '2' })
    // one label set, one removed (named in the mask, absent from the info)
    const one = await client.update('l', { c: '3' }, ['labels.c', 'labels.a'])
    expect(one.labels).toEqual({ b: '2', c: '3' })
    expect(one.updated_at.seconds * 1e9 + one.updated_at.nanos).toBeGreaterThanOrEqual(before.updated_at.seconds * 1e9 + before.updated_at.nanos)
    // no mask: the labels replaced whole
    expect((await client.update('l', { only: 'this' })).labels).toEqual({ only: 'this' })
    expect((await client.stat('l')).labels).toEqual({ only: 'this' })
    await client.remove('l')
  })

  test("List with containerd's filters: fields, labels, operators, and alternatives", async () => {
    await client.prepare('f1-active')
    await client.commit('f1', 'f1-active', { 'containerd.io/gc.root': 'yes', team: 'red' })
    await client.prepare('f2-active', 'f1', { team: 'blue' })
    await client.view('f3-view', 'f1')
    const names = async (filters: string[]) => (await client.list(filters)).map((i) => i.name).filter((n) => n.startsWith('f')).sort()
    expect(await names([])).toEqual(['f1', 'f2-active', 'f3-view'])
    expect(await names(['parent==f1'])).toEqual(['f2-active', 'f3-view'])
    // as containerd asks for the commit a lazy layer made (parent and name are always present)
    expect(await names(['parent==""', 'name==f3-view'])).toEqual(['f1', 'f3-view'])
    expect(await names(['kind==committed'])).toEqual(['f1'])
    expect(await names(['labels."containerd.io/gc.root"'])).toEqual(['f1'])
    expect(await names(['labels.team==blue'])).toEqual(['f2-active'])
    expect(await names(['labels.team!=blue,name~=^f'])).toEqual(['f1', 'f3-view'])
    expect(await names(['name~=/-view$/'])).toEqual(['f3-view'])
    expect(await names(['labels.team==red', 'kind==view'])).toEqual(['f1', 'f3-view']) // either
    for (const k of ['f2-active', 'f3-view', 'f1']) await client.remove(k)
  })

  test('Usage: an active snapshot as it is now, a committed one as it was at commit', async () => {
    const m = mountAt(await client.prepare('u-active'))
    writeFileSync(path.join(m, 'big'), Buffer.alloc(300_000, 1))
    mkdirSync(path.join(m, 'd'))
    writeFileSync(path.join(m, 'd', 'small'), 'x')
    unmountAll()
    const active = await client.usage('u-active')
    expect(active.inodes).toBe(4) // the root, big, d, d/small
    expect(active.size).toBeGreaterThanOrEqual(300_000)
    await client.commit('u', 'u-active')
    expect(await client.usage('u')).toEqual(active)
    await client.remove('u')
  })

  test('a kill -9 loses nothing that was answered; Cleanup removes what no snapshot names', async () => {
    await client.prepare('k-active')
    await client.commit('k', 'k-active', { kept: 'yes' })
    await client.prepare('k-child', 'k')
    const before = (await client.list()).sort((a, b) => (a.name < b.name ? -1 : 1))
    // what a call killed between making its directory and writing its record leaves
    const orphan = path.join(sn.root, 'snapshots', '999999')
    mkdirSync(path.join(orphan, 'fs'), { recursive: true })
    writeFileSync(path.join(orphan, 'fs', 'junk'), 'junk')
    await sn.kill()
    client.close()
    sn = await startSnapshotter(dir)
    client = new SnapshotsClient(sn.address)
    expect((await client.list()).sort((a, b) => (a.name < b.name ? -1 : 1))).toEqual(before)
    expect((await client.stat('k')).labels).toEqual({ kept: 'yes' })
    const known = readdirSync(path.join(sn.root, 'snapshots')).filter((d) => d !== '999999')
    await client.cleanup()
    expect(existsSync(orphan)).toBe(false)
    expect(readdirSync(path.join(sn.root, 'snapshots')).sort()).toEqual(known.sort())
    // and the snapshots still work
    const m = mountAt(await client.mounts('k-child'))
    writeFileSync(path.join(m, 'after-restart'), 'ok')
    unmountAll()
    await client.remove('k-child')
    await client.remove('k')
    rmSync(orphan, { recursive: true, force: true })
  })
})
