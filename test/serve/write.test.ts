// snapdir serve's write side as registry clients meet it: skopeo pushes an image (and a multi-platform
// index, whose images it pushes by digest first) and copies it back out with the same digests, the
// pushed image a snapshot that verifies; snapdir sync carries an image from docker-registry 2.8 into
// serve and back; a blob mounted from another repository. Faults, each leaving nothing half-stored or
// visible: an upload whose client dies halfway (swept after --upload-timeout), chunks out of order
// (416), a digest that does not match (DIGEST_INVALID), a manifest naming a blob never pushed
// (MANIFEST_BLOB_UNKNOWN), an oversized manifest (413), path traversal in the name (NAME_INVALID),
// two pushes of one tag at once; DELETE of a tag and of a digest.
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import http from 'node:http'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listFiles, snapdirOk } from '../helpers/cli.js'
import { dirState } from '../helpers/dir-watch.js'
import { blobFile, blobHashes, buildUmociImage, readIndexJson, requireTools, tool, OCI } from '../helpers/oci.js'
import { registryAvailable, startRegistry, type TestRegistry } from '../helpers/registry.js'
import { rawRequest, startServe, type ServeProcess } from '../helpers/serve.js'

requireTools('umoci', 'skopeo', 'setfattr')
if (!registryAvailable()) throw new Error('docker-registry or htpasswd not installed: run make setup (scripts/setup.sh installs them)')

let t: string
let layout: string
let store: string
let stateDir: string
let serve: ServeProcess

const UPLOAD_TIMEOUT_S = 2

beforeAll(async () => {
  // the whole file's: tempDir's are removed after each test
  t = mkdtempSync(path.join(os.tmpdir(), 'snapdir-serve-write-'))
  layout = path.join(t, 'image')
  buildUmociImage(layout, 'v1', path.join(t, 'bundle'))
  store = path.join(t, 'store')
  stateDir = path.join(t, 'state')
  await snapdirOk(['push', '--store', store, layout]) // a store with a snapshot of its own, and no names
  serve = await startServe(store, ['--state-dir', stateDir, '--upload-timeout', String(UPLOAD_TIMEOUT_S)])
}, 180_000)

afterAll(async () => {
  if (serve) expect(await serve.stop()).toBe(0)
  // shutdown leaves nothing staged
  if (stateDir) expect(listFiles(stateDir)).toEqual([])
  if (t) rmSync(t, { recursive: true, force: true })
})

