// Trees cost what changed (issue 14): a one-file edit of a 10,000-entry tree writes, and a sync of it
// sends, at most 64 KiB of tree objects (a format 2 root and the parts that changed), where a format
// 1 tree was rewritten and sent whole. Counted as the store's new files, by the real CLI.
import { mkdirSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { listFiles, manifest, requireBuild, snapdirOk, tempDir } from '../helpers/cli.js'

requireBuild()

const TREE_DIRS = ['trees/', 'tree-parts/']
const BUDGET = 64 * 1024

/** 100 directories of 100 files (10,103 entries with the directories and the root), fixed times. */
function bigTree(dir: string): void {
  for (let d = 0; d < 100; d++) {
    if (d === 0) mkdirSync(path.join(dir, 'usr', 'share'), { recursive: true })
    const sub = path.join(dir, 'usr', 'share', `package-number-${String(d).padStart(3, '0')}`)
    mkdirSync(sub, { recursive: true })
    for (let f = 0; f < 100; f++) {
      const file = path.join(sub, `some-file-of-the-package-${String(f).padStart(3, '0')}.txt`)
      writeFileSync(file, `file ${d}/${f}\n`.repeat(1 + ((d * 100 + f) % 7)))
      utimesSync(file, 1_600_000_000, 1_600_000_000)
    }
    utimesSync(sub, 1_600_000_000, 1_600_000_000)
  }
}

/** The store's tree objects (roots and parts) that are not in `before`, and their bytes. */
function newTreeObjects(store: string, before: Set<string>): { files: string[]; bytes: number } {
  const files = listFiles(store).filter((f) => TREE_DIRS.some((d) => f.startsWith(d)) && !before.has(f))
  return { files, bytes: files.reduce((a, f) => a + statSync(path.join(store, f)).size, 0) }
}

describe('a one-file edit of a 10,000-entry tree', () => {
  it('writes and syncs at most 64 KiB of tree objects, and pulls back as edited', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    const store = path.join(t, 'store')
    const mirror = path.join(t, 'mirror')
    bigTree(src)
    const first = (await snapdirOk(['push', '--store', store, src])).trim()
    const whole = newTreeObjects(store, new Set())
    // the first push writes the whole tree: a root and over a hundred parts
    expect(whole.files.filter((f) => f.startsWith('tree-parts/')).length).toBeGreaterThan(100)
    await snapdirOk(['sync', '--from', store, '--to', mirror, '--id', first])

    const before = new Set(listFiles(store))
    const edited = path.join(src, 'usr', 'share', 'package-number-050', 'some-file-of-the-package-050.txt')
    writeFileSync(edited, 'edited\n')
    const second = (await snapdirOk(['push', '--store', store, src])).trim()
    expect(second).not.toBe(first)
    const written = newTreeObjects(store, before)
    expect(written.bytes, `${written.files.length} new tree objects`).toBeLessThanOrEqual(BUDGET)
    expect(written.files.filter((f) => f.startsWith('trees/'))).toHaveLength(1)
    // a whole tree is well over the budget: the test measures the split, not a small tree
    console.log(`tree objects: whole tree ${whole.bytes} bytes in ${whole.files.length} objects; one-file edit ${written.bytes} bytes in ${written.files.length}`)
    expect(whole.bytes).toBeGreaterThan(BUDGET)
    expect(whole.bytes).toBeGreaterThan(8 * written.bytes)

    const mirrorBefore = new Set(listFiles(mirror))
    const summary = JSON.parse(await snapdirOk(['sync', '--from', store, '--to', mirror, '--id', second, '--json'])) as { bytes: { copied: number } }
    const sent = newTreeObjects(mirror, mirrorBefore)
    expect(sent.bytes).toBeLessThanOrEqual(BUDGET)
    expect(sent.files.sort()).toEqual(written.files.sort())
    // what moved besides tree objects is the edited file's pack group (a chunk or two)
    expect(summary.bytes.copied).toBeLessThanOrEqual(sent.bytes + 256 * 1024)

    await snapdirOk(['pull', '--store', mirror, '--id', second, path.join(t, 'out')])
    expect(manifest(path.join(t, 'out'))).toBe(manifest(src))
    await snapdirOk(['verify', '--store', mirror, '--id', second])
  }, 300_000) // 10,000 files pushed twice, synced twice, pulled and described: minutes on a busy machine
})
