import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { bytes, countObjects, killWhen, listFiles, snapdirOk, tempDir } from '../helpers/cli.js'

describe('a push killed halfway', () => {
  it('leaves no tree and no revision, and the next push completes, reusing what was written', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    const store = path.join(t, 'store')
    // 40 files of 2 MB: enough chunks that the kill lands in the middle
    mkdirSync(src)
    for (let i = 0; i < 40; i++) writeFileSync(path.join(src, `f${i}`), bytes(`f${i}`, 2_000_000))

    // killed once some chunks are stored, but not all of them
    await killWhen(['push', '--store', store, src], () => countObjects(path.join(store, 'chunks')) >= 5)
    const written = countObjects(path.join(store, 'chunks'))
    expect(written).toBeGreaterThanOrEqual(5)
    expect(written).toBeLessThan(40 * 30) // not finished: a full push writes ~1200 chunks
    expect(existsSync(path.join(store, 'trees')) ? listFiles(path.join(store, 'trees')) : []).toEqual([])
    expect((await snapdirOk(['revisions', '--store', store])).trim()).toBe('')

    const id = (await snapdirOk(['push', '--json', '--store', store, src])).trim()
    const summary = JSON.parse(id) as { id: string; chunksWritten: number; distinctChunks: number }
    expect(summary.id).toBe((await snapdirOk(['id', src])).trim())
    // what the killed push stored is reused, not written again
    expect(summary.chunksWritten).toBeLessThanOrEqual(summary.distinctChunks - written)
    expect((await snapdirOk(['verify', '--store', store, '--id', summary.id])).trim()).toMatch(/ 0 damaged/)
  })
})
