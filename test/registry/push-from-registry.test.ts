// push --store URL docker://HOST/REPO:TAG against Debian's docker-registry 2.8, with skopeo as the
// reference: images go into the registry with skopeo from layouts built here, and the snapshot a
// registry push makes must be the very one a push of `skopeo copy docker://… oci:DIR:TAG` makes (the
// layout's files normalised to what a registry push gives them: 0644/0755, 0:0, time 0), which checks
// index.json, oci-layout, every document byte for byte and every layer's recipe at once. A small proxy
// in front of the registry counts the requests (a no-op push asks for the manifest only) and, for one
// test, serves a blob with a byte changed.
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { snapdir, snapdirOk } from '../helpers/cli.js'
import { LayoutBuilder, OCI, buildUmociImage, requireTools, sha256, tool } from '../helpers/oci.js'
import { registryAvailable, startRegistry, type TestRegistry } from '../helpers/registry.js'

interface Proxy {
  host: string
  requests: string[]
  /** a blob digest whose bytes the proxy changes (one byte in the middle) */
  corrupt: string | null
  close(): Promise<void>
}

/** A loopback HTTP proxy in front of the registry: counts what it forwards, and can change one blob's bytes. */
async function startProxy(target: string): Promise<Proxy> {
  const proxy: Proxy = { host: '', requests: [], corrupt: null, close: async () => {} }
  const server = http.createServer((req, res) => {
    proxy.requests.push(`${req.method} ${req.url}`)
    const up = http.request(`http://${target}${req.url}`, { method: req.method, headers: { ...req.headers, host: target } }, (answer) => {
      const bad = proxy.corrupt !== null && req.method === 'GET' && req.url?.endsWith(`/blobs/${proxy.corrupt}`) === true
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      if (!bad) return void answer.pipe(res)
      const parts: Buffer[] = []
      answer.on('data', (b: Buffer) => parts.push(b))
      answer.on('end', () => {
        const body = Buffer.concat(parts)
        body[body.length >> 1] = body[body.length >> 1]! ^ 0xff
        res.end(body)
      })
    })
    req.pipe(up)
    up.on('error', () => res.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  proxy.host = `127.0.0.1:${(server.address() as AddressInfo).port}`
  proxy.close = () => new Promise<void>((resolve) => server.close(() => resolve()))
  return proxy
}

/** Every file under `dir`, relative path -> sha256 of its content. */
function fileHashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (rel: string): void => {
    for (const name of readdirSync(path.join(dir, rel)).sort()) {
      const r = path.join(rel, name)
      if (statSync(path.join(dir, r)).isDirectory()) walk(r)
      else out[r] = sha256(readFileSync(path.join(dir, r)))
    }
  }
  walk('')
  return out
}

/** skopeo's oci: copy of a registry image, its files given the metadata a registry push gives them. */
function skopeoLayout(ref: string, tag: string, dir: string): string {
  tool('skopeo', ['copy', '--all', '--quiet', '--src-tls-verify=false', ref, `oci:${dir}:${tag}`])
  execFileSync('sh', ['-c', 'find "$1" -type d -exec chmod 755 {} + && find "$1" -type f -exec chmod 644 {} + && chown -R 0:0 "$1" && find "$1" -exec touch -h -d @0 {} +', 'sh', dir])
  return dir
}

/** A gzip tar layer of `files` (GNU tar and gzip: no compressor snapdir has regenerates it, so it stays raw). */
function gnuLayer(dir: string, files: Record<string, string | Buffer>): { blob: Buffer; diffId: string } {
  const root = path.join(dir, `rootfs-${sha256(JSON.stringify(Object.keys(files))).slice(0, 8)}`)
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, name)), { recursive: true })
    writeFileSync(path.join(root, name), content)
  }
  const tar = execFileSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', root, '-cf', '-', '.'], { maxBuffer: 1 << 28 })
  return { blob: execFileSync('gzip', ['-n', '-c'], { input: tar, maxBuffer: 1 << 28 }), diffId: `sha256:${sha256(tar)}` }
}

const REGISTRY_MISSING = !registryAvailable()
if (REGISTRY_MISSING) console.warn('SKIPPED: docker-registry (Debian package docker-registry) or htpasswd is not installed; the registry push tests need them')

