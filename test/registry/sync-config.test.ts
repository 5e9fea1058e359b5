// sync --config against real registries (docker-registry 2.8 on loopback), with tags pushed by skopeo:
// tags chosen by name, regex and semver range as the registry lists them, each resolved to the digest
// skopeo pushed; --dry-run prints the plan and writes nothing; a named tag that is not there fails alone.
// Copies of every kind: registry -> registry and -> store (the source's blobs fetched once for both,
// through a counting proxy), store -> registry and -> store, skopeo reading back what was written.
import { existsSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { SyncReport } from '../../src/sync/sync-run.js'
import { snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { startCountingProxy, type CountingProxy } from '../helpers/counting-proxy.js'
import { firstManifest, requireTools, tool, umociImageWithReference } from '../helpers/oci.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'

requireTools('umoci', 'skopeo', 'setfattr', 'docker-registry')

/** Tags pushed to the source repository, all of one image. */
const TAGS = ['1.0.0', '1.2.0', 'v1.2.5', '1.3.0-rc1', '1.4', '2.0.0', 'latest', 'edge', 'bookworm']

let shared = ''
let a: TestRegistry
let b: TestRegistry
let digest = ''
let layout = ''
/** the image's config and layers */
let blobCount = 0

beforeAll(async () => {
  const built = umociImageWithReference('snapdir-sync-config-', 'v1')
  shared = built.shared
  layout = built.image
  const first = firstManifest(built.image)
  digest = first.descriptor.digest
  blobCount = 1 + first.manifest.layers.length
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

/** The manifest digest skopeo reads at `ref` (docker://…). */
function skopeoDigest(ref: string): string {
  return (JSON.parse(tool('skopeo', ['inspect', '--tls-verify=false', ref])) as { Digest: string }).Digest
}

describe('sync --config copies', () => {
  let proxy: CountingProxy
  beforeAll(async () => {
    proxy = await startCountingProxy(a.host)
  })
  afterAll(async () => {
    await proxy?.close()
  })

  test('registry -> registry and store: each source blob fetched once for both targets; the store holds what a push from the registry makes; again: nothing copied', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const { file } = configFile(`sync:\n  - source: docker://${proxy.host}/team/app\n    tags: {names: ['1.0.0', latest]}\n    targets: [${store}, docker://${b.host}/both/app]\n`)
    proxy.reset()
    const r = await snapdir(['sync', '--config', file, '--json'])
    expect(r.status, r.stderr).toBe(0)
    const report = JSON.parse(r.stdout) as SyncReport
    const src = (tag: string) => `docker://${proxy.host}/team/app:${tag}`
    const inB = (tag: string) => `docker://${b.host}/both/app:${tag}`
    // the registry target first (the source's kind), then the store, fed from that copy
    expect(report.rows.map((row) => [row.source, row.destination, row.from, row.status])).toEqual([
      [src('1.0.0'), inB('1.0.0'), src('1.0.0'), 'copied'],
      [src('1.0.0'), store, inB('1.0.0'), 'copied'],
      [src('latest'), inB('latest'), src('latest'), 'copied'],
      [src('latest'), store, inB('latest'), 'copied'],
    ])
    // one image under two tags: its blobs fetched from the source once, by whichever tag came first
    expect(proxy.count('GET', /\/blobs\/sha256:/)).toBe(blobCount)
    expect(report.rows[2]!.blobs).toEqual({ copied: 0, skipped: blobCount })
    // in the store, the second tag is a snapshot of its own (index.json names the tag), its layers already there
    expect(report.rows[3]!.blobs).toEqual({ copied: 0, skipped: blobCount - 1 })
    expect(skopeoDigest(inB('1.0.0'))).toBe(digest)
    expect(skopeoDigest(inB('latest'))).toBe(digest)
    // progress: one line per copy as it finishes, then the total
    expect(r.stderr).toContain(`[1/4] copied ${src('1.0.0')} -> ${inB('1.0.0')}: ${blobCount} blobs`)
    expect(r.stderr).toMatch(/total: 2 images, 4 copies: 4 copied \(\d+ blobs, .*\), 0 up to date, 0 failed/)
    // the store's snapshot is the one a push from the registry makes, named as the sync source names it
    const id = report.rows[3]!.targetDigest!
    const other = path.join(t, 'other')
    expect((await snapdirOk(['push', '--store', other, `docker://${a.host}/team/app:latest`])).trim()).toBe(id)
    const revisions = await snapdirOk(['revisions', '--store', store])
    expect(revisions).toContain(`${proxy.host}/team/app:1.0.0`)
    expect(revisions).toContain(`${proxy.host}/team/app:latest`)

    proxy.reset()
    const again = await snapdir(['sync', '--config', file, '--json'])
    expect(again.status, again.stderr).toBe(0)
    const second = JSON.parse(again.stdout) as SyncReport
    expect(second.rows.map((row) => row.status)).toEqual(['up-to-date', 'up-to-date', 'up-to-date', 'up-to-date'])
    // the store is seen up to date by its records of the tags (taken at those digests): nothing pushed
    // again, no revision added; the source is asked for each tag's manifest once
    expect(second.rows.map((row) => row.targetDigest)).toEqual(report.rows.map((row) => row.targetDigest))
    expect(await snapdirOk(['revisions', '--store', store])).toBe(revisions)
    expect(proxy.requests.map((q) => `${q.method} ${q.path}`).sort()).toEqual(['GET /v2/team/app/tags/list', 'HEAD /v2/team/app/manifests/1.0.0', 'HEAD /v2/team/app/manifests/latest'])
  }, 120_000)

  test('registry -> registry, first copy: the source asked nothing twice (the plan\'s HEADs are the copy\'s, the referrers API\'s 404 once per run)', async () => {
    const { file } = configFile(`sync:\n  - source: docker://${proxy.host}/team/app\n    tags: {names: ['1.0.0', latest]}\n    targets: [docker://${b.host}/first/app]\n`)
    proxy.reset()
    const r = await snapdir(['sync', '--config', file, '--json'])
    expect(r.status, r.stderr).toBe(0)
    expect((JSON.parse(r.stdout) as SyncReport).rows.map((row) => row.status)).toEqual(['copied', 'copied'])
    expect(skopeoDigest(`docker://${b.host}/first/app:latest`)).toBe(digest)
    const blobs = proxy.requests.filter((q) => q.path.includes('/blobs/')).map((q) => `${q.method} ${q.path}`)
    expect(blobs).toHaveLength(blobCount)
    expect(new Set(blobs).size).toBe(blobCount)
    // the plan: the tag list and each tag's HEAD; each copy: the manifest by digest and the tag
    // schema's index of its referrers (none); the referrers API once
    const tagIndex = `/v2/team/app/manifests/${digest.replace(':', '-')}`
    expect(proxy.requests.filter((q) => !q.path.includes('/blobs/')).map((q) => `${q.method} ${q.path}`).sort()).toEqual(
      [
        'GET /v2/team/app/tags/list',
        'HEAD /v2/team/app/manifests/1.0.0',
        'HEAD /v2/team/app/manifests/latest',
        `GET /v2/team/app/manifests/${digest}`,
        `GET /v2/team/app/manifests/${digest}`,
        `GET /v2/team/app/referrers/${digest}`,
        `GET ${tagIndex}`,
        `GET ${tagIndex}`,
      ].sort(),
    )
  }, 120_000)

  test('store -> registry and store: --dry-run writes nothing; the run sends the image with its original digest', async () => {
    const t = tempDir()
    const source = path.join(t, 'source')
    const id = (await snapdirOk(['push', '--store', source, layout])).trim()
    const copy = path.join(t, 'copy')
    const target = `docker://${b.host}/fromstore:v1`
    const { file } = configFile(`sync:\n  - source: ${source}\n    ids: ['${id}']\n    targets: [${target}, ${copy}]\n`)
    const dry = await snapdir(['sync', '--config', file, '--dry-run'])
    expect(dry.status, dry.stderr).toBe(0)
    expect(dry.stdout).toBe(`${source} ${id}\n  -> ${copy} copy from the source\n  -> ${target} copy from ${copy}\n`)
    expect(await catalog(b)).not.toContain('fromstore')
    expect(existsSync(copy)).toBe(false)

    const r = await snapdir(['sync', '--config', file, '--json'])
    expect(r.status, r.stderr).toBe(0)
    const report = JSON.parse(r.stdout) as SyncReport
    expect(report.rows.map((row) => [row.destination, row.from, row.status, row.targetDigest])).toEqual([
      [copy, `${source} ${id}`, 'copied', id],
      [target, copy, 'copied', digest],
    ])
    expect(skopeoDigest(target)).toBe(digest)
    expect(await snapdirOk(['revisions', '--store', copy])).toContain(id)
  }, 120_000)
})
