// Pulls that fail on the target's side, on a real full disk (a 2 MiB tmpfs) or a damaged snapshot,
// and pulls into a directory that is a mount point: one line naming the path and the cause, exit 1,
// and nothing left behind (no temp file or directory, an existing target emptied back as it was).
import { existsSync, mkdirSync, readdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { bytes, listFiles, manifest, snapdir, snapdirOk, tempDir, type RunResult } from '../helpers/cli.js'
import { mountTmpfs } from '../helpers/tmpfs.js'

/** A 5 MB file (more than the 2 MiB tmpfs holds) and a small one, pushed to a store in `t`. */
async function pushed(): Promise<{ t: string; src: string; store: string; id: string }> {
  const t = tempDir()
  const src = path.join(t, 'src')
  mkdirSync(path.join(src, 'sub'), { recursive: true })
  writeFileSync(path.join(src, 'sub', 'big.bin'), bytes('full-disk', 5_000_000))
  writeFileSync(path.join(src, 'small.txt'), 'small\n')
  const store = path.join(t, 'store')
  const id = (await snapdirOk(['push', '--store', store, src])).trim()
  return { t, src, store, id }
}

function expectOneLine(r: RunResult, ...mentions: Array<string | RegExp>): void {
  const shown = `stderr was:\n${r.stderr}`
  expect(r.status, shown).toBe(1)
  expect(r.stdout).toBe('')
  const lines = r.stderr.split('\n').filter(Boolean)
  expect(lines, shown).toHaveLength(1)
  expect(lines[0]).toMatch(/^snapdir: /)
  expect(lines[0], shown).not.toMatch(/internal error|unexpected/)
  for (const m of mentions) expect(lines[0]).toMatch(m)
}

const ENOSPC = /no space left on device \(ENOSPC\)/

/** Deletes one chunk of big.bin's: the pull fails part way through. */
function damage(store: string): void {
  const chunks = listFiles(path.join(store, 'chunks')).sort()
  unlinkSync(path.join(store, 'chunks', chunks[Math.floor(chunks.length / 2)]!))
}

describe('pull --tar onto a full disk or of a damaged snapshot', () => {
  test('a full disk: one line naming the archive and ENOSPC, exit 1, no temp file', async () => {
    const { t, store, id } = await pushed()
    const disk = mountTmpfs(path.join(t, 'disk'), '2m')
    const out = path.join(disk, 'out.tar')
    const r = await snapdir(['pull', '--store', store, '--id', id, '--tar', out])
    expectOneLine(r, out, ENOSPC)
    expect(readdirSync(disk)).toEqual([])
  })

  test('a missing chunk: one line naming it, exit 1, no temp file', async () => {
    const { t, store, id } = await pushed()
    damage(store)
    const out = path.join(t, 'out.tar')
    const r = await snapdir(['pull', '--store', store, '--id', id, '--tar', out])
    expectOneLine(r, /missing/, 'sub/big.bin')
    expect(readdirSync(t).sort()).toEqual(['src', 'store'])
  })
})

describe('pull into a directory on a full disk', () => {
  test('one line naming the file and ENOSPC, exit 1, no target and no temp directory', async () => {
    const { t, store, id } = await pushed()
    const disk = mountTmpfs(path.join(t, 'disk'), '2m')
    const out = path.join(disk, 'out')
    const r = await snapdir(['pull', '--store', store, '--id', id, out])
    expectOneLine(r, path.join(out, 'sub', 'big.bin'), ENOSPC)
    expect(readdirSync(disk)).toEqual([])
  })
})

describe('pull into an empty directory that is a mount point', () => {
  test('fills it in place: the same tree as pushed, and it is still the mount point', async () => {
    const { t, src, store, id } = await pushed()
    const mnt = mountTmpfs(path.join(t, 'mnt'), '16m')
    const dev = statSync(mnt).dev
    await snapdirOk(['pull', '--store', store, '--id', id, mnt])
    expect(statSync(mnt).dev).toBe(dev)
    expect(manifest(mnt)).toBe(manifest(src))
  })

  test.each([
    { what: 'a damaged snapshot', size: '16m', says: [/missing/, 'sub/big.bin'] },
    { what: 'a full disk', size: '2m', says: ['sub/big.bin', ENOSPC] },
  ])('$what: exit 1 with one line, and the directory emptied back as it was', async ({ size, says }) => {
    const { t, store, id } = await pushed()
    if (size === '16m') damage(store)
    const mnt = mountTmpfs(path.join(t, 'mnt'), size)
    const before = statSync(mnt)
    const r = await snapdir(['pull', '--store', store, '--id', id, mnt])
    expectOneLine(r, ...says)
    expect(readdirSync(mnt)).toEqual([])
    const after = statSync(mnt)
    expect({ mode: after.mode, uid: after.uid, mtime: after.mtimeMs }).toEqual({ mode: before.mode, uid: before.uid, mtime: before.mtimeMs })
    expect(existsSync(path.join(t, `.mnt`))).toBe(false)
    expect(readdirSync(t).sort()).toEqual(['mnt', 'src', 'store'])
  })
})
