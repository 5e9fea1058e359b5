// Images sent into a real registry (docker-registry 2.8 on loopback) by pull docker:// and sync, with
// skopeo as the independent reference for what the registry then holds, and a counting proxy in front
// of the registry for what snapdir asked of it: a second send uploads nothing, a send killed halfway
// and run again sends only what is missing, a registry-to-registry sync keeps every digest and mounts
// within one registry.
import { once } from 'node:events'
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Readable } from 'node:stream'
import { RegistryClient } from '../../src/registry/client.js'
import { readTree } from '../../src/store/objects.js'
import { storeFromUrl } from '../../src/store/open-store.js'
import { findEntry } from '../../src/store/tree-file.js'
import { snapdir, snapdirOk, spawnSnapdir, tempDir } from '../helpers/cli.js'
import { BLOB_UPLOAD_DONE, MANIFEST_PUT, startCountingProxy, type CountingProxy } from '../helpers/counting-proxy.js'
import { blobFile, blobHashes, firstManifest, LayoutBuilder, OCI, requireTools, sha256, tool, toolStatus, umociImageWithReference } from '../helpers/oci.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'

requireTools('umoci', 'skopeo', 'setfattr', 'docker-registry')

const TAG = 'v1'
let shared = ''
let image = ''
let store = ''
let id = ''
let registry: TestRegistry
let proxy: CountingProxy
/** the image's manifest digest, and its blobs (config and layers) */
let digest = ''
let blobCount = 0
/** the hex names of the manifest, config and layers (umoci's layout keeps older blobs beside them) */
let imageBlobs: string[] = []

beforeAll(async () => {
  const built = umociImageWithReference('snapdir-pull-registry-', TAG)
  shared = built.shared
  image = built.image
  store = path.join(shared, 'store')
  id = (await snapdirOk(['push', '--store', store, image])).trim()
  const { descriptor, manifest } = firstManifest(image)
  digest = descriptor.digest
  blobCount = 1 + manifest.layers.length
  imageBlobs = [descriptor, manifest.config, ...manifest.layers].map((d) => d.digest.slice('sha256:'.length)).sort()
  // the layers are stored as recipes: what is sent is regenerated from them, not kept bytes
  const opened = storeFromUrl(store)
  await opened.open()
  const bundle = await readTree(opened, id)
  for (const l of manifest.layers) expect(findEntry(bundle, `blobs/sha256/${l.digest.slice(7)}`)?.recipe, `layer ${l.digest}`).toBeDefined()
  await opened.close()
  registry = await startRegistry()
  proxy = await startCountingProxy(registry.host)
}, 120_000)

afterAll(async () => {
  await proxy?.close()
  await registry?.stop()
  if (shared) rmSync(shared, { recursive: true, force: true })
})

interface Summary {
  image: string
  digest: string
  alreadyComplete: boolean
  blobs: { sent: number; skipped: number; mounted: number }
  bytes: { sent: number; skipped: number; mounted: number }
  manifests: { sent: number; skipped: number }
}

async function json(args: string[]): Promise<Summary> {
  return JSON.parse(await snapdirOk([...args, '--json'])) as Summary
}

/** skopeo's own copy of what the registry holds under `ref`, as an OCI layout (every digest re-checked). */
function skopeoCopy(host: string, ref: string): string {
  const out = path.join(tempDir(), 'copied')
  tool('skopeo', ['copy', '--src-tls-verify=false', `docker://${host}/${ref}`, `oci:${out}:${TAG}`])
  return out
}

/** A layout skopeo wrote holds exactly the image's blobs, each hashing to its name. */
function expectTheImage(copied: string): void {
  const blobs = blobHashes(copied)
  expect(blobs.map((b) => b.name)).toEqual(imageBlobs)
  for (const b of blobs) expect(b.sha256).toBe(b.name)
}

function skopeoDigest(host: string, ref: string): string {
  return (JSON.parse(tool('skopeo', ['inspect', '--tls-verify=false', `docker://${host}/${ref}`])) as { Digest: string }).Digest
}

