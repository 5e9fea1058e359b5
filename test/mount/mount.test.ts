// `snapdir mount` with real FUSE mounts, read by other processes (python, tar, the kernel's overlayfs)
// and by this one with plain fs calls; the mount itself always runs as its own process.
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { toHex } from '../../src/format/id.js'
import { FileStore } from '../../src/store/file-store.js'
import { objectKey, readTree } from '../../src/store/objects.js'
import { TOOLS, bytes, listFiles, makeEdgeTree, manifest, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { isMounted, startMount } from '../helpers/mount.js'

/** A pushed edge-case tree and an empty mountpoint. */
async function pushedEdgeTree() {
  const t = tempDir()
  const src = path.join(t, 'src')
  const store = path.join(t, 'store')
  const mnt = path.join(t, 'mnt')
  mkdirSync(mnt)
  makeEdgeTree(src)
  const id = (await snapdirOk(['push', '--store', store, src])).trim()
  return { t, src, store, mnt, id, cache: path.join(t, 'cache') }
}

/** The chunk IDs of one file of a snapshot in a file store, in file order. */
async function chunksOf(store: string, id: string, file: string): Promise<string[]> {
  const tree = await readTree(new FileStore(store), id)
  const e = tree.entries.find((x) => x.path.equals(Buffer.from(file)))
  if (!e) throw new Error(`${file} is not in the tree`)
  return e.chunks.map((r) => toHex(r.id))
}

/** The canonical member list of `tar` run over dir (test/tools/tar-canon.py). */
function tarOf(dir: string, ...extra: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const tar = spawn('tar', [
      '--sort=name', '--format=posix', '--pax-option=delete=atime,delete=ctime', '--xattrs', '--xattrs-include=*',
      '--numeric-owner', ...extra, '-C', dir, '-cf', '-', '.',
    ], { stdio: ['ignore', 'pipe', 'ignore'] })
    const canon = spawn('python3', [path.join(TOOLS, 'tar-canon.py')], { stdio: ['pipe', 'pipe', 'inherit'] })
    tar.stdout.pipe(canon.stdin)
    let out = ''
    canon.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
    canon.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`tar-canon.py exited ${code}`))))
  })
}

