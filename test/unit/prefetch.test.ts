// native/prefetch.c walks a tree in threads of its own, ahead of a scan; nothing waits for it, so a
// bug there would show as a crash or a hang of the whole process, not as a wrong result.
import { mkdirSync, writeFileSync, symlinkSync } from 'node:fs'
import path from 'node:path'
import { expect, it } from 'vitest'
import { native } from '../../src/chunk/native.js'
import { scanDirectory } from '../../src/ingest/scan.js'
import { tempDir } from '../helpers/cli.js'

it('returns at once and leaves the process well, for a deep tree, a missing root or a file', async () => {
  const t = tempDir()
  let dir = t
  for (let depth = 0; depth < 40; depth++) {
    dir = path.join(dir, `d${depth}`)
    mkdirSync(dir)
    // empty files: the check for a cached tree finds nothing to go by, so the threads do walk it
    for (let i = 0; i < 5; i++) writeFileSync(path.join(dir, `f${i}`), '')
    mkdirSync(path.join(dir, 'empty'))
  }
  symlinkSync('/', path.join(t, 'root-link')) // never followed
  for (let round = 0; round < 20; round++) {
    const t0 = performance.now()
    native!.prefetchTree(t)
    native!.prefetchTree(path.join(t, 'missing'))
    native!.prefetchTree(path.join(t, 'd0', 'f0'))
    expect(performance.now() - t0).toBeLessThan(100)
  }
  // the walks run meanwhile; a scan beside them sees the tree as it is
  const scanned = await scanDirectory(t)
  expect(scanned.length).toBe(1 + 40 * 7 + 1)
  await new Promise((resolve) => setTimeout(resolve, 200))
})