describe('pull docker://', () => {
  it('sends the stored image: skopeo reads back the same manifest bytes and the same blobs', async () => {
    proxy.reset()
    const s = await json(['pull', '--store', store, '--id', id, `docker://${proxy.host}/app:${TAG}`])
    expect(s).toMatchObject({ digest, alreadyComplete: false, blobs: { sent: blobCount, skipped: 0, mounted: 0 }, manifests: { sent: 1 } })
    expect(proxy.count('PUT', BLOB_UPLOAD_DONE)).toBe(blobCount)
    const raw = tool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/app:${TAG}`])
    expect(Buffer.from(raw)).toEqual(readFileSync(blobFile(image, digest)))
    expect(skopeoDigest(registry.host, `app:${TAG}`)).toBe(digest)
    const copied = skopeoCopy(registry.host, `app:${TAG}`)
    expectTheImage(copied)
  })

  it('again: the tag names the digest already, so nothing is sent; under another tag every blob is skipped by HEAD', async () => {
    proxy.reset()
    const again = await json(['pull', '--store', store, '--id', id, `docker://${proxy.host}/app:${TAG}`])
    expect(again).toMatchObject({ digest, alreadyComplete: true, blobs: { sent: 0 }, manifests: { sent: 0 } })
    expect(proxy.count('PUT', BLOB_UPLOAD_DONE) + proxy.count('POST', /blobs\/uploads/) + proxy.count('PUT', MANIFEST_PUT)).toBe(0)
    expect(proxy.requests.length).toBe(1) // the tag's HEAD
    proxy.reset()
    const other = await json(['pull', '--store', store, '--id', id, `docker://${proxy.host}/app:other`])
    expect(other).toMatchObject({ digest, alreadyComplete: false, blobs: { sent: 0, skipped: blobCount }, manifests: { sent: 1 } })
    expect(proxy.count('POST', /blobs\/uploads/)).toBe(0)
    expect(proxy.count('HEAD', /\/blobs\/sha256:/)).toBe(blobCount)
  })

  it('a sync into a registry killed after two blobs, then run again, sends only the rest; no manifest before', async () => {
    proxy.reset()
    const target = `docker://${proxy.host}/half:${TAG}`
    const child = spawnSnapdir(['sync', '--from', store, '--id', id, '--to', target, '--jobs', '1'], { stdio: 'ignore' })
    const exited = once(child, 'exit')
    let uploads = 0
    const onRequest = (r: { method: string; path: string; status: number }) => {
      if (r.method === 'PUT' && BLOB_UPLOAD_DONE.test(r.path) && r.status === 201 && ++uploads === 2) child.kill('SIGKILL')
    }
    proxy.events.on('request', onRequest)
    await exited
    proxy.events.off('request', onRequest)
    expect(uploads).toBeGreaterThanOrEqual(2)
    expect(uploads).toBeLessThan(blobCount)
    expect(proxy.count('PUT', MANIFEST_PUT)).toBe(0)
    expect(toolStatus('skopeo', ['inspect', '--tls-verify=false', `docker://${registry.host}/half:${TAG}`]).status).not.toBe(0)

    const s = await json(['sync', '--from', store, '--id', id, '--to', target])
    expect(s).toMatchObject({ digest, blobs: { skipped: uploads, sent: blobCount - uploads } })
    expect(skopeoDigest(registry.host, `half:${TAG}`)).toBe(digest)
    expectTheImage(skopeoCopy(registry.host, `half:${TAG}`))
  })

  it("a digest that is not the image's is refused before anything is sent", async () => {
    proxy.reset()
    const wrong = `sha256:${sha256('not this image')}`
    const r = await snapdir(['pull', '--store', store, '--id', id, `docker://${proxy.host}/app@${wrong}`])
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(`not ${wrong}`)
    expect(proxy.requests.length).toBe(0)
  })
})

describe('sync docker:// to docker://', () => {
  it('within one registry: every blob mounted from the source repository, none sent', async () => {
    await snapdirOk(['pull', '--store', store, '--id', id, `docker://${registry.host}/app:${TAG}`])
    proxy.reset()
    const s = await json(['sync', '--from', `docker://${proxy.host}/app:${TAG}`, '--to', `docker://${proxy.host}/team/mounted`])
    expect(s).toMatchObject({ digest, blobs: { sent: 0, mounted: blobCount }, manifests: { sent: 1 } })
    expect(proxy.count('PUT', BLOB_UPLOAD_DONE)).toBe(0)
    expect(skopeoDigest(registry.host, `team/mounted:${TAG}`)).toBe(digest)
  })

  it('to another registry: streamed blob to blob, the same digests; again: one manifest request on each side', async () => {
    const other = await startRegistry()
    try {
      const to = await startCountingProxy(other.host)
      try {
        proxy.reset()
        const s = await json(['sync', '--from', `docker://${proxy.host}/app:${TAG}`, '--to', `docker://${to.host}/copy`])
        expect(s).toMatchObject({ digest, blobs: { sent: blobCount, mounted: 0 } })
        expect(skopeoDigest(other.host, `copy:${TAG}`)).toBe(digest)
        expectTheImage(skopeoCopy(other.host, `copy:${TAG}`))
        proxy.reset()
        to.reset()
        const again = await json(['sync', '--from', `docker://${proxy.host}/app:${TAG}`, '--to', `docker://${to.host}/copy`])
        expect(again).toMatchObject({ digest, alreadyComplete: true })
        expect([proxy.requests.length, to.requests.length]).toEqual([1, 1])
      } finally {
        await to.close()
      }
    } finally {
      await other.stop()
    }
  })
})

