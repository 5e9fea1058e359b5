// The SDK-free GET of s3-get.ts: what it reads is what the SDK wrote, under any key a store uses;
// S3's answers become the errors the SDK would give (s3-store.ts maps them to ours); transient
// failures are retried, an abort ends a request at once, and it is used only where the SDK would
// sign with the same keys.
import crypto, { randomBytes } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { SignatureV4 } from '@smithy/signature-v4'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { storeFromUrl } from '../../src/store/open-store.js'
import { S3Getter, S3ResponseError, environmentCredentials } from '../../src/store/s3-get.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'

let server: S3Server
const saved = { ...process.env }

beforeAll(async () => {
  server = await startS3Server(['got'])
  Object.assign(process.env, server.env)
})

afterAll(async () => {
  process.env = saved
  await server.close()
})

const getter = (options: { endpoint?: string; key?: string } = {}) =>
  new S3Getter({
    endpoint: options.endpoint ?? server.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: options.key ?? server.env.AWS_ACCESS_KEY_ID!, secretAccessKey: server.env.AWS_SECRET_ACCESS_KEY! },
    maxAttempts: 3,
    connectionTimeout: 2_000,
    requestTimeout: 5_000,
  })

/** A server that answers the first `failures` requests with `status`, then 200 with `body`; counts them. */
async function flakyServer(failures: number, status: number, body: Buffer) {
  let requests = 0
  const s = http.createServer((req, res) => {
    requests++
    if (requests <= failures) {
      res.writeHead(status).end(`<Error><Code>SlowDown</Code><Message>wait</Message></Error>`)
      return
    }
    res.writeHead(200).end(body)
  })
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  return { endpoint: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, requests: () => requests, close: () => new Promise<void>((resolve) => s.close(() => resolve())) }
}

describe('S3Getter', () => {
  it('reads what the SDK wrote, byte for byte, under keys with characters that need encoding', async () => {
    const store = storeFromUrl('s3://got/p')
    await store.open({ create: true })
    const objects = new Map([
      ['chunks/ab/' + 'ab'.repeat(32), randomBytes(200_000)],
      ['refs/images/team/app:v1.2', Buffer.from('{}')],
      ['refs/odd/a b+c~d(e)*!\'é', Buffer.from('odd')],
      ['empty', Buffer.alloc(0)],
    ])
    for (const [key, data] of objects) await store.put(key, data)
    await store.close()
    const g = getter()
    try {
      for (const [key, data] of objects) expect((await g.get('got', `p/${key}`)).equals(data), key).toBe(true)
    } finally {
      g.destroy()
    }
  })

  it("S3's error answers keep their code and status: a missing key, a missing bucket, an unknown access key", async () => {
    const g = getter()
    const bad = getter({ key: 'NOT-A-KEY' })
    try {
      await expect(g.get('got', 'p/not-there')).rejects.toMatchObject({ name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } })
      await expect(g.get('no-such-bucket', 'p/config')).rejects.toMatchObject({ name: 'NoSuchBucket', $metadata: { httpStatusCode: 404 } })
      const refused = await bad.get('got', 'p/empty').catch((err: unknown) => err)
      expect(refused).toBeInstanceOf(S3ResponseError)
      expect((refused as S3ResponseError).$metadata.httpStatusCode).toBe(403)
    } finally {
      g.destroy()
      bad.destroy()
    }
  })

  it('retries throttling and server errors up to its attempts, then gives the last answer', async () => {
    const body = randomBytes(1000)
    const twice = await flakyServer(2, 503, body)
    const always = await flakyServer(100, 500, body)
    const g = getter({ endpoint: twice.endpoint })
    const h = getter({ endpoint: always.endpoint })
    try {
      expect((await g.get('b', 'k')).equals(body)).toBe(true)
      expect(twice.requests()).toBe(3)
      await expect(h.get('b', 'k')).rejects.toMatchObject({ name: 'SlowDown', $metadata: { httpStatusCode: 500 } })
      expect(always.requests()).toBe(3)
    } finally {
      g.destroy()
      h.destroy()
      await twice.close()
      await always.close()
    }
  })

  it('an abort ends a request that gets no answer at once, with the signal\'s reason', async () => {
    const silent = http.createServer(() => {}) // never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const g = getter({ endpoint: `http://127.0.0.1:${(silent.address() as AddressInfo).port}` })
    try {
      const controller = new AbortController()
      const reading = g.get('b', 'k', controller.signal)
      const started = Date.now()
      controller.abort(new Error('given up'))
      await expect(reading).rejects.toThrow('given up')
      expect(Date.now() - started).toBeLessThan(1_000)
    } finally {
      g.destroy()
      silent.closeAllConnections()
      await new Promise<void>((resolve) => silent.close(() => resolve()))
    }
  })

  it('an endpoint nobody listens on: the network error, after its retries', async () => {
    const g = getter({ endpoint: 'http://127.0.0.1:9' })
    try {
      await expect(g.get('b', 'k')).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    } finally {
      g.destroy()
    }
  })
})

