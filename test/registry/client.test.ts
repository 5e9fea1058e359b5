// The registry client against a real docker-registry 2.8 in its three auth modes, with skopeo as the
// independent reference for what the registry holds.
import { createHash } from 'node:crypto'
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { RegistryClient, type RegistryClientOptions } from '../../src/registry/client.js'
import { DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST } from '../../src/registry/media-types.js'
import { SnapdirError } from '../../src/util/errors.js'
import { LayoutBuilder, OCI, requireTools, tool } from '../helpers/oci.js'
import { startRegistry, type RegistryAuth, type TestRegistry } from '../helpers/registry.js'
import { tempDir } from '../helpers/temp.js'

requireTools('docker-registry', 'htpasswd', 'skopeo', 'openssl')

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const p of s) parts.push(p as Buffer)
  return Buffer.concat(parts)
}

/** An image's parts as bytes: a config, two layers, the manifest naming them. */
function image(seed: string, mediaType = OCI_MANIFEST) {
  const docker = mediaType === DOCKER_MANIFEST
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, seed }))
  const layers = [Buffer.from(`layer one of ${seed}`), Buffer.alloc(300_000, seed.length)]
  const desc = (b: Buffer, t: string) => ({ mediaType: t, digest: sha256(b), size: b.length })
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: desc(config, docker ? 'application/vnd.docker.container.image.v1+json' : OCI.config),
      layers: layers.map((l) => desc(l, docker ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : OCI.layerGzip)),
    }),
  )
  return { config, layers, manifest, digest: sha256(manifest), blobs: [config, ...layers] }
}

async function pushImage(c: RegistryClient, repo: string, tag: string, img: ReturnType<typeof image>, mediaType = OCI_MANIFEST): Promise<string> {
  for (const b of img.blobs) {
    if (!(await c.hasBlob(repo, sha256(b)))) await c.putBlob(repo, sha256(b), b.length, () => Readable.from([b]))
  }
  return c.putManifest(repo, tag, img.manifest, mediaType)
}

/** The digest skopeo reports for a reference in the registry (its own reading, not ours). */
function skopeoDigest(r: TestRegistry, ref: string): string {
  const creds = r.auth === 'anonymous' ? [] : ['--creds', r.creds]
  return tool('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', ...creds, `docker://${r.host}/${ref}`]).trim()
}

/** The sha256 of the manifest bytes skopeo reads for a reference. */
function skopeoRawDigest(r: TestRegistry, ref: string): string {
  const creds = r.auth === 'anonymous' ? [] : ['--creds', r.creds]
  return sha256(Buffer.from(tool('skopeo', ['inspect', '--raw', '--tls-verify=false', ...creds, `docker://${r.host}/${ref}`]), 'utf8'))
}

async function failure(p: Promise<unknown>): Promise<SnapdirError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  )
  if (!(err instanceof SnapdirError)) throw new Error(`expected a SnapdirError, got ${String(err)}`)
  expect(err.message).not.toContain('\n')
  return err
}

