// The ID of a snapshot survives `pull --tar` and a push of that archive, within the limits the README
// states: times to the millisecond (node-tar reads a PAX time to the millisecond), no xattrs (node-tar
// does not restore them). The root goes into the archive as './' with its mode, owner and time, so a
// directory and GNU tar's --posix archive of it push to the same ID too. Image archives written by
// skopeo come back whole. `snapdir id` of each archive prints the ID its push prints.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { snapdirOk, tempDir } from '../helpers/cli.js'
import { requireTools, tool, umociImageWithReference } from '../helpers/oci.js'

requireTools('umoci', 'skopeo', 'setfattr', 'tar', 'touch', 'mknod')

/** push DIR-OR-ARCHIVE; returns the ID */
async function push(store: string, source: string): Promise<string> {
  return (await snapdirOk(['push', '--store', store, source])).trim()
}

/** pull --tar of `id`, then push of that archive: the ID it gets, which `snapdir id` of the archive must print too */
async function roundTrip(store: string, id: string, format?: string): Promise<string> {
  const archive = path.join(tempDir(), 'pulled.tar')
  await snapdirOk(['pull', '--tar', ...(format ? ['--format', format] : []), '--store', store, '--id', id, archive])
  const local = (await snapdirOk(['id', archive])).trim()
  const pushed = await push(store, archive)
  expect(local, `snapdir id ${archive}`).toBe(pushed)
  return pushed
}

/** A directory of every kind of entry, times to the millisecond, the root with its own mode, owner and time. */
function buildTree(dir: string): void {
  mkdirSync(path.join(dir, 'sub', 'deeper'), { recursive: true })
  writeFileSync(path.join(dir, 'a'), 'a file\n')
  writeFileSync(path.join(dir, 'sub', 'big'), Buffer.alloc(300_000, 5))
  tool('ln', [path.join(dir, 'a'), path.join(dir, 'hard')])
  tool('ln', ['-s', '/etc/absolute-target', path.join(dir, 'sub', 'link')])
  tool('mknod', [path.join(dir, 'null'), 'c', '1', '3'])
  tool('mkfifo', [path.join(dir, 'fifo')])
  tool('chown', ['1000:1000', path.join(dir, 'sub', 'big')])
  tool('chmod', ['4755', path.join(dir, 'a')])
  const times: Array<[string, string]> = [
    ['a', '2021-01-01 00:00:00.123'],
    ['sub/big', '2021-01-02 00:00:00.5'],
    ['null', '2021-01-03 00:00:00'],
    ['fifo', '2021-01-03 00:00:00.001'],
    ['sub/deeper', '2021-01-04 00:00:00.999'],
    ['sub', '2021-01-05 00:00:00.250'],
  ]
  for (const [p, t] of times) tool('touch', ['-h', '-d', t, path.join(dir, p)])
  tool('touch', ['-h', '-d', '2021-01-06 00:00:00.042', path.join(dir, 'sub', 'link')])
  tool('chmod', ['0700', dir])
  tool('chown', ['12:34', dir])
  tool('touch', ['-d', '2021-01-07 00:00:00.777', dir])
}

describe('a directory snapshot through pull --tar and push', () => {
  it('times to the millisecond: the same ID, and GNU tar --posix of the directory pushes to it too', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    mkdirSync(src)
    buildTree(src)
    const store = path.join(t, 'store')
    const id = await push(store, src)
    expect(await roundTrip(store, id)).toBe(id)
    const gnu = path.join(t, 'gnu.tar')
    tool('tar', ['--posix', '--numeric-owner', '-C', src, '-cf', gnu, '.'])
    expect(await push(store, gnu)).toBe(id)
  })

  it('a time finer than a millisecond comes back cut to the millisecond; xattrs do not come back', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    mkdirSync(src)
    buildTree(src)
    const store = path.join(t, 'store')
    const exact = await push(store, src)
    tool('touch', ['-d', '2021-01-01 00:00:00.123456789', path.join(src, 'a')])
    const fine = await push(store, src)
    expect(fine).not.toBe(exact)
    expect(await roundTrip(store, fine), 'the .123456789 s time is .123 s after the round trip').toBe(exact)
    tool('touch', ['-d', '2021-01-01 00:00:00.123', path.join(src, 'a')])
    tool('setfattr', ['-n', 'user.snapdir.test', '-v', 'kept by a directory push only', path.join(src, 'sub', 'big')])
    tool('touch', ['-d', '2021-01-07 00:00:00.777', src])
    const withXattr = await push(store, src)
    expect(withXattr).not.toBe(exact)
    expect(await roundTrip(store, withXattr)).toBe(exact)
  })
})

describe('image archives through pull --tar and push', () => {
  let shared = ''
  let image = ''
  beforeAll(() => {
    ;({ shared, image } = umociImageWithReference('snapdir-archive-id-', 'v1'))
  })
  afterAll(() => {
    if (shared) rmSync(shared, { recursive: true, force: true })
  })

  it('an oci-archive and a docker-archive written by skopeo keep their IDs', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    for (const transport of ['oci-archive', 'docker-archive']) {
      const archive = path.join(t, `${transport}.tar`)
      tool('skopeo', ['copy', '--quiet', `oci:${image}:v1`, `${transport}:${archive}:example.com/app:v1`])
      const id = await push(store, archive)
      expect((await snapdirOk(['id', archive])).trim(), `snapdir id of the ${transport} skopeo wrote`).toBe(id)
      expect(await roundTrip(store, id), transport).toBe(id)
      // the other kind of archive is another snapshot, whose ID id prints as push does (roundTrip checks)
      const other = transport === 'oci-archive' ? 'docker-archive' : 'oci-archive'
      expect(await roundTrip(store, id, other)).not.toBe(id)
    }
  })
})