describe('referrers', () => {
  it('registry -> store -> store -> registry: the same digest and blobs as the original, the name carried along', async () => {
    const other = await startRegistry()
    try {
      const t = tempDir()
      const region1 = path.join(t, 'region1')
      const region2 = path.join(t, 'region2')
      await snapdirOk(['pull', '--store', store, '--id', id, `docker://${registry.host}/app:${TAG}`])
      // from the registry into a store, as a push from the registry does it
      await snapdirOk(['sync', '--from', `docker://${registry.host}/app:${TAG}`, '--to', region1])
      const name = `${registry.host}/app:${TAG}`
      expect(await snapdirOk(['revisions', '--store', region1])).toContain(`${registry.host}/app`)
      // store to store by its name, then out of the second store by its name
      await snapdirOk(['sync', '--from', region1, '--to', region2, '--image', name])
      const s = await json(['sync', '--from', region2, '--image', name, '--to', `docker://${other.host}/roundtrip:${TAG}`])
      expect(s.digest).toBe(digest)
      expect(skopeoDigest(other.host, `roundtrip:${TAG}`)).toBe(digest)
      expectTheImage(skopeoCopy(other.host, `roundtrip:${TAG}`))
    } finally {
      await other.stop()
    }
  })

  it('an SBOM referring to the image goes along to a registry without the referrers API, listed under its sha256-<hex> tag', async () => {
    await snapdirOk(['pull', '--store', store, '--id', id, `docker://${registry.host}/signed:${TAG}`])
    // the SBOM, put as oras puts one where there is no referrers API: the artifact, then the tag schema's index
    const client = new RegistryClient(registry.host)
    const empty = Buffer.from('{}')
    const sbom = Buffer.from('{"spdxVersion":"SPDX-2.3","name":"app"}')
    const put = (b: Buffer) => client.putBlob('signed', `sha256:${sha256(b)}`, b.length, () => Readable.from([b]))
    await put(empty)
    await put(sbom)
    const subject = { mediaType: OCI.manifest, digest, size: readFileSync(blobFile(image, digest)).length }
    const artifact = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI.manifest,
      artifactType: 'application/spdx+json',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: `sha256:${sha256(empty)}`, size: 2 },
      layers: [{ mediaType: 'application/spdx+json', digest: `sha256:${sha256(sbom)}`, size: sbom.length }],
      subject,
    }))
    const artifactDigest = `sha256:${sha256(artifact)}`
    await client.putManifest('signed', artifactDigest, artifact, OCI.manifest)
    const tag = `sha256-${digest.slice(7)}`
    await client.putManifest('signed', tag, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI.index, manifests: [{ mediaType: OCI.manifest, digest: artifactDigest, size: artifact.length, artifactType: 'application/spdx+json' }] })), OCI.index)
    await client.close()

    const other = await startRegistry()
    try {
      const s = JSON.parse(await snapdirOk(['sync', '--from', `docker://${registry.host}/signed:${TAG}`, '--to', `docker://${other.host}/signed`, '--json'])) as Summary & { referrers: number }
      expect(s).toMatchObject({ digest, referrers: 1 })
      const raw = (ref: string) => Buffer.from(tool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${other.host}/signed${ref}`]))
      expect(raw(`@${artifactDigest}`)).toEqual(artifact)
      const listed = JSON.parse(raw(`:${tag}`).toString()) as { manifests: Array<{ digest: string }> }
      expect(listed.manifests.map((m) => m.digest)).toEqual([artifactDigest])
    } finally {
      await other.stop()
    }
  })
})

describe('a multi-platform image', () => {
  /** the umoci image as linux/amd64 and, with its config saying arm64, as linux/arm64, under one index */
  async function multiPlatform(): Promise<{ store: string; id: string; index: string; amd: string; arm: string }> {
    const layout = path.join(tempDir(), 'multi')
    cpSync(image, layout, { recursive: true })
    const b = new LayoutBuilder(layout)
    const { descriptor, manifest } = firstManifest(layout)
    const config = JSON.parse(readFileSync(blobFile(layout, manifest.config.digest), 'utf8')) as Record<string, unknown>
    const armConfig = b.blob({ ...config, architecture: 'arm64' }, OCI.config)
    const arm = b.manifest({ config: armConfig, layers: manifest.layers })
    const ppc = b.manifest({ config: b.blob({ ...config, architecture: 'ppc64le' }, OCI.config), layers: manifest.layers })
    const index = b.index([
      { ...descriptor, mediaType: OCI.manifest, platform: { os: 'linux', architecture: 'amd64' } } as typeof descriptor,
      { ...arm, platform: { os: 'linux', architecture: 'arm64' } } as typeof arm,
      { ...ppc, platform: { os: 'linux', architecture: 'ppc64le' } } as typeof ppc,
    ])
    writeFileSync(path.join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: OCI.index, manifests: [{ ...index, annotations: { 'org.opencontainers.image.ref.name': TAG } }] }))
    const s = path.join(tempDir(), 'store')
    return { store: s, id: (await snapdirOk(['push', '--store', s, layout])).trim(), index: index.digest, amd: descriptor.digest, arm: arm.digest }
  }

  it('whole, its index byte for byte; --platform once: that manifest alone; twice: an index of those two of three, under its own digest', async () => {
    const m = await multiPlatform()
    const whole = await json(['pull', '--store', m.store, '--id', m.id, `docker://${registry.host}/multi:${TAG}`])
    expect(whole).toMatchObject({ digest: m.index, manifests: { sent: 4 } })
    expect(skopeoDigest(registry.host, `multi:${TAG}`)).toBe(m.index)
    for (const child of [m.amd, m.arm]) expect(tool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/multi@${child}`]).length).toBeGreaterThan(0)

    const one = await json(['pull', '--store', m.store, '--id', m.id, '--platform', 'linux/arm64', `docker://${registry.host}/arm:${TAG}`])
    expect(one).toMatchObject({ digest: m.arm, manifests: { sent: 1 } })
    expect(skopeoDigest(registry.host, `arm:${TAG}`)).toBe(m.arm)

    const two = await json(['pull', '--store', m.store, '--id', m.id, '--platform', 'linux/arm64', '--platform', 'linux/amd64', `docker://${registry.host}/two:${TAG}`])
    const raw = Buffer.from(tool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/two:${TAG}`]))
    expect(two.digest).toBe(`sha256:${sha256(raw)}`)
    expect(two.digest).not.toBe(m.index)
    expect((JSON.parse(raw.toString()) as { manifests: Array<{ digest: string }> }).manifests.map((d) => d.digest)).toEqual([m.amd, m.arm])
  })
})

describe('cross-repository mounts from a store', () => {
  it('blobs of an image the store took from a repository of that registry, or that another snapshot from there holds, are mounted, not uploaded', async () => {
    await snapdirOk(['pull', '--store', store, '--id', id, `docker://${registry.host}/app:${TAG}`])
    // a store that took the image from the registry (through the proxy, so its records name the proxy's host)
    const t = tempDir()
    const fromRegistry = path.join(t, 'from-registry')
    const taken = (await snapdirOk(['push', '--store', fromRegistry, `docker://${proxy.host}/app:${TAG}`])).trim()
    proxy.reset()
    const own = await json(['pull', '--store', fromRegistry, '--id', taken, `docker://${proxy.host}/mirror/own:${TAG}`])
    expect(own).toMatchObject({ digest, blobs: { sent: 0, mounted: blobCount } })
    expect(proxy.count('PUT', BLOB_UPLOAD_DONE)).toBe(0)
    expect(proxy.count('POST', /blobs\/uploads\/\?.*mount=.*from=app/)).toBe(blobCount)
    expect(skopeoDigest(registry.host, `mirror/own:${TAG}`)).toBe(digest)

    // the layout pushed into that store too: its blobs are the registry snapshot's, so they are mounted
    // from the repository that snapshot came from (the sync to a registry goes the same way)
    const layoutId = (await snapdirOk(['push', '--store', fromRegistry, image])).trim()
    expect(layoutId).not.toBe(taken)
    proxy.reset()
    const other = await json(['sync', '--from', fromRegistry, '--id', layoutId, '--to', `docker://${proxy.host}/mirror/other:${TAG}`])
    expect(other).toMatchObject({ digest, blobs: { sent: 0, mounted: blobCount } })
    expect(proxy.count('PUT', BLOB_UPLOAD_DONE)).toBe(0)

    // a store with no record of the registry uploads them: the mounts above came from the records
    proxy.reset()
    const none = await json(['pull', '--store', store, '--id', id, `docker://${proxy.host}/mirror/none:${TAG}`])
    expect(none).toMatchObject({ digest, blobs: { sent: blobCount, mounted: 0 } })
    expect(proxy.count('PUT', BLOB_UPLOAD_DONE)).toBe(blobCount)
    expect(proxy.count('POST', /mount=/)).toBe(0)
  })
})