const sha256 = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`
const req = (p: string, init: RequestInit = {}) => fetch(`${serve.url}${p}`, init)

async function errorCode(res: Response): Promise<string> {
  const body = (await res.json()) as { errors: Array<{ code: string; message: string }> }
  return body.errors[0]!.code
}

/** The store's objects and refs (not its leases), to show a failed push wrote nothing. */
function stored(): string[] {
  return listFiles(store).filter((f) => !f.startsWith('locks/'))
}

/** The snapshot a tag names in the store, read with snapdir's own listing. */
async function taggedSnapshot(name: string): Promise<{ id: string; digest?: string }> {
  const lines = (await snapdirOk(['revisions', '--store', store, '--json'])).trim().split('\n').map((l) => JSON.parse(l) as { id: string; images?: string[] })
  const r = lines.filter((l) => l.images?.includes(name)).at(-1)
  if (r === undefined) throw new Error(`no revision names ${name}: ${lines.map((l) => JSON.stringify(l)).join('\n')}`)
  return r
}

async function revisionsNamed(name: string): Promise<Array<{ id: string }>> {
  const lines = (await snapdirOk(['revisions', '--store', store, '--json'])).trim().split('\n').map((l) => JSON.parse(l) as { id: string; name: string })
  return lines.filter((l) => l.name === name)
}

function digestsOf(dir: string): string[] {
  return blobHashes(dir).map((b) => b.name).sort()
}

/** The blobs a layout's first image uses: index entry, manifest(s), configs, layers (from the layout itself). */
function usedBlobs(dir: string, tag: string): string[] {
  const top = readIndexJson(dir).manifests.find((m) => (m as { annotations?: Record<string, string> }).annotations?.['org.opencontainers.image.ref.name'] === tag)!
  const out = new Set<string>()
  const walk = (digest: string): void => {
    out.add(digest.slice(7))
    const doc = JSON.parse(readFileSync(blobFile(dir, digest), 'utf8')) as { manifests?: Array<{ digest: string }>; config?: { digest: string }; layers?: Array<{ digest: string }> }
    for (const m of doc.manifests ?? []) walk(m.digest)
    if (doc.config) out.add(doc.config.digest.slice(7))
    for (const l of doc.layers ?? []) out.add(l.digest.slice(7))
  }
  walk(top.digest)
  return [...out].sort()
}

describe('snapdir serve: pushing', () => {
  it('skopeo pushes an image and copies it back with the same digests; the pushed image is a snapshot that verifies', async () => {
    tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${serve.host}/team/app:v1`])
    await serve.waitForLog(/"PUT \/v2\/team\/app\/manifests\/v1" 201 /)
    const out = path.join(t, 'copy')
    tool('skopeo', ['copy', '--src-tls-verify=false', `docker://${serve.host}/team/app:v1`, `oci:${out}:v1`])
    expect(readIndexJson(out).manifests[0]!.digest).toBe(readIndexJson(layout).manifests[0]!.digest)
    expect(digestsOf(out)).toEqual(usedBlobs(layout, 'v1'))
    for (const b of blobHashes(out)) expect(b.sha256).toBe(b.name)
    const snap = await taggedSnapshot('team/app:v1')
    const verified = await snapdirOk(['verify', '--store', store, '--id', snap.id])
    expect(verified).toMatch(/ 0 damaged/)
    // the same push again: the tag names these bytes already, nothing new is stored
    tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${serve.host}/team/app:v1`])
    await serve.waitForLog(/"PUT \/v2\/team\/app\/manifests\/v1" 201 [^\n]*\n[^]*"PUT \/v2\/team\/app\/manifests\/v1" 201 /)
    expect((await taggedSnapshot('team/app:v1')).id).toBe(snap.id)
    expect(await revisionsNamed('team/app:v1')).toHaveLength(1)
    // what was staged went into the store: nothing of it is left on the side
    expect(listFiles(path.join(stateDir, 'staged'))).toEqual([])
  }, 120_000)

  it('takes a multi-platform index: its images by digest first, then the index by tag, all copied back alike', async () => {
    // a second image in the same layout, and an index of both with their platforms
    buildUmociImage(path.join(t, 'image2'), 'v2', path.join(t, 'bundle2'))
    const multi = path.join(t, 'multi')
    tool('skopeo', ['copy', `oci:${layout}:v1`, `oci:${multi}:amd`])
    tool('skopeo', ['copy', `oci:${path.join(t, 'image2')}:v2`, `oci:${multi}:arm`])
    const entries = readIndexJson(multi).manifests.map((m, i) => ({ mediaType: m.mediaType, digest: m.digest, size: m.size, platform: i === 0 ? { os: 'linux', architecture: 'amd64' } : { os: 'linux', architecture: 'arm64' } }))
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI.index, manifests: entries }))
    writeFileSync(blobFile(multi, sha256(index)), index)
    const indexJson = JSON.parse(readFileSync(path.join(multi, 'index.json'), 'utf8')) as { manifests: unknown[] }
    indexJson.manifests.push({ mediaType: OCI.index, digest: sha256(index), size: index.length, annotations: { 'org.opencontainers.image.ref.name': 'multi' } })
    writeFileSync(path.join(multi, 'index.json'), JSON.stringify(indexJson))

    // an image pushed by digest alone is there to pull by its digest, before the index takes it
    tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${multi}:amd`, `docker://${serve.host}/team/multi@${entries[0]!.digest}`])
    const alone = await req(`/v2/team/multi/manifests/${entries[0]!.digest}`)
    expect(alone.status).toBe(200)
    expect(sha256(Buffer.from(await alone.arrayBuffer()))).toBe(entries[0]!.digest)
    tool('skopeo', ['copy', '--all', '--dest-tls-verify=false', `oci:${multi}:multi`, `docker://${serve.host}/team/multi:latest`])
    for (const e of entries) await serve.waitForLog(`"PUT /v2/team/multi/manifests/${e.digest}" 201`)
    const out = path.join(t, 'multi-copy')
    tool('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${serve.host}/team/multi:latest`, `oci:${out}:multi`])
    expect(readIndexJson(out).manifests[0]!.digest).toBe(sha256(index))
    expect(digestsOf(out)).toEqual(usedBlobs(multi, 'multi'))
    const snap = await taggedSnapshot('team/multi:latest')
    expect(await snapdirOk(['verify', '--store', store, '--id', snap.id])).toMatch(/ 0 damaged/)
  }, 180_000)

  it('keeps a manifest pushed by digest alone in the store: another serve process on it serves the image by that digest', async () => {
    const digest = readIndexJson(layout).manifests[0]!.digest
    tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${serve.host}/pinned/app@${digest}`])
    const other = await startServe(store)
    let registry: TestRegistry | undefined
    try {
      const there = await fetch(`${other.url}/v2/pinned/app/manifests/${digest}`)
      expect(there.status).toBe(200)
      expect(sha256(Buffer.from(await there.arrayBuffer()))).toBe(digest)
      const out = path.join(t, 'pinned-copy')
      tool('skopeo', ['copy', '--src-tls-verify=false', `docker://${other.host}/pinned/app@${digest}`, `oci:${out}:v1`])
      expect(digestsOf(out)).toEqual(usedBlobs(layout, 'v1'))
      // no tag a client pushed: tags/list and the catalog answer as docker-registry 2.8 does for a
      // repository pushed to by digest alone
      registry = await startRegistry()
      tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${registry.host}/pinned/app@${digest}`])
      const listing = async (base: string) => {
        const tags = await fetch(`${base}/v2/pinned/app/tags/list`)
        const catalog = (await (await fetch(`${base}/v2/_catalog`)).json()) as { repositories: string[] }
        return { status: tags.status, tags: await tags.json(), listed: catalog.repositories.includes('pinned/app') }
      }
      const theirs = await listing(registry.url)
      expect({ status: theirs.status, listed: theirs.listed }).toEqual({ status: 404, listed: true })
      const ours = await listing(other.url)
      expect({ status: ours.status, listed: ours.listed }).toEqual({ status: theirs.status, listed: theirs.listed })
      expect((ours.tags as { errors: Array<{ code: string }> }).errors[0]!.code).toBe((theirs.tags as { errors: Array<{ code: string }> }).errors[0]!.code)
    } finally {
      await registry?.stop()
      expect(await other.stop()).toBe(0)
    }
    // a snapshot of its own that verifies; nothing of it left staged
    const snap = await taggedSnapshot(`pinned/app:${digest.replace(':', '-')}.manifest`)
    expect(await snapdirOk(['verify', '--store', store, '--id', snap.id])).toMatch(/ 0 damaged/)
    expect(listFiles(path.join(stateDir, 'staged'))).toEqual([])
  }, 120_000)

  it('mounts a blob another repository has, and takes a manifest naming it', async () => {
    const manifest = readIndexJson(layout).manifests[0]!
    const layer = (JSON.parse(readFileSync(blobFile(layout, manifest.digest), 'utf8')) as { layers: Array<{ digest: string }> }).layers[0]!.digest
    const res = await req(`/v2/mounted/app/blobs/uploads/?mount=${layer}&from=team/app`, { method: 'POST' })
    expect(res.status).toBe(201)
    expect(res.headers.get('docker-content-digest')).toBe(layer)
    // a repository that does not have it: an upload session instead
    const other = await req(`/v2/mounted/app/blobs/uploads/?mount=${layer}&from=nobody/here`, { method: 'POST' })
    expect(other.status).toBe(202)
    expect((await req(other.headers.get('location')!, { method: 'DELETE' })).status).toBe(204)
    // skopeo between two repositories of serve mounts every blob and stores the image again
    tool('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${serve.host}/team/app:v1`, `docker://${serve.host}/mounted/app:v1`])
    await serve.waitForLog(/"POST \/v2\/mounted\/app\/blobs\/uploads\/" 201 /)
    const head = await req(`/v2/mounted/app/manifests/v1`, { method: 'HEAD' })
    expect(head.headers.get('docker-content-digest')).toBe(manifest.digest)
  }, 120_000)

  it('stores a referrer pushed by digest (an artifact: a signature) under a tag clients do not see, lists it as a referrer, and sync carries it along', async () => {
    const subject = readIndexJson(layout).manifests[0]!
    // its subject, tagged (a push repeated when the first test ran: nothing stored again)
    tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${serve.host}/team/app:v1`])
    const empty = Buffer.from('{}')
    const signature = Buffer.from('{"critical":{"image":{"docker-manifest-digest":"' + subject.digest + '"}}}')
    for (const blob of [empty, signature]) {
      expect((await req(`/v2/team/app/blobs/uploads/?digest=${sha256(blob)}`, { method: 'POST', body: blob })).status).toBe(201)
    }
    const artifactType = 'application/vnd.example.signature.v1'
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI.manifest,
        artifactType,
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(empty), size: empty.length },
        layers: [{ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: sha256(signature), size: signature.length }],
        subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
      }),
    )
    const put = await req(`/v2/team/app/manifests/${sha256(manifest)}`, { method: 'PUT', body: manifest, headers: { 'content-type': OCI.manifest } })
    expect(put.status).toBe(201)
    const referrers = (await (await req(`/v2/team/app/referrers/${subject.digest}`)).json()) as { manifests: Array<{ digest: string; artifactType?: string }> }
    expect(referrers.manifests).toEqual([expect.objectContaining({ digest: sha256(manifest), artifactType })])
    const back = await req(`/v2/team/app/manifests/${sha256(manifest)}`)
    expect(Buffer.from(await back.arrayBuffer())).toEqual(manifest)
    // the tag it is kept under is serve's own: tags/list leaves it out
    const internal = `${sha256(manifest).replace(':', '-')}.referrer`
    const tags = ((await (await req('/v2/team/app/tags/list')).json()) as { tags: string[] }).tags
    expect(tags).toContain('v1')
    expect(tags).not.toContain(internal)
    // stored: its snapshot verifies, and nothing of it stays staged
    const snap = await taggedSnapshot(`team/app:${internal}`)
    expect(await snapdirOk(['verify', '--store', store, '--id', snap.id])).toMatch(/ 0 damaged/)
    expect(listFiles(path.join(stateDir, 'staged'))).toEqual([])
    // nor can a client read, move or delete it by that tag: the manifest is reached by its digest
    const byTag = await req(`/v2/team/app/manifests/${internal}`)
    expect(byTag.status).toBe(404)
    expect(((await byTag.json()) as { errors: Array<{ code: string }> }).errors[0]!.code).toBe('MANIFEST_UNKNOWN')
    const retag = await req(`/v2/team/app/manifests/${internal}`, { method: 'PUT', body: manifest, headers: { 'content-type': OCI.manifest } })
    expect(retag.status).toBe(400)
    const refused = ((await retag.json()) as { errors: Array<{ code: string; message: string }> }).errors[0]!
    expect(refused.code).toBe('MANIFEST_INVALID')
    expect(refused.message).toContain('push under another tag')
    expect((await req(`/v2/team/app/manifests/${internal}`, { method: 'DELETE' })).status).toBe(404)
    expect((await taggedSnapshot(`team/app:${internal}`)).id).toBe(snap.id)
    expect((await req(`/v2/team/app/manifests/${sha256(manifest)}`, { method: 'HEAD' })).status).toBe(200)

    // every tag of the repository synced to docker-registry 2.8: the referrer follows its subject
    // (no referrers API there: the tag schema's index lists it), and no tag of serve's own goes along
    let registry: TestRegistry | undefined
    try {
      registry = await startRegistry()
      const config = path.join(t, 'sync-referrer.json')
      writeFileSync(config, JSON.stringify({ sync: [{ source: `docker://${serve.host}/team/app`, target: `docker://${registry.host}/mirror/app` }] }))
      await snapdirOk(['sync', '--config', config])
      const mirrored = ((await (await fetch(`${registry.url}/v2/mirror/app/tags/list`)).json()) as { tags: string[] }).tags
      expect(mirrored).not.toContain(internal)
      expect(mirrored).toContain('v1')
      const schema = await fetch(`${registry.url}/v2/mirror/app/manifests/${subject.digest.replace(':', '-')}`, { headers: { accept: OCI.index } })
      expect(schema.status).toBe(200)
      expect(((await schema.json()) as { manifests: Array<{ digest: string }> }).manifests.map((m) => m.digest)).toEqual([sha256(manifest)])
      expect((await fetch(`${registry.url}/v2/mirror/app/manifests/${sha256(manifest)}`, { method: 'HEAD', headers: { accept: OCI.manifest } })).status).toBe(200)
    } finally {
      await registry?.stop()
    }
  }, 120_000)

  it('syncs an image from docker-registry 2.8 into serve and back out to it, digests kept', async () => {
    let registry: TestRegistry | undefined
    try {
      registry = await startRegistry()
      tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${registry.host}/src/app:v1`])
      await snapdirOk(['sync', '--from', `docker://${registry.host}/src/app:v1`, '--to', `docker://${serve.host}/synced/app:v1`])
      const there = await req('/v2/synced/app/manifests/v1', { headers: { accept: OCI.manifest } })
      expect(there.status).toBe(200)
      expect(there.headers.get('docker-content-digest')).toBe(readIndexJson(layout).manifests[0]!.digest)
      await snapdirOk(['sync', '--from', `docker://${serve.host}/synced/app:v1`, '--to', `docker://${registry.host}/back/app:v1`])
      const out = path.join(t, 'sync-back')
      tool('skopeo', ['copy', '--src-tls-verify=false', `docker://${registry.host}/back/app:v1`, `oci:${out}:v1`])
      expect(digestsOf(out)).toEqual(usedBlobs(layout, 'v1'))
    } finally {
      await registry?.stop()
    }
  }, 180_000)

  it('DELETE of a tag removes that tag; DELETE of a digest every tag of the repository naming it', async () => {
    const digest = readIndexJson(layout).manifests[0]!.digest
    tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${serve.host}/doomed/app:a`])
    tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${serve.host}/doomed/app:b`])
    tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${serve.host}/doomed/app:c`])
    expect((await req('/v2/doomed/app/manifests/a', { method: 'DELETE' })).status).toBe(202)
    expect((await req('/v2/doomed/app/manifests/a')).status).toBe(404)
    expect(((await (await req('/v2/doomed/app/tags/list')).json()) as { tags: string[] }).tags).toEqual(['b', 'c'])
    expect((await req(`/v2/doomed/app/manifests/${digest}`, { method: 'DELETE' })).status).toBe(202)
    const gone = await req('/v2/doomed/app/tags/list')
    expect(gone.status).toBe(404)
    expect((await req('/v2/doomed/app/manifests/b', { method: 'DELETE' })).status).toBe(404)
    // other repositories keep theirs
    expect((await req('/v2/team/app/manifests/v1', { method: 'HEAD' })).status).toBe(200)
  }, 120_000)
})

describe('snapdir serve: bad pushes leave nothing', () => {
  it('an upload whose client dies halfway is rolled back, then swept after --upload-timeout; nothing reaches the store', async () => {
    const before = stored()
    const start = await req('/v2/team/app/blobs/uploads/', { method: 'POST' })
    expect(start.status).toBe(202)
    const location = start.headers.get('location')!
    const uuid = start.headers.get('docker-upload-uuid')!
    expect(location).toBe(`/v2/team/app/blobs/uploads/${uuid}`)
    // a PATCH of 1 MiB that sends half and dies
    const { port } = new URL(serve.url)
    await new Promise<void>((resolve) => {
      const r = http.request({ host: '127.0.0.1', port, path: location, method: 'PATCH', headers: { 'content-length': String(1 << 20), 'content-type': 'application/octet-stream' } })
      r.on('error', () => {}) // the socket destroyed below
      r.write(Buffer.alloc(1 << 19, 1), () => {
        // once the server has taken the bytes in
        void serve.waitForLog(`"PATCH ${location}"`).then(() => resolve())
        r.destroy()
      })
    })
    const status = await req(location)
    expect(status.status).toBe(204)
    expect(status.headers.get('range')).toBe('0-0')
    expect(readdirSync(path.join(stateDir, 'uploads'))).toEqual([uuid])
    // left alone: swept (the sweep runs every quarter of the timeout)
    await dirState(path.join(stateDir, 'uploads'), () => !existsSync(path.join(stateDir, 'uploads', uuid)), `no ${uuid} (removed)`, (UPLOAD_TIMEOUT_S + 5) * 1000)
    expect(await errorCode(await req(location))).toBe('BLOB_UPLOAD_UNKNOWN')
    expect(stored()).toEqual(before)
  }, 60_000)

  it('takes chunks in order only (416 with where it stands), and refuses a PUT whose digest does not match, keeping nothing', async () => {
    const start = await req('/v2/team/app/blobs/uploads/', { method: 'POST' })
    const location = start.headers.get('location')!
    const patch = (body: string, range: string) => req(location, { method: 'PATCH', body, headers: { 'content-range': range, 'content-type': 'application/octet-stream' } })
    const first = await patch('hello ', '0-5')
    expect(first.status).toBe(202)
    expect(first.headers.get('range')).toBe('0-5')
    const skipped = await patch('world', '10-14')
    expect(skipped.status).toBe(416)
    expect(skipped.headers.get('range')).toBe('0-5')
    expect((await patch('world', '6-10')).status).toBe(202)
    const wrong = sha256('something else')
    const put = await req(`${location}?digest=${wrong}`, { method: 'PUT' })
    expect(put.status).toBe(400)
    expect(await errorCode(put)).toBe('DIGEST_INVALID')
    expect(await errorCode(await req(location))).toBe('BLOB_UPLOAD_UNKNOWN')
    expect(readdirSync(path.join(stateDir, 'uploads'))).toEqual([])
    expect((await req(`/v2/team/app/blobs/${wrong}`, { method: 'HEAD' })).status).toBe(404)
    expect((await req(`/v2/team/app/blobs/${sha256('hello world')}`, { method: 'HEAD' })).status).toBe(404)
    // monolithic, right this time
    const mono = await req(`/v2/team/app/blobs/uploads/?digest=${sha256('hello world')}`, { method: 'POST', body: 'hello world', headers: { 'content-type': 'application/octet-stream' } })
    expect(mono.status).toBe(201)
    expect(mono.headers.get('location')).toBe(`/v2/team/app/blobs/${sha256('hello world')}`)
    // readable at its Location before any manifest names it, in its repository only
    expect(await (await req(mono.headers.get('location')!)).text()).toBe('hello world')
    expect((await req(`/v2/team/other/blobs/${sha256('hello world')}`, { method: 'HEAD' })).status).toBe(404)
    // mounted into another repository while only staged: shared, readable there
    const shared = await req(`/v2/team/shared/blobs/uploads/?mount=${sha256('hello world')}&from=team/app`, { method: 'POST' })
    expect(shared.status).toBe(201)
    expect(await (await req(`/v2/team/shared/blobs/${sha256('hello world')}`)).text()).toBe('hello world')
    // a Content-Range as RFC 9110 writes it is taken too
    const ranged = await req('/v2/team/app/blobs/uploads/', { method: 'POST' })
    const at = ranged.headers.get('location')!
    expect((await req(at, { method: 'PATCH', body: 'abc', headers: { 'content-range': 'bytes 0-2/3' } })).status).toBe(202)
    expect((await req(`${at}?digest=${sha256('abc')}`, { method: 'PUT' })).status).toBe(201)
    // and DELETE cancels a session
    const cancelled = await req('/v2/team/app/blobs/uploads/', { method: 'POST' })
    const where = cancelled.headers.get('location')!
    expect((await req(where, { method: 'DELETE' })).status).toBe(204)
    expect((await req(where)).status).toBe(404)
  })

  it('refuses a manifest naming a blob never pushed (MANIFEST_BLOB_UNKNOWN) and an oversized one (413); nothing visible', async () => {
    const before = stored()
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
    const upload = await req(`/v2/team/bad/blobs/uploads/?digest=${sha256(config)}`, { method: 'POST', body: config })
    expect(upload.status).toBe(201)
    const missing = sha256('never pushed')
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI.manifest,
      config: { mediaType: OCI.config, digest: sha256(config), size: config.length },
      layers: [{ mediaType: OCI.layerGzip, digest: missing, size: 12 }],
    })
    const put = await req('/v2/team/bad/manifests/v1', { method: 'PUT', body: manifest, headers: { 'content-type': OCI.manifest } })
    expect(put.status).toBe(400)
    const body = (await put.json()) as { errors: Array<{ code: string; detail: { digest: string } }> }
    expect(body.errors[0]).toMatchObject({ code: 'MANIFEST_BLOB_UNKNOWN', detail: { digest: missing } })
    expect((await req('/v2/team/bad/manifests/v1')).status).toBe(404)
    expect((await req('/v2/team/bad/tags/list')).status).toBe(404)

    const huge = Buffer.alloc(5 * 1024 * 1024, 0x20)
    const big = await req('/v2/team/bad/manifests/v2', { method: 'PUT', body: huge, headers: { 'content-type': OCI.manifest } })
    expect(big.status).toBe(413)
    expect(await errorCode(big)).toBe('MANIFEST_INVALID')
    const notJson = await req('/v2/team/bad/manifests/v3', { method: 'PUT', body: '{', headers: { 'content-type': OCI.manifest } })
    expect(await errorCode(notJson)).toBe('MANIFEST_INVALID')
    const byDigest = await req(`/v2/team/bad/manifests/${sha256('other bytes')}`, { method: 'PUT', body: manifest, headers: { 'content-type': OCI.manifest } })
    expect(await errorCode(byDigest)).toBe('DIGEST_INVALID')
    expect(stored()).toEqual(before)
  })

  it('answers a manifest naming what the repository lacks as docker-registry 2.8 does: 400 MANIFEST_BLOB_UNKNOWN', async () => {
    let registry: TestRegistry | undefined
    try {
      registry = await startRegistry()
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
      const missing = sha256('never pushed anywhere')
      const lacksLayer = JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI.manifest,
        config: { mediaType: OCI.config, digest: sha256(config), size: config.length },
        layers: [{ mediaType: OCI.layerGzip, digest: missing, size: 21 }],
      })
      const lacksConfig = JSON.stringify({ schemaVersion: 2, mediaType: OCI.manifest, config: { mediaType: OCI.config, digest: missing, size: 21 }, layers: [] })
      const lacksManifest = JSON.stringify({ schemaVersion: 2, mediaType: OCI.index, manifests: [{ mediaType: OCI.manifest, digest: missing, size: 21 }] })
      const answers = async (base: string): Promise<Array<[number, string]>> => {
        // the config uploaded as clients do it: a session, then its closing PUT with the bytes
        const session = await fetch(`${base}/v2/conform/app/blobs/uploads/`, { method: 'POST' })
        expect(session.status).toBe(202)
        const location = new URL(session.headers.get('location')!, base)
        location.searchParams.set('digest', sha256(config))
        expect((await fetch(location, { method: 'PUT', body: config, headers: { 'content-type': 'application/octet-stream' } })).status).toBe(201)
        const out: Array<[number, string]> = []
        for (const [body, type] of [[lacksLayer, OCI.manifest], [lacksConfig, OCI.manifest], [lacksManifest, OCI.index]] as const) {
          const put = await fetch(`${base}/v2/conform/app/manifests/v1`, { method: 'PUT', body, headers: { 'content-type': type } })
          out.push([put.status, ((await put.json()) as { errors: Array<{ code: string }> }).errors[0]!.code])
        }
        return out
      }
      const theirs = await answers(registry.url)
      expect(theirs).toEqual([[400, 'MANIFEST_BLOB_UNKNOWN'], [400, 'MANIFEST_BLOB_UNKNOWN'], [400, 'MANIFEST_BLOB_UNKNOWN']])
      expect(await answers(serve.url)).toEqual(theirs)
    } finally {
      await registry?.stop()
    }
  }, 60_000)

  it('a serve killed while it stores a pushed image leaves no tag, no revision, and its staging is emptied at restart', async () => {
    // an image of chunks the store has not seen, pushed to a second serve process on the same store
    const fresh = path.join(t, 'fresh')
    tool('umoci', ['init', '--layout', fresh])
    tool('umoci', ['new', '--image', `${fresh}:v1`])
    tool('umoci', ['unpack', '--image', `${fresh}:v1`, path.join(t, 'fresh-bundle')])
    writeFileSync(path.join(t, 'fresh-bundle', 'rootfs', 'noise'), randomBytes(8 << 20))
    tool('umoci', ['repack', '--image', `${fresh}:v1`, path.join(t, 'fresh-bundle')])
    const otherState = path.join(t, 'other-state')
    const b = await startServe(store, ['--state-dir', otherState])
    const chunksBefore = new Set(listFiles(path.join(store, 'chunks')))
    const push = new Promise<number>((resolve) => {
      const child = spawn('skopeo', ['copy', '--dest-tls-verify=false', `oci:${fresh}:v1`, `docker://${b.host}/killed/app:v1`], { stdio: 'ignore' })
      child.on('exit', (code) => resolve(code ?? 1))
    })
    // killed once the manifest's ingest has written a chunk of its own (uploads write nothing to the
    // store) and the uploads it stores from are staged: a chunk alone could be another writer's
    const staged = () => existsSync(path.join(otherState, 'staged')) && listFiles(path.join(otherState, 'staged')).length > 0
    await dirState(path.join(store, 'chunks'), () => staged() && listFiles(path.join(store, 'chunks')).some((f) => !chunksBefore.has(f) && !f.includes('.tmp-')), 'a new chunk, with uploads staged', 120_000, { recursive: true })
    await b.stop('SIGKILL')
    expect(await push).not.toBe(0)
    expect((await req('/v2/killed/app/manifests/v1', { method: 'HEAD' })).status).toBe(404)
    expect(await revisionsNamed('killed/app:v1')).toEqual([])
    expect(listFiles(path.join(otherState, 'staged')).length).toBeGreaterThan(0)
    const again = await startServe(store, ['--state-dir', otherState])
    try {
      expect(listFiles(otherState)).toEqual([])
      // and the push, tried again, goes through
      tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${fresh}:v1`, `docker://${again.host}/killed/app:v1`])
      expect((await req('/v2/killed/app/manifests/v1', { method: 'HEAD' })).headers.get('docker-content-digest')).toBe(readIndexJson(fresh).manifests[0]!.digest)
    } finally {
      expect(await again.stop()).toBe(0)
    }
  }, 180_000)

  it('--read-only refuses uploads and manifest pushes', async () => {
    const ro = await startServe(store, ['--read-only'])
    try {
      for (const [method, p] of [['POST', '/v2/team/app/blobs/uploads/'], ['PUT', '/v2/team/app/manifests/v9'], ['DELETE', '/v2/team/app/manifests/v1']] as const) {
        const res = await fetch(`${ro.url}${p}`, { method, ...(method === 'PUT' ? { body: '{}' } : {}) })
        expect(res.status, `${method} ${p}`).toBe(405)
        expect(await errorCode(res)).toBe('UNSUPPORTED')
      }
      expect((await fetch(`${ro.url}/v2/team/app/manifests/v1`, { method: 'HEAD' })).status).toBe(200)
    } finally {
      expect(await ro.stop()).toBe(0)
    }
  })

  it('answers path traversal in the repository name with NAME_INVALID before anything is written', async () => {
    const before = stored()
    for (const p of ['/v2/../../etc/blobs/uploads/', '/v2/team/%2e%2e/app/blobs/uploads/', '/v2/team/../app/manifests/v1', '/v2/Team/App/blobs/uploads/']) {
      const method = p.includes('manifests') ? 'PUT' : 'POST'
      const res = await rawRequest(serve.url, p, { method, headers: { 'content-type': OCI.manifest, 'content-length': '0' } })
      expect(res.status, `${method} ${p}`).toBe(400)
      expect((JSON.parse(res.body.toString()) as { errors: Array<{ code: string }> }).errors[0]!.code).toBe('NAME_INVALID')
    }
    expect(stored()).toEqual(before)
    expect(existsSync(path.join(stateDir, 'staged', 'etc'))).toBe(false)
  })

  it('two pushes of one tag at once: each completes, the tag names one of them, each a whole snapshot', async () => {
    buildUmociImage(path.join(t, 'race-b'), 'v1', path.join(t, 'race-bundle'))
    const images = [layout, path.join(t, 'race-b')]
    const digests = images.map((l) => readIndexJson(l).manifests[0]!.digest)
    expect(digests[0]).not.toBe(digests[1])
    const push = (l: string) =>
      new Promise<number>((resolve) => {
        const child = spawn('skopeo', ['copy', '--dest-tls-verify=false', `oci:${l}:v1`, `docker://${serve.host}/race/app:v1`], { stdio: 'ignore' })
        child.on('exit', (code) => resolve(code ?? 1))
      })
    expect(await Promise.all(images.map(push))).toEqual([0, 0])
    const head = await req('/v2/race/app/manifests/v1', { method: 'HEAD' })
    expect(digests).toContain(head.headers.get('docker-content-digest'))
    const winner = images[digests.indexOf(head.headers.get('docker-content-digest')!)]!
    const out = path.join(t, 'race-out')
    tool('skopeo', ['copy', '--src-tls-verify=false', `docker://${serve.host}/race/app:v1`, `oci:${out}:v1`])
    expect(digestsOf(out)).toEqual(usedBlobs(winner, 'v1'))
    // both pushes are whole snapshots in the store
    const raced = await revisionsNamed('race/app:v1')
    expect(raced).toHaveLength(2)
    for (const r of raced) expect(await snapdirOk(['verify', '--store', store, '--id', r.id])).toMatch(/ 0 damaged/)
  }, 180_000)
})

