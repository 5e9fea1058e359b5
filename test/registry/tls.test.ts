// Registries over TLS: docker-registry 2.8 serving HTTPS with a self-signed certificate made here by
// openssl. A loopback registry is spoken to in plain HTTP unless told (as docker does), and then its
// certificate is refused naming why; trusted through a certificate directory (skopeo's --cert-dir:
// *.crt) or a CA file; taken unverified with --tls-verify=false, which also lets a plain HTTP registry
// answer. Each side of a sync has its own settings; a client certificate in the directory is presented
// to a registry that asks for one.
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ID_RE, snapdir, tempDir } from '../helpers/cli.js'
import { firstManifest, requireTools, tool, umociImageWithReference } from '../helpers/oci.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'

requireTools('umoci', 'skopeo', 'setfattr', 'docker-registry', 'openssl')

let shared = ''
let keys = ''
let tls: TestRegistry
let plain: TestRegistry
let digest = ''
/** the registry's certificate (self-signed: its own CA), as a PEM file and as a certificate directory */
let cert = ''
let certDir = ''

/** A self-signed certificate for 127.0.0.1: `NAME.pem` and `NAME.key` in `dir`. */
function selfSigned(dir: string, name: string): { cert: string; key: string } {
  const key = path.join(dir, `${name}.key`)
  const cert = path.join(dir, `${name}.pem`)
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' })
  if (made.status !== 0) throw new Error(`openssl failed: ${made.stderr}`)
  return { cert, key }
}

beforeAll(async () => {
  const built = umociImageWithReference('snapdir-tls-', 'v1')
  shared = built.shared
  digest = firstManifest(built.image).descriptor.digest
  keys = path.join(shared, 'keys')
  mkdirSync(keys)
  const server = selfSigned(keys, 'registry')
  cert = server.cert
  certDir = path.join(shared, 'certs.d')
  mkdirSync(certDir)
  copyFileSync(cert, path.join(certDir, 'ca.crt'))
  tls = await startRegistry({ tls: server })
  plain = await startRegistry()
  tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${built.image}:v1`, `docker://${tls.host}/app:v1`])
}, 180_000)

afterAll(async () => {
  await tls?.stop()
  await plain?.stop()
  if (shared) rmSync(shared, { recursive: true, force: true })
})

function skopeoDigest(ref: string): string {
  return (JSON.parse(tool('skopeo', ['inspect', '--tls-verify=false', ref])) as { Digest: string }).Digest
}

