// sync --config against real registries (docker-registry 2.8 on loopback), with tags pushed by skopeo:
// tags chosen by name, regex and semver range as the registry lists them, each resolved to the digest
// skopeo pushed; --dry-run prints the plan and writes nothing; a named tag that is not there fails alone.
import { rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { SyncReport } from '../../src/sync/sync-run.js'
import { snapdir, tempDir } from '../helpers/cli.js'
import { firstManifest, requireTools, tool, umociImageWithReference } from '../helpers/oci.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'

requireTools('umoci', 'skopeo', 'setfattr', 'docker-registry')

/** Tags pushed to the source repository, all of one image. */
const TAGS = ['1.0.0', '1.2.0', 'v1.2.5', '1.3.0-rc1', '1.4', '2.0.0', 'latest', 'edge', 'bookworm']

let shared = ''
let a: TestRegistry
let b: TestRegistry
let digest = ''

beforeAll(async () => {
  const built = umociImageWithReference('snapdir-sync-config-', 'v1')
  shared = built.shared
  digest = firstManifest(built.image).descriptor.digest
  a = await startRegistry()
  b = await startRegistry()
  for (const tag of TAGS) tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${built.image}:v1`, `docker://${a.host}/team/app:${tag}`])
}, 180_000)

afterAll(async () => {
  await a?.stop()
  await b?.stop()
  if (shared) rmSync(shared, { recursive: true, force: true })
})

function configFile(text: string): { dir: string; file: string } {
  const dir = tempDir()
  const file = path.join(dir, 'sync.yaml')
  writeFileSync(file, text)
  return { dir, file }
}

/** The repositories a registry holds, as its catalog says. */
async function catalog(r: TestRegistry): Promise<string[]> {
  const res = await fetch(`${r.url}/v2/_catalog`)
  return ((await res.json()) as { repositories: string[] }).repositories
}

describe('sync --config against registries', () => {
  test('tags by names, regex and semver range, less excludes; --dry-run prints the plan and writes nothing', async () => {
    const { file } = configFile(
      `sync:\n` +
        `  - source: docker://${a.host}/team/app\n` +
        `    target: docker://${b.host}/mirror/app\n` +
        `    tags:\n` +
        `      names: [latest]\n` +
        `      regex: ['edge|book.*']\n` +
        `      semver: ['>=1.2 <2']\n` +
        `      exclude: [bookworm]\n`,
    )
    const r = await snapdir(['sync', '--config', file, '--dry-run'])
    expect(r.status, r.stderr).toBe(0)
    // versions in order (1.3.0-rc1 is a prerelease: no range asked for one), then the rest by name
    const chosen = ['1.2.0', 'v1.2.5', '1.4', 'edge', 'latest']
    expect(r.stdout).toBe(chosen.map((t) => `docker://${a.host}/team/app:${t} ${digest}\n  -> docker://${b.host}/mirror/app:${t} copy from the source\n`).join(''))
    expect(r.stderr).toContain('sync[0]: 5 images')
    expect(await catalog(b), 'a dry run writes nothing').toEqual([])
  })

  test('a named tag the repository lacks fails alone: exit 1, the plan says which', async () => {
    const { file } = configFile(`sync:\n  - source: docker://${a.host}/team/app\n    target: docker://${b.host}/mirror/app\n    tags: {names: [latest, 9.9.9]}\n`)
    const r = await snapdir(['sync', '--config', file, '--dry-run', '--json'])
    expect(r.status).toBe(1)
    const report = JSON.parse(r.stdout) as SyncReport
    expect(report.rows.map((row) => [row.source, row.status])).toEqual([
      [`docker://${a.host}/team/app:latest`, 'planned'],
      [`docker://${a.host}/team/app:9.9.9`, 'failed'],
    ])
    expect(report.rows[1]!.error).toMatch(/tag 9\.9\.9 is not in/)
    expect(r.stderr.trimEnd().split('\n').at(-1)).toMatch(/^snapdir: 1 of 2 copies failed .*9\.9\.9/)
  })
})