describe.each(['anonymous', 'basic', 'token'] as RegistryAuth[])('docker-registry 2.8, %s', (auth) => {
  let r: TestRegistry
  let c: RegistryClient
  const dockerConfigDir = (): string => tempDir('snapdir-dockercfg-') // an empty config: only the given creds count
  beforeAll(async () => {
    r = await startRegistry({ auth })
  })
  afterAll(async () => {
    await c?.close()
    await r?.stop()
  })
  const client = (options: RegistryClientOptions = {}): RegistryClient => new RegistryClient(r.host, { dockerConfig: dockerConfigDir(), ...(auth === 'anonymous' ? {} : { creds: r.creds }), ...options })

  test('blobs and a manifest go up and come back byte for byte; skopeo sees the same digest', async () => {
    c = client()
    const img = image(`one-${auth}`)
    expect(await c.hasBlob('team/app', sha256(img.config))).toBe(false)
    const digest = await pushImage(c, 'team/app', 'v1', img)
    expect(digest).toBe(img.digest)
    for (const b of img.blobs) {
      expect(await c.hasBlob('team/app', sha256(b))).toBe(true)
      expect((await readAll(await c.getBlob('team/app', sha256(b), { size: b.length }))).equals(b)).toBe(true)
    }
    const byTag = await c.getManifest('team/app', 'v1')
    expect(byTag.bytes.equals(img.manifest)).toBe(true)
    expect(byTag.mediaType).toBe(OCI_MANIFEST)
    expect(byTag.digest).toBe(img.digest)
    const byDigest = await c.getManifest('team/app', img.digest)
    expect(byDigest.bytes.equals(img.manifest)).toBe(true)
    expect(await c.headManifest('team/app', 'v1')).toEqual({ digest: img.digest, mediaType: OCI_MANIFEST, size: img.manifest.length })
    expect(await c.headManifest('team/app', 'nope')).toBeNull()
    expect(skopeoDigest(r, 'team/app:v1')).toBe(img.digest)
  })

  test('an index over two manifests, and a Docker manifest list, keep their media types and digests', async () => {
    c ??= client()
    const a = image(`a-${auth}`)
    const b = image(`b-${auth}`, DOCKER_MANIFEST)
    await pushImage(c, 'multi', a.digest, a)
    await pushImage(c, 'multi', b.digest, b, DOCKER_MANIFEST)
    const entries = [
      { mediaType: OCI_MANIFEST, digest: a.digest, size: a.manifest.length, platform: { architecture: 'amd64', os: 'linux' } },
      { mediaType: DOCKER_MANIFEST, digest: b.digest, size: b.manifest.length, platform: { architecture: 'arm64', os: 'linux' } },
    ]
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: entries }))
    const list = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: entries.slice(1) }))
    expect(await c.putManifest('multi', 'index', index, OCI_INDEX)).toBe(sha256(index))
    expect(await c.putManifest('multi', 'list', list, DOCKER_MANIFEST_LIST)).toBe(sha256(list))
    const gotIndex = await c.getManifest('multi', 'index')
    expect(gotIndex).toEqual({ bytes: index, mediaType: OCI_INDEX, digest: sha256(index) })
    const gotList = await c.getManifest('multi', 'list')
    expect(gotList).toEqual({ bytes: list, mediaType: DOCKER_MANIFEST_LIST, digest: sha256(list) })
    expect((await c.getManifest('multi', b.digest)).mediaType).toBe(DOCKER_MANIFEST)
    expect(skopeoRawDigest(r, 'multi:index')).toBe(sha256(index))
    expect(skopeoRawDigest(r, 'multi:list')).toBe(sha256(list))
  })

  test('tags come back whole across pages; deleting a manifest removes it', async () => {
    c ??= client()
    const img = image(`tags-${auth}`)
    const names = ['t1', 't2', 't3', 't4', 't5']
    for (const t of names) await pushImage(c, 'paged', t, img)
    expect((await c.listTags('paged', { pageSize: 2 })).sort()).toEqual(names)
    expect((await c.listTags('paged')).sort()).toEqual(names)
    await c.deleteManifest('paged', img.digest)
    expect(await c.headManifest('paged', img.digest)).toBeNull()
  })

  test('a blob is mounted from another repository of the registry, not sent again', async () => {
    c ??= client()
    const blob = Buffer.from(`mounted blob ${auth}`)
    await c.putBlob('src/repo', sha256(blob), blob.length, () => Readable.from([blob]))
    expect(await c.hasBlob('dst/repo', sha256(blob))).toBe(false)
    expect(await c.mountBlob('dst/repo', 'src/repo', sha256(blob))).toBe(true)
    expect(await c.hasBlob('dst/repo', sha256(blob))).toBe(true)
    const absent = sha256(Buffer.from('never uploaded'))
    expect(await c.mountBlob('dst/repo', 'src/repo', absent)).toBe(false)
  })

  test('an empty blob uploads and reads back; a body shorter than its size is refused, one line', async () => {
    c ??= client()
    const empty = Buffer.alloc(0)
    await c.putBlob('empty', sha256(empty), 0, () => Readable.from([]))
    expect(await c.hasBlob('empty', sha256(empty))).toBe(true)
    expect((await readAll(await c.getBlob('empty', sha256(empty), { size: 0 }))).length).toBe(0)
    const blob = Buffer.from('twelve bytes')
    const err = await failure(c.putBlob('empty', sha256(blob), 20, () => Readable.from([blob])))
    expect(err.message).toBe(`docker://${r.host}/empty: upload blob ${sha256(blob)}: the data sent was not the size given for it`)
  })

  test('a registry without the referrers API says so with null', async () => {
    c ??= client()
    const img = image(`ref-${auth}`)
    await pushImage(c, 'refs', 'v1', img)
    expect(await c.referrers('refs', img.digest)).toBeNull()
  })

  test('the 404 of the referrers API is asked once per client: later images, and those asked at once, cost no request', async () => {
    const fresh = client()
    try {
      const imgs = [image(`once-a-${auth}`), image(`once-b-${auth}`), image(`once-c-${auth}`)]
      for (const [i, img] of imgs.entries()) await pushImage(fresh, 'refs-once', `v${i}`, img)
      // the pull scope's token (with token auth) fetched before counting
      await fresh.headManifest('refs-once', 'v0')
      const before = fresh.requests
      // two at once: the second waits for the first's answer rather than asking too
      expect(await Promise.all(imgs.slice(0, 2).map((img) => fresh.referrers('refs-once', img.digest)))).toEqual([null, null])
      expect(await fresh.referrers('refs-once', imgs[2]!.digest)).toBeNull()
      expect(await fresh.referrers('refs-once', imgs[0]!.digest)).toBeNull()
      expect(fresh.requests - before).toBe(1)
      // another client (another run) asks again
      const other = client()
      try {
        expect(await other.referrers('refs-once', imgs[0]!.digest)).toBeNull()
        expect(other.requests).toBeGreaterThanOrEqual(1)
      } finally {
        await other.close()
      }
    } finally {
      await fresh.close()
    }
  })

  test('an unknown tag, repository or blob is one line naming the registry and repository', async () => {
    c ??= client()
    await pushImage(c, 'known', 'v1', image(`known-${auth}`))
    const tag = await failure(c.getManifest('known', 'missing'))
    expect(tag.code).toBe('ERR_REGISTRY_NOT_FOUND')
    expect(tag.message).toBe(`docker://${r.host}/known: get manifest missing: manifest unknown (404 MANIFEST_UNKNOWN)`)
    const repo = await failure(c.listTags('no/such/repo'))
    expect(repo.code).toBe('ERR_REGISTRY_NOT_FOUND')
    expect(repo.message).toBe(`docker://${r.host}/no/such/repo: list tags: repository unknown (404 NAME_UNKNOWN)`)
    const blob = await failure(c.getBlob('known', sha256(Buffer.from('absent'))))
    expect(blob.code).toBe('ERR_REGISTRY_NOT_FOUND')
    expect(blob.message).toContain(`docker://${r.host}/known: get blob sha256:`)
    expect(blob.message).toContain('blob unknown')
  })

  if (auth !== 'anonymous') {
    test('wrong credentials: "authentication failed", one line naming the registry and repository', async () => {
      const wrong = client({ creds: `${r.user}:wrong-password` })
      try {
        const err = await failure(wrong.getManifest('team/app', 'v1'))
        expect(err.code).toBe('ERR_REGISTRY_AUTH')
        expect(err.message).toMatch(new RegExp(`^docker://${r.host.replace(/\./g, '\\.')}/team/app: get manifest v1: .*authentication failed`))
      } finally {
        await wrong.close()
      }
    })

    test('no credentials at all: "authentication required", saying how to give them', async () => {
      const none = new RegistryClient(r.host, { dockerConfig: dockerConfigDir() })
      try {
        const err = await failure(none.getManifest('team/app', 'v1'))
        expect(err.code).toBe('ERR_REGISTRY_AUTH')
        expect(err.message).toContain(`docker://${r.host}/team/app: get manifest v1: authentication required`)
        expect(err.message).toContain('--creds')
      } finally {
        await none.close()
      }
    })

    test("credentials from docker's config.json: auths, and a credential helper", async () => {
      const dir = tempDir('snapdir-dockercfg-')
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ auths: { [r.host]: { auth: Buffer.from(r.creds).toString('base64') } } }))
      const fromAuths = new RegistryClient(r.host, { dockerConfig: dir })
      try {
        expect((await fromAuths.getManifest('team/app', 'v1')).mediaType).toBe(OCI_MANIFEST)
      } finally {
        await fromAuths.close()
      }
      // a helper on PATH, as docker-credential-pass or -ecr-login would be
      const bin = tempDir('snapdir-helper-')
      const helper = path.join(bin, 'docker-credential-snapdirtest')
      writeFileSync(helper, `#!/bin/sh\nread server\nif [ "$1" = get ] && [ "$server" = "${r.host}" ]; then printf '%s' '${JSON.stringify({ ServerURL: r.host, Username: r.user, Secret: r.password })}'; else echo "credentials not found in native keychain"; exit 1; fi\n`)
      chmodSync(helper, 0o755)
      const helperDir = tempDir('snapdir-dockercfg-')
      mkdirSync(helperDir, { recursive: true })
      writeFileSync(path.join(helperDir, 'config.json'), JSON.stringify({ credHelpers: { [r.host]: 'snapdirtest' }, auths: { [r.host]: { auth: Buffer.from(`${r.user}:wrong`).toString('base64') } } }))
      const oldPath = process.env.PATH
      process.env.PATH = `${bin}:${oldPath}`
      const fromHelper = new RegistryClient(r.host, { dockerConfig: helperDir })
      try {
        expect((await fromHelper.getManifest('team/app', 'v1')).mediaType).toBe(OCI_MANIFEST)
      } finally {
        process.env.PATH = oldPath
        await fromHelper.close()
      }
    })
  }

  if (auth === 'token') {
    test('tokens are cached per scope: a second read of the same repository fetches no token', async () => {
      const fresh = client()
      try {
        await fresh.getManifest('team/app', 'v1')
        const before = (await r.tokens!.stats()).issued.length
        await fresh.getManifest('team/app', 'v1')
        // a check of a tag the client has read before costs one request: no challenge, no token
        const requests = fresh.requests
        expect(await fresh.headManifest('team/app', 'v1')).not.toBeNull()
        expect(fresh.requests - requests).toBe(1)
        expect((await r.tokens!.stats()).issued.length).toBe(before)
        // a push needs pull,push: a token of its own
        await fresh.putManifest('team/app', 'v2', (await fresh.getManifest('team/app', 'v1')).bytes, OCI_MANIFEST)
        expect((await r.tokens!.stats()).issued.slice(before)).toEqual(['repository:team/app:pull,push'])
      } finally {
        await fresh.close()
      }
    })

    test('a mount needs pull on the source too: a user who may not read it gets no mount', async () => {
      const r2 = await startRegistry({
        auth: 'token',
        token: { users: { tester: 'pw-tester', other: 'pw-other' }, deny: [{ user: 'other', repository: 'private/src' }] },
        user: 'tester',
        password: 'pw-tester',
      })
      const owner = new RegistryClient(r2.host, { creds: 'tester:pw-tester', dockerConfig: dockerConfigDir() })
      const other = new RegistryClient(r2.host, { creds: 'other:pw-other', dockerConfig: dockerConfigDir() })
      try {
        const blob = Buffer.from('only for the owner')
        await owner.putBlob('private/src', sha256(blob), blob.length, () => Readable.from([blob]))
        expect(await other.mountBlob('public/dst', 'private/src', sha256(blob))).toBe(false)
        expect((await r2.tokens!.stats()).issued).toContain('repository:private/src:pull repository:public/dst:pull,push')
        expect(await other.hasBlob('public/dst', sha256(blob))).toBe(false)
        // and other may still write public/dst itself
        const own = Buffer.from('uploaded by other')
        await other.putBlob('public/dst', sha256(own), own.length, () => Readable.from([own]))
        expect(await other.hasBlob('public/dst', sha256(own))).toBe(true)
        expect(await owner.mountBlob('public/dst', 'private/src', sha256(blob))).toBe(true)
        expect(await other.hasBlob('public/dst', sha256(blob))).toBe(true)
      } finally {
        await owner.close()
        await other.close()
        await r2.stop()
      }
    })
  }
})

