// The README's promise: exit 2 for bad usage or input (what the user fixes by changing the command:
// a target that is not empty, a file where a directory goes, a mount point to mount on), 1 for a
// failure; one line on stderr either way, and nothing written.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { bytes, snapdir, snapdirOk, tempDir, type RunResult } from '../helpers/cli.js'

async function pushed(): Promise<{ t: string; store: string; id: string }> {
  const t = tempDir()
  const src = path.join(t, 'src')
  mkdirSync(src)
  writeFileSync(path.join(src, 'a.bin'), bytes('exit', 30_000))
  const store = path.join(t, 'store')
  const id = (await snapdirOk(['push', '--store', store, src])).trim()
  return { t, store, id }
}

function expectLine(r: RunResult, status: 1 | 2, mention: string): void {
  expect(r.status, r.stderr).toBe(status)
  expect(r.stdout).toBe('')
  expect(r.stderr.trim().split('\n')).toHaveLength(1)
  expect(r.stderr).toMatch(/^snapdir: /)
  expect(r.stderr).toContain(mention)
}

describe('exit status 2 for input the user gave', () => {
  test('pull into a non-empty directory', async () => {
    const { t, store, id } = await pushed()
    const out = path.join(t, 'out')
    mkdirSync(out)
    writeFileSync(path.join(out, 'mine'), 'x')
    expectLine(await snapdir(['pull', '--store', store, '--id', id, out]), 2, out)
    expect(readdirSync(out)).toEqual(['mine'])
    expect(readdirSync(t).sort()).toEqual(['out', 'src', 'store'])
  })

  test('pull into a file', async () => {
    const { t, store, id } = await pushed()
    const file = path.join(t, 'file')
    writeFileSync(file, 'x')
    expectLine(await snapdir(['pull', '--store', store, '--id', id, file]), 2, file)
  })

  test('pull into a directory whose parent does not exist', async () => {
    const { t, store, id } = await pushed()
    const out = path.join(t, 'no', 'out')
    expectLine(await snapdir(['pull', '--store', store, '--id', id, out]), 2, out)
  })

  test('pull --tar onto an existing file, or into a directory that does not exist', async () => {
    const { t, store, id } = await pushed()
    const file = path.join(t, 'there.tar')
    writeFileSync(file, 'mine')
    expectLine(await snapdir(['pull', '--store', store, '--id', id, '--tar', file]), 2, file)
    const lost = path.join(t, 'no', 'out.tar')
    expectLine(await snapdir(['pull', '--store', store, '--id', id, '--tar', lost]), 2, lost)
  })

  test('mount on a mount point', async () => {
    const { store, id } = await pushed()
    expectLine(await snapdir(['mount', '--store', store, '--id', id, '/proc']), 2, '/proc')
  })
})

describe('exit status 1 for failures', () => {
  test('a snapshot the store does not hold', async () => {
    const { t, store } = await pushed()
    expectLine(await snapdir(['pull', '--store', store, '--id', 'c'.repeat(64), path.join(t, 'out')]), 1, 'c'.repeat(64))
  })
})
