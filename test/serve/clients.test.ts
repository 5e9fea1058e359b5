// Registry clients pulling from snapdir serve, each the real tool: containerd (`ctr image pull
// --plain-http`, then `ctr run` of what it pulled), snapdir sync from serve into docker-registry 2.8
// (what the registry then holds, read back by skopeo, has the pushed layout's digests), skopeo over
// HTTPS with basic auth (--tls-cert/--tls-key, --htpasswd made by `htpasswd -B`), and skopeo from
// two serve processes on one S3 store (s3rver), which both see a tag pushed meanwhile.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { snapdirOk } from '../helpers/cli.js'
import { buildHelloLayout } from '../helpers/hello-image.js'
import { blobFile, readIndexJson, requireTools, tool, toolStatus } from '../helpers/oci.js'
import { HTPASSWD, startRegistry, type TestRegistry } from '../helpers/registry.js'
import { startS3Server } from '../helpers/s3-server.js'
import { startServe, type ServeProcess } from '../helpers/serve.js'
import { startContainerd, type Containerd } from '../helpers/snapshotter.js'

requireTools('containerd', 'ctr', 'runc', 'umoci', 'gcc', 'skopeo', 'docker-registry', 'htpasswd', 'openssl')

const REPO = 'team/hello'

let dir: string
let layout: string
let store: string
let serve: ServeProcess

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'snapdir-serve-clients-'))
  mkdirSync(path.join(dir, 'image'))
  layout = buildHelloLayout(path.join(dir, 'image'))
  store = path.join(dir, 'store')
  await snapdirOk(['push', '--store', store, '--image', `${REPO}:v1`, layout])
  serve = await startServe(store)
}, 180_000)

afterAll(async () => {
  if (serve) expect(await serve.stop()).toBe(0)
  rmSync(dir, { recursive: true, force: true })
})

const digest = () => readIndexJson(layout).manifests[0]!.digest

describe('pulling from snapdir serve', () => {
  let ctd: Containerd | undefined
  afterAll(async () => {
    await ctd?.stop()
  })

  it('containerd pulls the image over plain HTTP and runs it', async () => {
    // no proxy snapshotter is used here: containerd's own overlayfs unpacks the layers it pulled
    ctd = await startContainerd(path.join(dir, 'containerd'), path.join(dir, 'no-snapshotter.sock'))
    const ref = `${serve.host}/${REPO}:v1`
    ctd.ctr(['image', 'pull', '--plain-http', ref])
    const listed = ctd.ctr(['image', 'ls'])
    expect(listed).toContain(ref)
    expect(listed).toContain(digest())
    const run = ctd.ctrStatus(['run', '--rm', ref, `serve-${randomBytes(4).toString('hex')}`])
    expect(run.stderr).toBe('')
    expect(run.stdout).toBe('layer 2 says hi\n')
  }, 120_000)

  it('snapdir sync copies it into docker-registry 2.8 with every digest kept', async () => {
    const registry: TestRegistry = await startRegistry()
    try {
      await snapdirOk(['sync', '--from', `docker://${serve.host}/${REPO}:v1`, '--to', registry.ref(`${REPO}:v1`)])
      const raw = tool('skopeo', ['inspect', '--raw', '--tls-verify=false', `${registry.ref(REPO)}:v1`])
      expect(Buffer.from(raw).equals(readFileSync(blobFile(layout, digest())))).toBe(true)
      const out = path.join(dir, 'from-registry')
      tool('skopeo', ['copy', '--src-tls-verify=false', `${registry.ref(REPO)}:v1`, `oci:${out}:v1`])
      expect(readIndexJson(out).manifests[0]!.digest).toBe(digest())
    } finally {
      await registry.stop()
    }
  }, 120_000)
})

describe('snapdir serve --tls-cert --tls-key --htpasswd', () => {
  it('skopeo pulls over HTTPS with the user htpasswd -B made; a wrong password or none is 401', async () => {
    const cert = path.join(dir, 'cert.pem')
    const key = path.join(dir, 'key.pem')
    tool('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'])
    const passwords = path.join(dir, 'htpasswd')
    tool(HTPASSWD, ['-B', '-b', '-c', passwords, 'alice', 'open sesame'])
    const secure = await startServe(store, ['--tls-cert', cert, '--tls-key', key, '--htpasswd', passwords])
    try {
      expect(secure.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
      const out = path.join(dir, 'over-tls')
      tool('skopeo', ['copy', '--src-tls-verify=false', '--src-creds', 'alice:open sesame', `docker://${secure.host}/${REPO}:v1`, `oci:${out}:v1`])
      expect(readIndexJson(out).manifests[0]!.digest).toBe(digest())
      await secure.waitForLog(/ alice "GET \/v2\/team\/hello\/manifests\/v1" 200 /)

      const wrong = toolStatus('skopeo', ['inspect', '--tls-verify=false', '--creds', 'alice:wrong', `docker://${secure.host}/${REPO}:v1`])
      expect(wrong.status).not.toBe(0)
      expect(wrong.stderr).toMatch(/401|unauthorized|authentication required/i)
      const anonymous = toolStatus('skopeo', ['inspect', '--tls-verify=false', '--no-creds', `docker://${secure.host}/${REPO}:v1`])
      expect(anonymous.status).not.toBe(0)
      await secure.waitForLog(/ - "GET \/v2\/" 401 /)
    } finally {
      expect(await secure.stop()).toBe(0)
    }
  }, 60_000)
})

describe('snapdir serve over S3', () => {
  it('two servers on one S3 store serve the image and both see a tag pushed meanwhile', async () => {
    const s3 = await startS3Server(['serve'])
    const env = s3.env
    const bucket = 's3://serve/store'
    const servers: ServeProcess[] = []
    try {
      await snapdirOk(['push', '--store', bucket, '--image', `${REPO}:v1`, layout], { env })
      servers.push(await startServe(bucket, [], { env }), await startServe(bucket, [], { env }))
      const out = path.join(dir, 'from-s3')
      // not spawnSync: s3rver runs in this process, and must answer while skopeo pulls
      await promisify(execFile)('skopeo', ['copy', '--src-tls-verify=false', `docker://${servers[0]!.host}/${REPO}:v1`, `oci:${out}:v1`])
      expect(readIndexJson(out).manifests[0]!.digest).toBe(digest())
      for (const s of servers) expect(await (await fetch(`${s.url}/v2/${REPO}/tags/list`)).json()).toEqual({ name: REPO, tags: ['v1'] })
      await snapdirOk(['push', '--store', bucket, '--image', `${REPO}:v2`, layout], { env })
      for (const s of servers) {
        expect(await (await fetch(`${s.url}/v2/${REPO}/tags/list`)).json()).toEqual({ name: REPO, tags: ['v1', 'v2'] })
        expect((await fetch(`${s.url}/v2/${REPO}/manifests/v2`, { method: 'HEAD' })).headers.get('docker-content-digest')).toBe(digest())
      }
    } finally {
      for (const s of servers) expect(await s.stop()).toBe(0)
      await s3.close()
    }
  }, 120_000)
})