describe.skipIf(REGISTRY_MISSING)('push docker://: an image streamed from a registry into the store', () => {
  let registry: TestRegistry
  let proxy: Proxy
  let work = ''
  /** the umoci image (pgzip layers: recipes), tagged app:t */
  let appLayout = ''

  beforeAll(async () => {
    requireTools('umoci', 'skopeo', 'setfattr', 'gzip')
    registry = await startRegistry()
    proxy = await startProxy(registry.host)
    // shared by the tests (tempDir's go after each one)
    work = mkdtempSync(path.join(os.tmpdir(), 'snapdir-push-registry-'))
    appLayout = path.join(work, 'umoci')
    buildUmociImage(appLayout, 't', path.join(work, 'bundle'))
    tool('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${appLayout}:t`, `docker://${registry.host}/app:t`])
  }, 120_000)

  afterAll(async () => {
    await proxy?.close()
    await registry?.stop()
    if (work) rmSync(work, { recursive: true, force: true })
  })

  it('makes the snapshot a push of skopeo\'s oci: copy makes; pulls back the same files, blobs by their digests; a no-op push asks only for the manifest', async () => {
    const store = path.join(work, 'store-app')
    proxy.requests.length = 0
    const out = JSON.parse(await snapdirOk(['push', '--json', '--store', store, `docker://${proxy.host}/app:t`])) as { id: string; layerStorage: Array<{ digest: string; recipe?: string; raw?: string }> }
    // each layer blob fetched once, and found to be a recipe while it streamed
    const blobGets = proxy.requests.filter((r) => r.startsWith('GET ') && r.includes('/blobs/'))
    expect(new Set(blobGets).size).toBe(blobGets.length)
    expect(out.layerStorage.length).toBe(3)
    for (const l of out.layerStorage) expect(l.recipe, l.raw).toMatch(/^[0-9a-f]{64}$/)

    const reference = skopeoLayout(`docker://${registry.host}/app:t`, 't', path.join(work, 'skopeo-app'))
    const byLayout = (await snapdirOk(['push', '--store', path.join(work, 'store-layout'), reference])).trim()
    expect(out.id).toBe(byLayout)

    const pulled = path.join(work, 'pulled-app')
    await snapdirOk(['pull', '--store', store, '--id', out.id, pulled])
    expect(fileHashes(pulled)).toEqual(fileHashes(reference))
    for (const [rel, hash] of Object.entries(fileHashes(pulled))) if (rel.startsWith('blobs/sha256/')) expect(hash).toBe(path.basename(rel))
    const tar = path.join(work, 'pulled-app.tar')
    await snapdirOk(['pull', '--store', store, '--id', out.id, '--tar', tar])
    const untarred = path.join(work, 'untarred-app')
    mkdirSync(untarred)
    execFileSync('tar', ['-xf', tar, '-C', untarred])
    expect(fileHashes(untarred)).toEqual(fileHashes(reference))
    expect(await snapdirOk(['verify', '--store', store, '--id', out.id])).toMatch(/3 layer blobs regenerated from recipes, 0 damaged/)

    proxy.requests.length = 0
    const again = (await snapdirOk(['push', '--store', store, `docker://${proxy.host}/app:t`])).trim()
    expect(again).toBe(out.id)
    expect(proxy.requests.filter((r) => r !== 'GET /v2/')).toEqual(['GET /v2/app/manifests/t'])
  }, 180_000)

  it('a multi-platform image: whole, or --platform picks from its index as push of the layout does; raw layers fetched again, not staged', async () => {
    const dir = path.join(work, 'multi')
    const b = new LayoutBuilder(dir)
    const images = (['amd64', 'arm64'] as const).map((arch) => {
      const base = gnuLayer(dir, { 'etc/os-release': `ID=test\nARCH=${arch}\n`, [`usr/lib/${arch}/lib.so`]: createHash('sha512').update(arch).digest().toString('hex').repeat(3000) })
      const layer = b.blob(base.blob, OCI.layerGzip)
      const config = b.blob({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [base.diffId] } }, OCI.config)
      return { ...b.manifest({ config, layers: [layer] }), platform: { architecture: arch, os: 'linux' } }
    })
    b.writeIndex([b.index(images)])
    tool('skopeo', ['copy', '--all', '--quiet', '--dest-tls-verify=false', `oci:${dir}:tag0`, `docker://${registry.host}/multi:v1`])
    const reference = skopeoLayout(`docker://${registry.host}/multi:v1`, 'v1', path.join(work, 'skopeo-multi'))

    const store = path.join(work, 'store-multi')
    proxy.requests.length = 0
    const whole = JSON.parse(await snapdirOk(['push', '--json', '--store', store, `docker://${proxy.host}/multi:v1`])) as { id: string; layerStorage: Array<{ digest: string; raw?: string }> }
    expect(whole.layerStorage.map((l) => l.raw)).toEqual([expect.stringMatching(/^none of the compressors/), expect.stringMatching(/^none of the compressors/)])
    // a raw layer: once to expand it, once more to cut its bytes into the bundle
    for (const l of whole.layerStorage) expect(proxy.requests.filter((r) => r === `GET /v2/multi/blobs/${l.digest}`)).toHaveLength(2)
    expect(whole.id).toBe((await snapdirOk(['push', '--store', path.join(work, 'store-multi-layout'), reference])).trim())

    const arm = (await snapdirOk(['push', '--store', store, '--platform', 'linux/arm64', `docker://${proxy.host}/multi:v1`])).trim()
    expect(arm).toBe((await snapdirOk(['push', '--store', path.join(work, 'store-multi-layout'), '--platform', 'linux/arm64', reference])).trim())
    expect(arm).not.toBe(whole.id)
    const pulled = path.join(work, 'pulled-arm')
    await snapdirOk(['pull', '--store', store, '--id', arm, pulled])
    const index = JSON.parse(readFileSync(path.join(pulled, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
    const nested = JSON.parse(readFileSync(path.join(pulled, 'blobs/sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as { manifests: Array<{ platform: { architecture: string } }> }
    expect(nested.manifests.map((m) => m.platform.architecture)).toEqual(['arm64'])

    const r = await snapdir(['push', '--store', store, '--platform', 'linux/s390x', `docker://${proxy.host}/multi:v1`])
    expect(r.status).toBe(1)
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/no image for linux\/s390x \(it has linux\/amd64, linux\/arm64\)/)])
  }, 180_000)

  it('a Docker schema 2 image stays one: its manifest and config pulled back byte for byte, by digest too', async () => {
    tool('skopeo', ['copy', '--quiet', '--format', 'v2s2', '--dest-tls-verify=false', `oci:${appLayout}:t`, `docker://${registry.host}/docker-app:v2`])
    const raw = execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/docker-app:v2`])
    const digest = `sha256:${sha256(raw)}`
    const store = path.join(work, 'store-docker')
    const out = JSON.parse(await snapdirOk(['push', '--json', '--store', store, `docker://${registry.host}/docker-app@${digest}`])) as { id: string; layerStorage: Array<{ recipe?: string }> }
    expect(out.layerStorage.every((l) => l.recipe !== undefined)).toBe(true)
    const pulled = path.join(work, 'pulled-docker')
    await snapdirOk(['pull', '--store', store, '--id', out.id, pulled])
    // by digest: index.json names the manifest with no tag
    expect(JSON.parse(readFileSync(path.join(pulled, 'index.json'), 'utf8'))).toEqual({
      schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest, size: raw.length }],
    })
    expect(readFileSync(path.join(pulled, 'blobs/sha256', digest.slice(7)))).toEqual(raw)
    for (const [rel, hash] of Object.entries(fileHashes(pulled))) if (rel.startsWith('blobs/sha256/')) expect(hash).toBe(path.basename(rel))
  }, 120_000)

  it('a blob that does not match its digest fails naming it, and no revision references anything', async () => {
    const store = path.join(work, 'store-corrupt')
    const manifest = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/app:t`], { encoding: 'utf8' })) as { layers: Array<{ digest: string }> }
    proxy.corrupt = manifest.layers[1]!.digest
    try {
      const r = await snapdir(['push', '--store', store, `docker://${proxy.host}/app:t`])
      expect(r.status).toBe(1)
      const lines = r.stderr.trim().split('\n')
      expect(lines).toHaveLength(1)
      expect(lines[0]).toContain(proxy.corrupt)
    } finally {
      proxy.corrupt = null
    }
    const revisions = await snapdir(['revisions', '--store', store])
    expect(revisions.stdout.trim()).toBe('')
  }, 120_000)

  it('an unknown tag or repository: one line naming the registry, repository and tag, exit 1, nothing stored', async () => {
    const store = path.join(work, 'store-unknown')
    for (const ref of [`docker://${registry.host}/app:nope`, `docker://${registry.host}/nothing:t`]) {
      const r = await snapdir(['push', '--store', store, ref])
      expect(r.status).toBe(1)
      const lines = r.stderr.trim().split('\n')
      expect(lines).toHaveLength(1)
      expect(lines[0]).toContain(registry.host)
      expect(lines[0]).toMatch(/app.*nope|nothing/)
    }
  }, 60_000)
})
