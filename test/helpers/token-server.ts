// A token server for the registry tests' token auth: test/tools/token-server.mjs in a process of its
// own (so that a test may run skopeo or the CLI synchronously against a token-auth registry), signing
// with a fresh self-signed certificate that the registry trusts as its rootcertbundle.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const SCRIPT = fileURLToPath(new URL('../tools/token-server.mjs', import.meta.url))

export interface TokenServer {
  /** the realm the registry names in its challenges */
  realm: string
  service: string
  issuer: string
  /** PEM of the signing certificate (the registry's rootcertbundle) */
  certFile: string
  /** the scope sets of the tokens issued so far (each sorted, space-separated), and the requests refused for wrong credentials */
  stats(): Promise<{ issued: string[]; refused: number }>
  close(): Promise<void>
}

export interface TokenServerOptions {
  users: Record<string, string>
  service?: string
  issuer?: string
  /** token lifetime in seconds (default 300) */
  expiresIn?: number
  /** repositories on which a user is granted nothing, whatever is asked */
  deny?: Array<{ user: string; repository: string }>
}

export async function startTokenServer(options: TokenServerOptions): Promise<TokenServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'snapdir-token-'))
  const keyFile = path.join(dir, 'key.pem')
  const certFile = path.join(dir, 'cert.pem')
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=snapdir test token issuer'], { encoding: 'utf8' })
  if (made.status !== 0) throw new Error(`openssl req failed: ${made.stderr}`)
  const service = options.service ?? 'snapdir-test-registry'
  const issuer = options.issuer ?? 'snapdir-test-issuer'
  const config = { ...options, service, issuer, keyFile, certFile }
  const child = spawn(process.execPath, [SCRIPT, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const port = await new Promise<number>((resolve, reject) => {
    let text = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      text += s
      const m = /listening (\d+)/.exec(text)
      if (m) resolve(Number(m[1]))
    })
    child.once('exit', (code) => reject(new Error(`the token server exited ${code} before it listened`)))
  })
  const base = `http://127.0.0.1:${port}`
  return {
    realm: `${base}/token`,
    service,
    issuer,
    certFile,
    async stats() {
      const res = await fetch(`${base}/stats`)
      return (await res.json()) as { issued: string[]; refused: number }
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        await exited
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
