// `snapdir sync --config FILE` as a user runs it: a bad file is one line and exit 2 with nothing
// written; a store source goes to two stores, the second fed from the first; --dry-run writes nothing
// and prints the plan; --json reports each (source, target); a second run copies nothing.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import type { SyncReport } from '../../src/sync/sync-run.js'
import { bytes, manifest, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'

function configFile(dir: string, text: string): string {
  const file = path.join(dir, 'sync.yaml')
  writeFileSync(file, text)
  return file
}

describe('sync --config: bad files', () => {
  test.each([
    { what: 'a bad semver range', text: 'sync:\n  - source: docker://127.0.0.1:5000/app\n    target: ./out\n    tags:\n      semver: [">=1.x.y.z"]\n', line: /^snapdir: .*sync\.yaml:5: sync\[0\]\.tags\.semver\[0\]: expected a semver range .*, got ">=1\.x\.y\.z"$/ },
    { what: 'YAML that is not', text: 'sync:\n - source: a\n  target: b\n', line: /^snapdir: .*sync\.yaml:3:\d+: not valid YAML or JSON: / },
    { what: 'an unknown key', text: 'sync:\n  - source: ./a\n    target: ./out\n    ids: []\n    tag: x\n', line: /^snapdir: .*sync\.yaml:5: sync\[0\]\.tag: unexpected key; expected one of the keys / },
  ])('$what: exit 2, one line naming file, field and expectation; nothing created', async ({ text, line }) => {
    const t = tempDir()
    const file = configFile(t, text)
    const r = await snapdir(['sync', '--config', file], { cwd: t })
    expect(r.status).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1)
    expect(r.stderr.trimEnd()).toMatch(line)
    expect(readdirSync(t)).toEqual(['sync.yaml'])
  })

  test('a file that is not there, --config with --from, a bad --platform, a bad --jobs: exit 2, one line', async () => {
    const t = tempDir()
    const file = configFile(t, `sync: [{source: ./a, target: ./b, ids: ['${'a'.repeat(64)}']}]\n`)
    for (const [args, mention] of [
      [['--config', path.join(t, 'nope.yaml')], 'nope.yaml: cannot read the sync config: no such file'],
      [['--config', file, '--from', t], '--config names the sources and targets; give it without --from'],
      [['--config', file, '--platform', 'linux'], '--platform "linux" is not os/arch'],
      [['--config', file, '--jobs', '0'], "--jobs '0': expected an integer from 1 to 256"],
      [['--from', t, '--to', path.join(t, 'b'), '--id', 'a'.repeat(64), '--platform', 'linux/amd64'], '--platform is for --config'],
    ] as const) {
      const r = await snapdir(['sync', ...args], { cwd: t })
      expect(r.status, r.stderr).toBe(2)
      expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1)
      expect(r.stderr).toContain(mention)
    }
    expect(readdirSync(t)).toEqual(['sync.yaml'])
  })
})

describe('sync --config: stores', () => {
  async function storeWithSnapshot(t: string): Promise<{ store: string; id: string; tree: string }> {
    const src = path.join(t, 'src')
    mkdirSync(src)
    writeFileSync(path.join(src, 'big.bin'), bytes('config-sync', 300_000))
    writeFileSync(path.join(src, 'small.txt'), 'hello\n')
    const store = path.join(t, 'store-a')
    const id = (await snapdirOk(['push', '--store', store, src])).trim()
    return { store, id, tree: manifest(src) }
  }

  test('one store to two: the second copy reads the first target, not the source; --json; a re-run copies nothing', async () => {
    const t = tempDir()
    const { id, tree } = await storeWithSnapshot(t)
    // relative paths are relative to the file's directory
    const file = configFile(t, `sync:\n  - source: ./store-a\n    ids: ['${id}']\n    targets: [./store-b, ./store-c]\n`)

    const dry = await snapdir(['sync', '--config', file, '--dry-run'])
    expect(dry.status, dry.stderr).toBe(0)
    expect(dry.stdout).toBe(
      `./store-a ${id}\n` +
        `  -> ./store-b copy from the source\n` +
        `  -> ./store-c copy from ./store-b\n`,
    )
    expect(existsSync(path.join(t, 'store-b')) || existsSync(path.join(t, 'store-c')), 'a dry run writes nothing').toBe(false)

    const r = await snapdir(['sync', '--config', file, '--json'])
    expect(r.status, r.stderr).toBe(0)
    const report = JSON.parse(r.stdout) as SyncReport
    expect(report.rows.map((row) => [row.destination, row.from, row.status, row.digest])).toEqual([
      ['./store-b', `./store-a ${id}`, 'copied', id],
      ['./store-c', './store-b', 'copied', id],
    ])
    expect(report.rows[0]!.blobs.copied).toBeGreaterThan(2)
    expect(report.rows[1]!.bytes.copied).toBe(report.rows[0]!.bytes.copied)
    expect(report.total).toMatchObject({ images: 1, copies: 2, copied: 2, upToDate: 0, failed: 0 })
    // progress on stderr: one line per copy, then the total
    const progress = r.stderr.trimEnd().split('\n')
    expect(progress).toHaveLength(3)
    expect(progress[0]).toMatch(/^\[1\/2\] copied .* -> \.\/store-b: \d+ blobs \(.*\), 0 already there$/)
    expect(progress[2]).toMatch(/^total: 1 images, 2 copies: 2 copied/)

    for (const store of ['store-b', 'store-c']) {
      const out = path.join(t, `out-${store}`)
      await snapdirOk(['pull', '--store', path.join(t, store), '--id', id, out])
      expect(manifest(out)).toBe(tree)
    }

    const again = await snapdir(['sync', '--config', file, '--json'])
    expect(again.status, again.stderr).toBe(0)
    const second = JSON.parse(again.stdout) as SyncReport
    expect(second.rows.map((row) => row.status)).toEqual(['up-to-date', 'up-to-date'])
    expect(second.total.bytes.copied).toBe(0)
  })

  test('a snapshot the source does not have: that copy fails, exit 1 naming it, the report says so', async () => {
    const t = tempDir()
    const { id } = await storeWithSnapshot(t)
    const missing = 'b'.repeat(64)
    const file = configFile(t, `sync:\n  - source: ./store-a\n    ids: ['${missing}', '${id}']\n    target: ./store-b\n`)
    const r = await snapdir(['sync', '--config', file, '--json', '--jobs', '1'])
    expect(r.status).toBe(1)
    const report = JSON.parse(r.stdout) as SyncReport
    expect(report.rows.map((row) => row.status)).toEqual(['failed', 'copied'])
    expect(report.rows[0]!.error).toContain(missing)
    expect(r.stderr.trimEnd().split('\n').at(-1)).toMatch(new RegExp(`^snapdir: 1 of 2 copies failed \\(.*sync\\.yaml\\); the first: .* ${missing} -> \\./store-b: `))
  })
})
