import { readFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeEdgeTree, manifest, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'

let server: S3Server
beforeAll(async () => {
  server = await startS3Server(['images'])
})
afterAll(async () => {
  await server.close()
})

describe('push, pull, verify and revisions against an S3 server on loopback', () => {
  it('round-trips the edge-case tree byte for byte through s3://', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    makeEdgeTree(src)
    // the endpoint given as an option, credentials from the standard environment variables
    const env = { ...server.env, AWS_ENDPOINT_URL: '' }
    const store = ['--store', 's3://images/team/base', '--s3-endpoint', server.endpoint]
    const id = (await snapdirOk(['push', ...store, src], { env })).trim()
    expect((await snapdirOk(['id', src])).trim()).toBe(id)
    await snapdirOk(['pull', ...store, '--id', id, path.join(t, 'out')], { env })
    expect(manifest(path.join(t, 'out'))).toBe(manifest(src))
    expect(await snapdirOk(['verify', ...store, '--id', id], { env })).toMatch(/ 0 damaged/)
    const revs = (await snapdirOk(['revisions', ...store], { env })).trim().split('\n').map((l) => JSON.parse(l) as { id: string })
    expect(revs.map((r) => r.id)).toEqual([id])
  })

  it('wrong credentials: exit 1 with one line naming the store', async () => {
    const env = { ...server.env, AWS_ACCESS_KEY_ID: 'WRONG', AWS_SECRET_ACCESS_KEY: 'WRONG' }
    const r = await snapdir(['revisions', '--store', 's3://images/team/base'], { env })
    expect(r.status).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/^snapdir: store s3:\/\/images\/team\/base: cannot open: .*\(HTTP 403: access denied, check the credentials for this store\)/)
  })

  it('an endpoint nobody listens on: exit 1 naming the store, in bounded time', async () => {
    const started = Date.now()
    const r = await snapdir(['revisions', '--store', 's3://images/x', '--s3-endpoint', 'http://127.0.0.1:9'], { env: server.env })
    expect(r.status).toBe(1)
    expect(r.stderr.trim()).toMatch(/^snapdir: store s3:\/\/images\/x: cannot open: .*ECONNREFUSED/)
    expect(Date.now() - started).toBeLessThan(30_000)
  })

  it('a bucket that does not exist: pull exits 1 naming the store', async () => {
    const t = tempDir()
    const r = await snapdir(['pull', '--store', 's3://no-such-bucket/x', '--id', 'a'.repeat(64), path.join(t, 'out')], { env: server.env })
    expect(r.status).toBe(1)
    expect(r.stderr.trim()).toMatch(/^snapdir: store s3:\/\/no-such-bucket\/x: bucket 'no-such-bucket' does not exist$/)
  })

  it('a bucket that does not exist: mount (which reads beside the open) exits 1 naming the store, nothing mounted', async () => {
    const mnt = tempDir()
    const r = await snapdir(['mount', '--store', 's3://no-such-bucket/x', '--id', 'a'.repeat(64), '--no-cache', '--view', 'rootfs', mnt], { env: server.env })
    expect(r.status).toBe(1)
    expect(r.stderr.trim()).toMatch(/^snapdir: store s3:\/\/no-such-bucket\/x: bucket 'no-such-bucket' does not exist$/)
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(` ${mnt} `)
  })
})