describe('a registry serving HTTPS with a self-signed certificate', () => {
  test('refused by default, and when verified, each naming why; nothing stored', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const asPlain = await snapdir(['push', '--store', store, `docker://${tls.host}/app:v1`])
    expect(asPlain.status).toBe(1)
    expect(asPlain.stderr).toContain(`docker://${tls.host}/app`)
    expect(asPlain.stderr).toContain('it speaks HTTPS, not the plain HTTP snapdir used (loopback registries get plain HTTP unless --tls-verify=true, --cert-dir or --ca-file is given)')
    const verified = await snapdir(['push', '--store', store, '--src-tls-verify=true', `docker://${tls.host}/app:v1`])
    expect(verified.status).toBe(1)
    expect(verified.stderr.trimEnd().split('\n')).toHaveLength(1)
    expect(verified.stderr).toContain(`registry unreachable at https://${tls.host}: its TLS certificate is not trusted (self-signed certificate); trust its CA with --cert-dir DIR (*.crt) or --ca-file FILE, or skip verification with --tls-verify=false`)
    expect(existsSync(store)).toBe(false)
  })

  test('accepted with its CA in a --src-cert-dir, in a --ca-file, or with --src-tls-verify=false: the same snapshot each time', async () => {
    const t = tempDir()
    const ids = []
    for (const [i, flags] of [[`--src-cert-dir=${certDir}`], [`--ca-file=${cert}`], ['--src-tls-verify=false'], [`--cert-dir=${certDir}`]].entries()) {
      const r = await snapdir(['push', '--store', path.join(t, `store${i}`), ...flags, `docker://${tls.host}/app:v1`])
      expect(r.status, `${flags.join(' ')}: ${r.stderr}`).toBe(0)
      ids.push(r.stdout.trim())
    }
    expect(ids[0]).toMatch(ID_RE)
    expect(new Set(ids).size).toBe(1)
    // the directory of another side does not count for this one
    const other = await snapdir(['push', '--store', path.join(t, 'other'), `--dest-cert-dir=${certDir}`, '--src-tls-verify=true', `docker://${tls.host}/app:v1`])
    expect(other.status).toBe(1)
    expect(other.stderr).toContain('self-signed certificate')
  })

  test('each side of a sync its own: HTTPS with a cert dir on one, plain HTTP on the other (also reached with --tls-verify=false)', async () => {
    const there = await snapdir(['sync', '--from', `docker://${tls.host}/app:v1`, '--src-cert-dir', certDir, '--to', `docker://${plain.host}/copy`, '--json'])
    expect(there.status, there.stderr).toBe(0)
    expect(skopeoDigest(`docker://${plain.host}/copy:v1`)).toBe(digest)
    // --tls-verify=false tries HTTPS first and takes the plain HTTP registry's answer
    const back = await snapdir(['sync', '--from', `docker://${plain.host}/copy:v1`, '--src-tls-verify=false', '--to', `docker://${tls.host}/back`, '--dest-cert-dir', certDir, '--json'])
    expect(back.status, back.stderr).toBe(0)
    expect(skopeoDigest(`docker://${tls.host}/back:v1`)).toBe(digest)
    // a --ca-file for both sides: HTTPS verified where there is TLS, plain HTTP on the loopback registry without it
    const both = await snapdir(['sync', '--from', `docker://${plain.host}/copy:v1`, '--to', `docker://${tls.host}/both`, '--ca-file', cert, '--json'])
    expect(both.status, both.stderr).toBe(0)
    expect(skopeoDigest(`docker://${tls.host}/both:v1`)).toBe(digest)
  })

  test('sync --config: the registry\'s certDir in the file', async () => {
    const t = tempDir()
    const file = path.join(t, 'sync.yaml')
    const text = (settings: string) =>
      `registries:\n  "${tls.host}": {${settings}}\nsync:\n  - source: docker://${tls.host}/app:v1\n    target: docker://${plain.host}/viaconfig\n`
    writeFileSync(file, text(`tls: enabled`))
    const refused = await snapdir(['sync', '--config', file])
    expect(refused.status).toBe(1)
    expect(refused.stderr).toContain('self-signed certificate')
    writeFileSync(file, text(`certDir: ${certDir}`))
    const r = await snapdir(['sync', '--config', file])
    expect(r.status, r.stderr).toBe(0)
    expect(skopeoDigest(`docker://${plain.host}/viaconfig:v1`)).toBe(digest)
  })

  test('a cert dir that is not there, or a key without its certificate: exit 2, one line', async () => {
    const t = tempDir()
    const missing = path.join(t, 'nope')
    const r = await snapdir(['push', '--store', path.join(t, 's'), '--src-cert-dir', missing, `docker://${tls.host}/app:v1`])
    expect(r.status).toBe(2)
    expect(r.stderr.trim()).toBe(`snapdir: cannot read the certificate directory ${missing}: no such file or directory (ENOENT)`)
    const lone = path.join(t, 'lone')
    mkdirSync(lone)
    copyFileSync(path.join(keys, 'registry.key'), path.join(lone, 'client.key'))
    const k = await snapdir(['push', '--store', path.join(t, 's'), '--src-cert-dir', lone, `docker://${tls.host}/app:v1`])
    expect(k.status).toBe(2)
    expect(k.stderr).toContain(`the client key ${path.join(lone, 'client.key')} has no certificate client.cert beside it`)
  })
})

describe('a registry that asks for a client certificate', () => {
  let mtls: TestRegistry
  beforeAll(async () => {
    const server = selfSigned(keys, 'mtls-server')
    const client = selfSigned(keys, 'mtls-client')
    mtls = await startRegistry({ tls: { ...server, client: { cert: client.cert, key: client.key } } })
  }, 60_000)
  afterAll(async () => {
    await mtls?.stop()
  })

  test('the NAME.cert and NAME.key of the cert dir are presented; without them the handshake fails', async () => {
    const dir = path.join(tempDir(), 'certs')
    mkdirSync(dir)
    copyFileSync(path.join(keys, 'mtls-server.pem'), path.join(dir, 'ca.crt'))
    const from = ['--from', `docker://${tls.host}/app:v1`, '--src-cert-dir', certDir]
    const without = await snapdir(['sync', ...from, '--to', `docker://${mtls.host}/app`, '--dest-cert-dir', dir])
    expect(without.status).toBe(1)
    expect(without.stderr).toContain(`registry unreachable at https://${mtls.host}`)
    copyFileSync(path.join(keys, 'mtls-client.pem'), path.join(dir, 'client.cert'))
    copyFileSync(path.join(keys, 'mtls-client.key'), path.join(dir, 'client.key'))
    const r = await snapdir(['sync', ...from, '--to', `docker://${mtls.host}/app`, '--dest-cert-dir', dir])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toContain(digest)
  })
})
