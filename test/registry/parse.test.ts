// The registry client's parsers: image references, WWW-Authenticate challenges, Link headers,
// Retry-After, and the shared CLI options.
import { describe, expect, test } from 'vitest'
import { registryClientOptions } from '../../src/cli/registry-options.js'
import { outcomeOf } from '../../src/cli/run-command.js'
import { parseChallenges } from '../../src/registry/auth.js'
import { nextLink } from '../../src/registry/client.js'
import { RegistryClients } from '../../src/registry/client-pool.js'
import { parseCredentials } from '../../src/registry/credentials.js'
import { apiHost, isImageRef, isLoopbackRegistry, parseImageRef } from '../../src/registry/reference.js'
import { retryAfterMs } from '../../src/registry/transport.js'
import { UsageError } from '../../src/util/errors.js'

const HEX = 'a'.repeat(64)

describe('parseImageRef', () => {
  test.each([
    ['docker://127.0.0.1:5000/app:v1', '127.0.0.1:5000', 'app', 'v1', undefined, 'v1'],
    ['docker://localhost/team/app', 'localhost', 'team/app', undefined, undefined, 'latest'],
    [`docker://reg.example.com/a/b/c@sha256:${HEX}`, 'reg.example.com', 'a/b/c', undefined, `sha256:${HEX}`, `sha256:${HEX}`],
    [`docker://reg.example.com:443/a:t@sha256:${HEX}`, 'reg.example.com:443', 'a', 't', `sha256:${HEX}`, `sha256:${HEX}`],
    ['docker://alpine', 'docker.io', 'library/alpine', undefined, undefined, 'latest'],
    ['docker://alpine:3.20', 'docker.io', 'library/alpine', '3.20', undefined, '3.20'],
    ['docker://someone/tool:1', 'docker.io', 'someone/tool', '1', undefined, '1'],
    ['docker://[::1]:5000/app:x', '[::1]:5000', 'app', 'x', undefined, 'x'],
    ['docker://Reg.Example.COM/my-app_1.x:V_1.0-rc', 'reg.example.com', 'my-app_1.x', 'V_1.0-rc', undefined, 'V_1.0-rc'],
  ])('%s', (input, registry, repository, tag, digest, reference) => {
    const ref = parseImageRef(input)
    expect(ref.registry).toBe(registry)
    expect(ref.repository).toBe(repository)
    expect(ref.tag).toBe(tag)
    expect(ref.digest).toBe(digest)
    expect(ref.reference).toBe(reference)
    expect(parseImageRef(ref.toString()).toString()).toBe(ref.toString())
  })

  test.each([
    ['127.0.0.1:5000/app', 'does not start with docker://'],
    ['docker://', 'names no repository'],
    ['docker://reg.example.com/', 'names no repository'],
    ['docker://reg.example.com/App', 'is not a repository name'],
    ['docker://reg.example.com/a//b', 'is not a repository name'],
    ['docker://reg.example.com/a:-bad', 'is not a tag'],
    ['docker://reg.example.com/a@sha256:123', 'is not a digest'],
    ['docker://reg.example.com:99999/a', 'is not a port'],
    ['docker://bad_host.com/a', 'is not a host name'],
  ])('%s is refused: %s', (input, why) => {
    let err: unknown
    try {
      parseImageRef(input)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(UsageError)
    const e = err as UsageError
    expect(e.code).toBe('ERR_BAD_IMAGE_REF')
    expect(e.message).toContain(JSON.stringify(input))
    expect(e.message).toContain(why)
    expect(e.message).toContain('expected docker://HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]')
    expect(outcomeOf(e).status).toBe(2)
  })

  test('isImageRef, loopback hosts and the API host', () => {
    expect(isImageRef('docker://x/y')).toBe(true)
    expect(isImageRef('/tmp/dir')).toBe(false)
    for (const h of ['localhost', 'localhost:5000', '127.0.0.1', '127.1.2.3:80', '[::1]:5000']) expect(isLoopbackRegistry(h)).toBe(true)
    for (const h of ['reg.example.com', '10.0.0.1:5000', '128.0.0.1', 'localhost.example.com']) expect(isLoopbackRegistry(h)).toBe(false)
    expect(apiHost('docker.io')).toBe('registry-1.docker.io')
    expect(apiHost('quay.io')).toBe('quay.io')
  })
})

test('parseChallenges reads bearer, basic and several at once', () => {
  expect(parseChallenges('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"')).toEqual([
    { scheme: 'bearer', params: { realm: 'https://auth.example.com/token', service: 'registry.example.com', scope: 'repository:a/b:pull,push' } },
  ])
  expect(parseChallenges('Basic realm="Registry Realm"')).toEqual([{ scheme: 'basic', params: { realm: 'Registry Realm' } }])
  expect(parseChallenges(['Basic realm="x"', 'Bearer realm="https://t/\\"q\\"",error="invalid_token"'])).toEqual([
    { scheme: 'basic', params: { realm: 'x' } },
    { scheme: 'bearer', params: { realm: 'https://t/"q"', error: 'invalid_token' } },
  ])
  expect(parseChallenges(undefined)).toEqual([])
})

test('nextLink follows rel="next" and nothing else', () => {
  const page = new URL('http://r/v2/a/tags/list?n=2')
  expect(nextLink('</v2/a/tags/list?n=2&last=b>; rel="next"', page)?.href).toBe('http://r/v2/a/tags/list?n=2&last=b')
  expect(nextLink('<http://other/x>; rel="prev", </v2/next>; rel=next', page)?.href).toBe('http://r/v2/next')
  expect(nextLink('</v2/x>; rel="prev"', page)).toBeUndefined()
  expect(nextLink(undefined, page)).toBeUndefined()
})

test('Retry-After in seconds or as a date', () => {
  expect(retryAfterMs('3')).toBe(3000)
  expect(retryAfterMs(undefined)).toBeUndefined()
  expect(retryAfterMs('soon')).toBeUndefined()
  const ms = retryAfterMs(new Date(Date.now() + 5000).toUTCString())!
  expect(ms).toBeGreaterThan(3000)
  expect(ms).toBeLessThanOrEqual(5000)
})

test('credentials and the shared registry options', () => {
  expect(parseCredentials('me:pa:ss')).toEqual({ username: 'me', password: 'pa:ss' })
  expect(() => parseCredentials('me', '--src-creds')).toThrow('--src-creds: expected USER:PASSWORD, got no password')
  const opts = { creds: 'any:1', destCreds: 'dest:2', tlsVerify: 'false', caFile: '/ca.pem', registryRps: '2.5' }
  // verification off: HTTPS unverified, plain HTTP where the registry speaks no TLS
  expect(registryClientOptions(opts, 'source')).toEqual({ creds: { username: 'any', password: '1' }, tlsVerify: false, httpFallback: true, caFile: '/ca.pem', rps: 2.5 })
  // a CA file alone: HTTPS verified first, plain HTTP only for a loopback registry without TLS
  expect(registryClientOptions({ caFile: '/ca.pem' }, 'source')).toEqual({ caFile: '/ca.pem', httpFallback: true })
  expect(registryClientOptions(opts, 'destination').creds).toEqual({ username: 'dest', password: '2' })
  expect(registryClientOptions({}, 'source')).toEqual({})
  expect(() => registryClientOptions({ tlsVerify: 'maybe' }, 'source')).toThrow('--tls-verify: expected true or false, got "maybe"')
  expect(() => registryClientOptions({ registryRps: '0' }, 'source')).toThrow('--registry-rps: expected a positive number')
  expect(() => registryClientOptions({ srcCreds: 'nopass' }, 'source')).toThrow('--src-creds')
})

test('RegistryClients keeps one client per registry, made with that registry\'s options', async () => {
  const asked: string[] = []
  const pool = new RegistryClients((registry) => {
    asked.push(registry)
    return { plainHttp: registry === 'a.example.com' }
  })
  const a = pool.get('a.example.com')
  expect(pool.get('a.example.com')).toBe(a)
  expect(a.base.protocol).toBe('http:')
  expect(pool.get('b.example.com').base.protocol).toBe('https:')
  expect(asked).toEqual(['a.example.com', 'b.example.com'])
  await pool.close()
  await pool.close()
})
