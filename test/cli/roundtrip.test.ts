import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { hashBytes } from '../../src/chunk/hash.js'
import { bytes } from '../helpers/bytes.js'
import { ID_RE, listFiles, makeEdgeTree, manifest, snapdirOk, tempDir } from '../helpers/cli.js'

describe('push, pull and id on a tree with every entry kind', () => {
  it('pull gives back the source in bytes and metadata, and id of the copy is the pushed ID', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    const store = path.join(t, 'store')
    const out = path.join(t, 'pulled')
    makeEdgeTree(src)

    const stdout = await snapdirOk(['push', '--store', store, src])
    expect(stdout).toMatch(/^[0-9a-f]{64}\n$/)
    const id = stdout.trim()

    await snapdirOk(['pull', '--store', store, '--id', id, out])
    // bytes, modes incl. setuid/setgid/sticky, owners, ns mtimes, xattrs, link targets, devices,
    // fifos, sockets, non-UTF-8 names and hardlink identity, by an oracle independent of snapdir
    expect(manifest(out)).toBe(manifest(src))
    expect((await snapdirOk(['id', out])).trim()).toBe(id)
    expect((await snapdirOk(['id', src])).trim()).toBe(id)

    // files of at most 4 KiB live in the tree, not as chunk objects
    const small = readFileSync(path.join(src, 'files', 'small.txt'))
    expect(small.length).toBeLessThanOrEqual(4096)
    expect(listFiles(path.join(store, 'chunks')).map((f) => path.basename(f))).not.toContain(hashBytes(small).toString('hex'))

    // a 1 GiB sparse file costs neither its size in the store nor on disk after the pull
    const storeBytes = listFiles(store).reduce((a, f) => a + statSync(path.join(store, f)).size, 0)
    expect(storeBytes).toBeLessThan(16 * 1024 * 1024)
    const sparse = statSync(path.join(out, 'sparse', 'sparse-1GiB'))
    expect(sparse.size).toBe(1024 ** 3)
    expect(sparse.blocks * 512).toBeLessThan(4 * 1024 * 1024)
  })

  it('the same tree on another path, or copied with cp -a, has the same ID', async () => {
    const t = tempDir()
    makeEdgeTree(path.join(t, 'a'))
    mkdirSync(path.join(t, 'deeper'))
    makeEdgeTree(path.join(t, 'deeper', 'b'))
    expect(spawnSync('cp', ['-a', path.join(t, 'a'), path.join(t, 'c')]).status).toBe(0)
    const ida = (await snapdirOk(['id', path.join(t, 'a')])).trim()
    expect(ida).toMatch(ID_RE)
    expect((await snapdirOk(['id', path.join(t, 'deeper', 'b')])).trim()).toBe(ida)
    expect((await snapdirOk(['id', path.join(t, 'c')])).trim()).toBe(ida)
  })

  it('the TypeScript fallback chunker gives the same ID as the native one', async () => {
    const t = tempDir()
    makeEdgeTree(path.join(t, 'a'))
    const native = (await snapdirOk(['id', path.join(t, 'a')])).trim()
    const js = (await snapdirOk(['id', path.join(t, 'a')], { env: { SNAPDIR_CHUNKER: 'js' } })).trim()
    expect(js).toBe(native)
  })

  it("push's native cut-hash-store path and the TypeScript chunker give the same ID; files over several read blocks come back whole", async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    mkdirSync(path.join(src, 'small'), { recursive: true })
    // 9.5 MB: three 4 MiB read blocks, so chunks are cut across block boundaries; text repeats, so
    // chunks recur within the file
    const text = Buffer.from(Array.from({ length: 120_000 }, (_, i) => `record ${i % 5000} of the large file\n`).join(''))
    writeFileSync(path.join(src, 'large.bin'), Buffer.concat([bytes('large', 5_000_000), text]))
    // packed into groups (between 4 KiB and 64 KiB)
    for (let i = 0; i < 200; i++) writeFileSync(path.join(src, 'small', `f${i}`), bytes(`small${i}`, 5000 + i * 211))
    const store = path.join(t, 'store')
    const id = (await snapdirOk(['push', '--store', store, src])).trim()
    expect((await snapdirOk(['id', src], { env: { SNAPDIR_CHUNKER: 'js' } })).trim()).toBe(id)
    const out = path.join(t, 'out')
    await snapdirOk(['pull', '--store', store, '--id', id, out])
    expect(manifest(out)).toBe(manifest(src))
  })

  it('a changed byte in a large file adds only the chunks around it to the store', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    makeEdgeTree(path.join(t, 'v0'), 0)
    makeEdgeTree(path.join(t, 'v1'), 1)
    const id0 = (await snapdirOk(['push', '--store', store, path.join(t, 'v0')])).trim()
    const before = new Set(listFiles(path.join(store, 'chunks')))
    const id1 = (await snapdirOk(['push', '--store', store, path.join(t, 'v1')])).trim()
    expect(id1).not.toBe(id0)
    const added = listFiles(path.join(store, 'chunks')).filter((f) => !before.has(f))
    expect(added.length).toBeGreaterThanOrEqual(1)
    expect(added.length).toBeLessThanOrEqual(3)
  })
})
