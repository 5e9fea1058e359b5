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
  /** the directory s3rver keeps objects in */
  directory: string
  /** takes the server down, objects kept (a store that is down); start() brings it back */
  stop(): Promise<void>
  /** serves again on the same port, with the same objects */
  start(): Promise<void>
  close(): Promise<void>
}

export async function startS3Server(buckets: string[] = []): Promise<S3Server> {
  const directory = mkdtempSync(path.join(os.tmpdir(), 'snapdir-s3rver-'))
  const make = (port: number) =>
    new S3rver({
      address: '127.0.0.1',
      port,
      silent: true,
      directory,
      configureBuckets: buckets.map((name) => ({ name, configs: [] })),
    })
  let server: S3rver | null = make(0)
  const { port } = (await server.run()) as { port: number }
  const env = {
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL: `http://127.0.0.1:${port}`,
  }
  const stop = async () => {
    if (server === null) return
    const closed = server.close()
    // connections kept alive by clients go too: the store is down, not just refusing new ones
    ;(server as unknown as { httpServer: import('node:http').Server }).httpServer.closeAllConnections()
    await closed
    server = null
  }
  return {
    endpoint: env.AWS_ENDPOINT_URL,
    env,
    directory,
    stop,
    async start() {
      if (server !== null) return
      const next = make(port)
      await next.run()
      server = next
    },
    async close() {
      await stop()
      rmSync(directory, { recursive: true, force: true })
    },
  }
}
