// A real S3 server on loopback for the tests: s3rver speaks the S3 HTTP API and keeps objects in a
// temporary directory. Credentials are s3rver's fixed test pair.
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import S3rver from 's3rver'

export interface S3Server {
  endpoint: string
  /** environment for a snapdir process talking to it */
  env: Record<string, string>
  close(): Promise<void>
}

export async function startS3Server(buckets: string[] = []): Promise<S3Server> {
  const directory = mkdtempSync(path.join(os.tmpdir(), 'snapdir-s3rver-'))
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: buckets.map((name) => ({ name, configs: [] })),
  })
  const { port } = (await server.run()) as { port: number }
  const env = {
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL: `http://127.0.0.1:${port}`,
  }
  return {
    endpoint: env.AWS_ENDPOINT_URL,
    env,
    async close() {
      await server.close()
      rmSync(directory, { recursive: true, force: true })
    },
  }
}
