import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { bytes, listFiles, SNAPDIR, snapdirOk, tempDir } from '../helpers/cli.js'

/** Starts a push and SIGKILLs it once it has written some chunks but not all. */
async function killMidPush(store: string, src: string): Promise<void> {
  const child = spawn(process.execPath, [SNAPDIR, 'push', '--store', store, src], { stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    const chunks = existsSync(path.join(store, 'chunks')) ? listFiles(path.join(store, 'chunks')).length : 0
    if (chunks >= 5) break
    await new Promise((r) => setTimeout(r, 5))
  }
  child.kill('SIGKILL')
  await exited
}

describe('a push killed halfway', () => {
  it('leaves no tree and no revision, and the next push completes, reusing what was written', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    const store = path.join(t, 'store')
    // 40 files of 2 MB: enough chunks that the kill lands in the middle
    mkdirSync(src)
    for (let i = 0; i < 40; i++) writeFileSync(path.join(src, `f${i}`), bytes(`f${i}`, 2_000_000))

    await killMidPush(store, src)
    const written = listFiles(path.join(store, 'chunks')).filter((f) => !f.includes('.tmp-'))
    expect(written.length).toBeGreaterThanOrEqual(5)
    expect(written.length).toBeLessThan(40 * 30) // not finished: a full push writes ~1200 chunks
    expect(existsSync(path.join(store, 'trees')) ? listFiles(path.join(store, 'trees')) : []).toEqual([])
    expect((await snapdirOk(['revisions', '--store', store])).trim()).toBe('')

    const id = (await snapdirOk(['push', '--json', '--store', store, src])).trim()
    const summary = JSON.parse(id) as { id: string; chunksWritten: number; distinctChunks: number }
    expect(summary.id).toBe((await snapdirOk(['id', src])).trim())
    // what the killed push stored is reused, not written again
    expect(summary.chunksWritten).toBeLessThanOrEqual(summary.distinctChunks - written.length)
    expect((await snapdirOk(['verify', '--store', store, '--id', summary.id])).trim()).toMatch(/ 0 damaged/)
  })
})