/** node:crypto as the hash the SDK's signer takes (a constructor, HMAC when given a secret). */
class Sha256 {
  private readonly h: crypto.Hash | crypto.Hmac
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    if (secret === undefined) this.h = crypto.createHash('sha256')
    else if (typeof secret === 'string') this.h = crypto.createHmac('sha256', secret)
    else this.h = crypto.createHmac('sha256', ArrayBuffer.isView(secret) ? Buffer.from(secret.buffer, secret.byteOffset, secret.byteLength) : Buffer.from(secret))
  }

  update(data: string | Uint8Array): void {
    this.h.update(data)
  }

  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.h.digest())
  }
}

describe("the signature: the SDK's own signer (s3rver does not check SigV4 signatures) makes the same", () => {
  for (const sessionToken of [undefined, 'the-session-token']) {
    it(`for keys with and without encoding${sessionToken ? ', with a session token' : ''}, on an endpoint with a path and a port`, async () => {
      const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', ...(sessionToken ? { sessionToken } : {}) }
      const g = new S3Getter({ endpoint: 'https://s3.example.test:9443/base/', region: 'eu-central-1', credentials, maxAttempts: 1, connectionTimeout: 1_000, requestTimeout: 1_000 })
      const sdk = new SignatureV4({ service: 's3', region: 'eu-central-1', credentials, sha256: Sha256, uriEscapePath: false })
      const now = new Date('2026-12-07T18:30:15.123Z')
      for (const key of ['p/chunks/ab/' + 'ab'.repeat(32), 'p/refs/images/team/app:v1.2', 'p/refs/odd/a b+c~d(e)*!\'é']) {
        const path = g.pathOf('bucket.name', key)
        const ours = g.signedHeaders(path, now)
        const request = { method: 'GET', protocol: 'https:', hostname: 's3.example.test', port: 9443, path, query: {}, headers: { host: 's3.example.test:9443', 'x-amz-content-sha256': ours['x-amz-content-sha256']! } }
        const signed = await sdk.sign(request, { signingDate: now })
        expect(ours.authorization, key).toBe(signed.headers.authorization)
        expect(ours['x-amz-date']).toBe(signed.headers['x-amz-date'])
        expect(ours['x-amz-security-token']).toBe(signed.headers['x-amz-security-token'])
      }
      g.destroy()
    })
  }
})

describe('environmentCredentials: only the keys the SDK chain would take first', () => {
  it('both keys, and the session token when there is one', () => {
    expect(environmentCredentials({ AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 's' })).toEqual({ accessKeyId: 'a', secretAccessKey: 's' })
    expect(environmentCredentials({ AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 's', AWS_SESSION_TOKEN: 't' })).toEqual({ accessKeyId: 'a', secretAccessKey: 's', sessionToken: 't' })
  })

  it('none with a key missing, or with AWS_PROFILE (the chain then skips the environment)', () => {
    expect(environmentCredentials({ AWS_ACCESS_KEY_ID: 'a' })).toBeNull()
    expect(environmentCredentials({ AWS_SECRET_ACCESS_KEY: 's' })).toBeNull()
    expect(environmentCredentials({ AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 's', AWS_PROFILE: 'p' })).toBeNull()
  })
})
