import { randomBytes } from 'node:crypto'
import { closeSync, mkdirSync, openSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { bytes, listFiles, manifest, snapdirOk, tempDir } from '../helpers/cli.js'

/** 300 files of 5-50 KiB in 10 directories: the shape of /usr/share or a Python package. */
function smallFiles(dir: string): void {
  for (let d = 0; d < 10; d++) {
    mkdirSync(path.join(dir, `d${d}`), { recursive: true })
    for (let f = 0; f < 30; f++) writeFileSync(path.join(dir, `d${d}`, `f${f}`), bytes(`${d}/${f}`, 5000 + ((d * 30 + f) * 151) % 46000))
  }
}

describe('small files are cut together', () => {
  it('share a few chunks, come back byte for byte, and a changed file adds only chunks near it', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    const store = path.join(t, 'store')
    smallFiles(src)
    const id = (await snapdirOk(['push', '--store', store, src])).trim()
    const chunks = listFiles(path.join(store, 'chunks'))
    // about their total size over the average chunk size, not one object or more per file
    expect(chunks.length).toBeLessThan(300 / 2)

    await snapdirOk(['pull', '--store', store, '--id', id, path.join(t, 'out')])
    expect(manifest(path.join(t, 'out'))).toBe(manifest(src))
    expect((await snapdirOk(['verify', '--store', store, '--id', id])).trim()).toMatch(/0 damaged/)

    writeFileSync(path.join(src, 'd4', 'f7'), bytes('changed', 20_000))
    const id2 = (await snapdirOk(['push', '--store', store, src])).trim()
    expect(id2).not.toBe(id)
    const added = listFiles(path.join(store, 'chunks')).length - chunks.length
    expect(added).toBeGreaterThanOrEqual(1)
    expect(added).toBeLessThanOrEqual(3)
  })

  it('a small file with a hole and the same file written densely have the same ID (regression)', async () => {
    const t = tempDir()
    const content = Buffer.concat([randomBytes(1000), Buffer.alloc(40_000), randomBytes(1000)])
    for (const name of ['dense', 'sparse']) mkdirSync(path.join(t, name))
    writeFileSync(path.join(t, 'dense', 'f'), content)
    const fd = openSync(path.join(t, 'sparse', 'f'), 'w')
    writeSync(fd, content, 0, 1000, 0)
    writeSync(fd, content, 41_000, 1000, 41_000)
    closeSync(fd)
    const sparse = statSync(path.join(t, 'sparse', 'f'))
    expect(sparse.blocks * 512).toBeLessThan(content.length) // really has a hole
    const fixed = new Date('2020-01-01T00:00:00Z')
    for (const p of ['dense/f', 'sparse/f', 'dense', 'sparse']) utimesSync(path.join(t, p), fixed, fixed)
    const a = (await snapdirOk(['id', path.join(t, 'dense')])).trim()
    const b = (await snapdirOk(['id', path.join(t, 'sparse')])).trim()
    expect(b).toBe(a)
  })
})