describe('snapdir mount', () => {
  it('serves every entry kind with the bytes and metadata of the source, and id of the mount is the pushed ID', async () => {
    const { src, store, mnt, id, cache } = await pushedEdgeTree()
    const m = await startMount(['--store', store, '--id', id, '--cache-dir', cache], mnt)

    // bytes (the 1 GiB sparse file too), modes, owners, ns mtimes, xattrs, link targets, devices,
    // fifos, sockets, non-UTF-8 names and hardlink identity, by the independent Python oracle
    expect(manifest(mnt)).toBe(manifest(src))
    expect((await snapdirOk(['id', mnt])).trim()).toBe(id)

    // hardlinks are one inode with the source's link count; inode numbers are stable across stats
    const links = ['hardlinks/one/first', 'hardlinks/two/second', 'hardlinks/third'].map((l) => statSync(path.join(mnt, l)))
    expect(new Set(links.map((s) => s.ino)).size).toBe(1)
    expect(links.map((s) => s.nlink)).toEqual([3, 3, 3])
    expect(statSync(path.join(mnt, 'hardlinks', 'third')).ino).toBe(links[0]!.ino)

    // read-only: no write of any kind gets through
    await expect(fs.writeFile(path.join(mnt, 'new'), 'x')).rejects.toMatchObject({ code: 'EROFS' })
    await expect(fs.appendFile(path.join(mnt, 'files', 'small.txt'), 'x')).rejects.toMatchObject({ code: 'EROFS' })
    await expect(fs.rm(path.join(mnt, 'files', 'small.txt'))).rejects.toMatchObject({ code: 'EROFS' })
    const st = await fs.statfs(mnt)
    expect(st.blocks * st.bsize).toBeGreaterThanOrEqual(1024 ** 3) // the sparse file's logical size counts

    const r = await m.stop()
    expect(r.status).toBe(0)
    expect(isMounted(mnt)).toBe(false)
  }, 120_000)

  it('tar of the mount equals tar of the source', async () => {
    const { src, store, mnt, id, cache } = await pushedEdgeTree()
    await startMount(['--store', store, '--id', id, '--cache-dir', cache], mnt)
    // the 1 GiB sparse file is left out only to keep this test short: the test above reads all of it
    const [a, b] = await Promise.all([tarOf(src, '--exclude=./sparse'), tarOf(mnt, '--exclude=./sparse')])
    expect(a.split('\n').length).toBeGreaterThan(40)
    expect(b).toBe(a)
  }, 120_000)

  it('is a lowerdir for overlayfs: writes, copy-ups and deletes land in the upper layer', async () => {
    const { t, src, store, mnt, id, cache } = await pushedEdgeTree()
    await startMount(['--store', store, '--id', id, '--cache-dir', cache], mnt)
    const upper = path.join(t, 'upper')
    const work = path.join(t, 'work')
    const merged = path.join(t, 'merged')
    for (const d of [upper, work, merged]) mkdirSync(d)
    const ov = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${mnt},upperdir=${upper},workdir=${work}`, merged], { encoding: 'utf8' })
    expect(ov.stderr).toBe('')
    try {
      await fs.writeFile(path.join(merged, 'files', 'new.txt'), 'written on top\n')
      await fs.appendFile(path.join(merged, 'files', 'random-3MiB.bin'), 'tail') // copy-up reads the whole file from FUSE
      await fs.rm(path.join(merged, 'files', 'small.txt'))
      await fs.mkdir(path.join(merged, 'made-dir'))

      expect(await fs.readFile(path.join(merged, 'files', 'new.txt'), 'utf8')).toBe('written on top\n')
      const big = readFileSync(path.join(src, 'files', 'random-3MiB.bin'))
      expect((await fs.readFile(path.join(merged, 'files', 'random-3MiB.bin'))).equals(Buffer.concat([big, Buffer.from('tail')]))).toBe(true)
      expect(existsSync(path.join(merged, 'files', 'small.txt'))).toBe(false)
      // the upper layer holds the changes (a whiteout for the delete), the mount is untouched
      expect(statSync(path.join(upper, 'files', 'small.txt')).isCharacterDevice()).toBe(true)
      expect((await fs.readFile(path.join(mnt, 'files', 'random-3MiB.bin'))).equals(big)).toBe(true)
      expect(existsSync(path.join(mnt, 'files', 'small.txt'))).toBe(true)
    } finally {
      spawnSync('umount', [merged])
    }
  }, 120_000)

  it('a corrupted chunk is EIO on the files that use it, logged with the chunk; other files still read', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    const store = path.join(t, 'store')
    const mnt = path.join(t, 'mnt')
    mkdirSync(path.join(src, 'd'), { recursive: true })
    mkdirSync(mnt)
    writeFileSync(path.join(src, 'd', 'damaged.bin'), bytes('damaged', 600_000))
    writeFileSync(path.join(src, 'd', 'missing.bin'), bytes('missing', 600_000))
    writeFileSync(path.join(src, 'd', 'fine.bin'), bytes('fine', 600_000))
    const id = (await snapdirOk(['push', '--store', store, src])).trim()

    const flipped = (await chunksOf(store, id, 'd/damaged.bin'))[1]!
    const file = path.join(store, objectKey('chunk', flipped))
    const stored = readFileSync(file)
    stored[stored.length - 10] = stored[stored.length - 10]! ^ 0x40
    writeFileSync(file, stored)
    const gone = (await chunksOf(store, id, 'd/missing.bin'))[0]!
    await fs.rm(path.join(store, objectKey('chunk', gone)))

    const m = await startMount(['--store', store, '--id', id, '--no-cache'], mnt)
    await expect(fs.readFile(path.join(mnt, 'd', 'damaged.bin'))).rejects.toMatchObject({ code: 'EIO' })
    await expect(fs.readFile(path.join(mnt, 'd', 'missing.bin'))).rejects.toMatchObject({ code: 'EIO' })
    expect((await fs.readFile(path.join(mnt, 'd', 'fine.bin'))).equals(bytes('fine', 600_000))).toBe(true)
    // the bytes before the damaged chunk are still served: EIO is per read, not per file
    const fh = await fs.open(path.join(mnt, 'd', 'damaged.bin'))
    const head = Buffer.alloc(4096)
    await fh.read(head, 0, 4096, 0)
    await fh.close()
    expect(head.equals(bytes('damaged', 600_000).subarray(0, 4096))).toBe(true)

    const r = await m.stop()
    expect(r.status).toBe(0)
    expect(r.stderr).toMatch(new RegExp(`EIO reading d/damaged\\.bin at offset \\d+: .*${flipped}`))
    expect(r.stderr).toMatch(new RegExp(`EIO reading d/missing\\.bin at offset \\d+: .*${gone}`))
  }, 120_000)

  it('keeps its disk cache under --cache-size, evicting the least recently used chunks', async () => {
    const { src, store, mnt, id, cache } = await pushedEdgeTree()
    const m = await startMount(['--store', store, '--id', id, '--cache-dir', cache, '--cache-size', '1'], mnt)
    const big = await fs.readFile(path.join(mnt, 'files', 'random-3MiB.bin'))
    expect(big.equals(readFileSync(path.join(src, 'files', 'random-3MiB.bin')))).toBe(true)
    await m.stop()
    const cached = listFiles(path.join(cache, 'chunks')).map((f) => statSync(path.join(cache, 'chunks', f)).size)
    expect(cached.length).toBeGreaterThan(0)
    expect(cached.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(1024 * 1024)
  }, 120_000)
})

describe('mount and umount: bad input and signals', () => {
  it('a missing mountpoint is a usage error, an unknown snapshot mounts nothing', async () => {
    const { t, store, mnt, id } = await pushedEdgeTree()
    const missing = await snapdir(['mount', '--store', store, '--id', id, path.join(t, 'nope')])
    expect(missing.status).toBe(2)
    expect(missing.stderr).toBe(`snapdir: mountpoint '${path.join(t, 'nope')}' does not exist\n`)

    const unknown = await snapdir(['mount', '--store', store, '--id', 'ab'.repeat(32), mnt])
    expect(unknown.status).toBe(1)
    expect(unknown.stderr).toMatch(/^snapdir: snapshot a{0}(ab){32} is not in .*\n$/)
    expect(isMounted(mnt)).toBe(false)

    const badId = await snapdir(['mount', '--store', store, '--id', 'xyz', mnt])
    expect(badId.status).toBe(2)
  }, 60_000)

  it('refuses a mountpoint that is already mounted, and umount refuses what is not a snapdir mount', async () => {
    const { t, store, mnt, id } = await pushedEdgeTree()
    await startMount(['--store', store, '--id', id, '--no-cache'], mnt)
    const again = await snapdir(['mount', '--store', store, '--id', id, mnt])
    expect(again.status).toBe(2)
    expect(again.stderr).toMatch(/already a mount point \(fuse\.snapdir snapdir:/)

    const plain = await snapdir(['umount', t])
    expect(plain.status).toBe(2)
    expect(plain.stderr).toBe(`snapdir: '${t}' is not a mount point\n`)
    const other = await snapdir(['umount', '/proc'])
    expect(other.status).toBe(2)
    expect(other.stderr).toBe(`snapdir: '/proc' is a proc mount, not a snapdir one\n`)
  }, 60_000)

  it('umount of a busy mount says so; --lazy detaches it and the mount process exits', async () => {
    const { store, mnt, id } = await pushedEdgeTree()
    const m = await startMount(['--store', store, '--id', id, '--no-cache'], mnt)
    const holder = spawn('sleep', ['60'], { cwd: path.join(mnt, 'files') })
    try {
      // 'spawn' comes after the exec, so the holder's working directory is in the mount by then
      await once(holder, 'spawn')
      const busy = await snapdir(['umount', mnt])
      expect(busy.status).toBe(1)
      expect(busy.stderr).toMatch(/is busy/)
      expect(isMounted(mnt)).toBe(true)
      expect((await snapdir(['umount', '--lazy', mnt])).status).toBe(0)
      expect(isMounted(mnt)).toBe(false)
    } finally {
      holder.kill()
    }
    const r = await m.exited
    expect(r.status).toBe(0)
  }, 60_000)

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`${signal} unmounts cleanly and prints what was fetched with --json`, async () => {
      const { src, store, mnt, id } = await pushedEdgeTree()
      const m = await startMount(['--store', store, '--id', id, '--no-cache', '--json'], mnt)
      const data = await fs.readFile(path.join(mnt, 'files', 'random-3MiB.bin'))
      expect(createHash('sha256').update(data).digest('hex')).toBe(createHash('sha256').update(readFileSync(path.join(src, 'files', 'random-3MiB.bin'))).digest('hex'))
      const r = await m.stop(signal)
      expect(r.status).toBe(0)
      expect(isMounted(mnt)).toBe(false)
      const stats = JSON.parse(r.stdout) as { fetched: number; readErrors: number; id: string }
      expect(stats.id).toBe(id)
      expect(stats.fetched).toBe(new Set(await chunksOf(store, id, 'files/random-3MiB.bin')).size)
      expect(stats.readErrors).toBe(0)
    }, 60_000)
  }
})