describe('an image skopeo copied into the registry', () => {
  let r: TestRegistry
  beforeAll(async () => {
    r = await startRegistry()
  })
  afterAll(async () => {
    await r?.stop()
  })

  test('reads back with the digests skopeo reports, every blob checked', async () => {
    const layout = tempDir('snapdir-layout-')
    const b = new LayoutBuilder(layout)
    const m = b.image({ layers: ['first layer bytes', Buffer.alloc(100_000, 3)] })
    b.writeIndex([m])
    tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:tag0`, `docker://${r.host}/skopeo/copied:v1`])
    const c = new RegistryClient(r.host)
    try {
      const got = await c.getManifest('skopeo/copied', 'v1')
      const inspected = JSON.parse(tool('skopeo', ['inspect', '--tls-verify=false', `docker://${r.host}/skopeo/copied:v1`])) as { Digest: string; Layers: string[] }
      expect(got.digest).toBe(inspected.Digest)
      const doc = JSON.parse(got.bytes.toString('utf8')) as { config: { digest: string; size: number }; layers: Array<{ digest: string; size: number }> }
      expect(doc.layers.map((l) => l.digest)).toEqual(inspected.Layers)
      for (const d of [doc.config, ...doc.layers]) {
        const bytes = await readAll(await c.getBlob('skopeo/copied', d.digest, { size: d.size }))
        expect(sha256(bytes)).toBe(d.digest)
      }
      expect(await c.listTags('skopeo/copied')).toEqual(['v1'])
    } finally {
      await c.close()
    }
  })
})

describe('a registry that is down', () => {
  test('is one line naming the registry, the repository and what failed', async () => {
    const r = await startRegistry()
    const host = r.host
    await r.stop()
    const c = new RegistryClient(host, { retries: 1, backoffMs: 1 })
    try {
      const err = await failure(c.getManifest('team/app', 'v1'))
      expect(err.code).toBe('ERR_REGISTRY_UNREACHABLE')
      expect(err.message).toBe(`docker://${host}/team/app: get manifest v1: registry unreachable at http://${host}: connection refused`)
    } finally {
      await c.close()
    }
  })
})
