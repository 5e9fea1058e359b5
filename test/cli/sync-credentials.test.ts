// A sync between two providers, each with its own endpoint and keys (two s3rver instances, which check
// the signature): --from-profile and --to-profile pick each side's keys from the AWS credentials file,
// gs:// is pointed at a test endpoint like s3://, and keys a side refuses are named as that side's.
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { bytes, manifest, snapdir, snapdirOk, tempDir, type RunResult } from '../helpers/cli.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'

let a: S3Server
let b: S3Server
let env: NodeJS.ProcessEnv
beforeAll(async () => {
  a = await startS3Server()
  b = await startS3Server()
  const dir = tempDir('snapdir-aws-')
  const credentials = path.join(dir, 'credentials')
  // s3rver accepts only its own pair; 'wrong' is signed with keys it does not know
  writeFileSync(credentials, '[right]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n[wrong]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n')
  writeFileSync(path.join(dir, 'config'), '')
  // no keys, endpoint or profile in the environment: each side gets its own on the command line
  env = {
    AWS_SHARED_CREDENTIALS_FILE: credentials,
    AWS_CONFIG_FILE: path.join(dir, 'config'),
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: '',
    AWS_SECRET_ACCESS_KEY: '',
    AWS_PROFILE: '',
    AWS_ENDPOINT_URL: '',
  }
})
afterAll(async () => {
  await a.close()
  await b.close()
})

const fromA = (url: string, profile: string) => ['--from', url, '--from-s3-endpoint', a.endpoint, '--from-profile', profile]
const toA = (url: string, profile: string) => ['--to', url, '--to-s3-endpoint', a.endpoint, '--to-profile', profile]
const toB = (url: string, profile: string) => ['--to', url, '--to-s3-endpoint', b.endpoint, '--to-profile', profile]

function expectRefused(r: RunResult, side: string): void {
  expect(r.status, r.stderr).toBe(1)
  const lines = r.stderr.split('\n').filter(Boolean)
  expect(lines, r.stderr).toHaveLength(1)
  expect(lines[0]).toContain(side)
  expect(lines[0]).toMatch(/HTTP 403: access denied, check the credentials for this store/)
}

describe('sync between providers with a profile each', () => {
  test('file -> gs:// on one endpoint -> s3:// on another, each side with its own keys; refused keys name their side', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    mkdirSync(src)
    writeFileSync(path.join(src, 'a.bin'), bytes('creds', 400_000))
    writeFileSync(path.join(src, 'b.txt'), 'b\n')
    const local = path.join(t, 'local')
    const id = (await snapdirOk(['push', '--store', local, src])).trim()

    // gs:// at a test endpoint: the same S3 API as s3://
    await snapdirOk(['sync', '--id', id, '--from', local, ...toA('gs://provider-a/team', 'right')], { env })

    // the destination's keys refused: the line names the destination
    const wrongTo = await snapdir(['sync', '--id', id, ...fromA('gs://provider-a/team', 'right'), ...toB('s3://provider-b/mirror', 'wrong')], { env })
    expectRefused(wrongTo, 'destination store s3://provider-b/mirror')
    // the source's: the source
    const wrongFrom = await snapdir(['sync', '--id', id, ...fromA('gs://provider-a/team', 'wrong'), ...toB('s3://provider-b/mirror', 'right')], { env })
    expectRefused(wrongFrom, 'source store gs://provider-a/team')

    // each side its own: the snapshot arrives whole. Keys in the environment too (wrong ones): the
    // profiles are used, and nothing but the result is printed (no SDK warning on stderr)
    const good = await snapdir(['sync', '--id', id, ...fromA('gs://provider-a/team', 'right'), ...toB('s3://provider-b/mirror', 'right')], {
      env: { ...env, AWS_ACCESS_KEY_ID: 'WRONG', AWS_SECRET_ACCESS_KEY: 'WRONG' },
    })
    expect(good.status, good.stderr).toBe(0)
    expect(good.stderr).toBe('')
    const out = path.join(t, 'out')
    await snapdirOk(['pull', '--store', 's3://provider-b/mirror', '--s3-endpoint', b.endpoint, '--id', id, out], { env: { ...env, AWS_PROFILE: 'right' } })
    expect(manifest(out)).toBe(manifest(src))
  })
})
