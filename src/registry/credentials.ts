// Where a registry's credentials come from, in docker's order: the ones given on the command line
// (`--creds USER:PASS`), else docker's config.json ($DOCKER_CONFIG/config.json, else
// ~/.docker/config.json): a `credHelpers` entry for the registry, else the `credsStore`, else the
// `auths` entry (base64 `user:pass` in `auth`, or `username`/`password`), else none (anonymous).
// Helpers are docker's credential-helper protocol: `docker-credential-NAME get`, the server on stdin,
// `{"Username","Secret"}` on stdout (https://github.com/docker/docker-credential-helpers).
import { spawn } from 'node:child_process'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { errnoText, isErrno, SnapdirError, UsageError } from '../util/errors.js'
import { DOCKER_HUB, DOCKER_HUB_API } from './reference.js'

export interface Credentials {
  username: string
  password: string
  /** an OAuth2 refresh token (docker's `identitytoken`), used instead of the password for bearer tokens */
  identityToken?: string
}

/** `USER:PASS` as --creds gives it (the password may hold ':'); `optionName` is named when it is wrong. */
export function parseCredentials(text: string, optionName = '--creds'): Credentials {
  const colon = text.indexOf(':')
  if (colon <= 0) throw new UsageError(`${optionName}: expected USER:PASSWORD, got ${colon === 0 ? 'no user name' : 'no password'}`)
  return { username: text.slice(0, colon), password: text.slice(colon + 1) }
}

/** The config.json that docker reads: in `dir` if given, else $DOCKER_CONFIG, else ~/.docker. */
export function dockerConfigPath(dir?: string): string {
  const base = dir ?? process.env.DOCKER_CONFIG ?? path.join(os.homedir(), '.docker')
  return base.endsWith('.json') ? base : path.join(base, 'config.json')
}

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>
  credHelpers?: Record<string, string>
  credsStore?: string
}

const HUB_KEYS = new Set([DOCKER_HUB, 'index.docker.io', DOCKER_HUB_API])
const HUB_SERVER = 'https://index.docker.io/v1/'

/** The host a config key names: keys may be `host`, `host:port`, or a URL (`https://index.docker.io/v1/`). */
function keyHost(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '').toLowerCase()
}

function sameRegistry(key: string, registry: string): boolean {
  const host = keyHost(key)
  return host === registry || (HUB_KEYS.has(host) && HUB_KEYS.has(registry))
}

/**
 * The credentials docker's config holds for `registry` (`host[:port]` as in the image reference), or
 * null: no config file, or nothing in it for this registry. A file that is not JSON, or a helper that
 * fails other than with "not found", is an error: silently going anonymous would hide it.
 */
export async function dockerConfigCredentials(registry: string, configDir?: string): Promise<Credentials | null> {
  const file = dockerConfigPath(configDir)
  let config: DockerConfig
  try {
    config = JSON.parse(await fs.readFile(file, 'utf8')) as DockerConfig
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null
    throw new SnapdirError('ERR_REGISTRY_AUTH', `cannot read docker's config ${file}: ${isErrno(err) ? errnoText(err) : (err as Error).message}`, { cause: err })
  }
  const helper = Object.entries(config.credHelpers ?? {}).find(([key]) => sameRegistry(key, registry))?.[1]
  if (helper) return helperCredentials(helper, registry)
  const entry = Object.entries(config.auths ?? {}).find(([key]) => sameRegistry(key, registry))?.[1]
  if (config.credsStore) {
    const fromStore = await helperCredentials(config.credsStore, registry)
    if (fromStore) return fromStore
  }
  if (!entry) return null
  if (entry.identitytoken) return { username: entry.username ?? '', password: '', identityToken: entry.identitytoken }
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon < 0) throw new SnapdirError('ERR_REGISTRY_AUTH', `docker's config ${file}: the auth entry for ${registry} is not base64 of user:password`)
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
  }
  if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password }
  return null
}

/** Asks `docker-credential-NAME get` for the registry's credentials; null when it has none. */
export async function helperCredentials(name: string, registry: string): Promise<Credentials | null> {
  const program = `docker-credential-${name}`
  const server = HUB_KEYS.has(registry) ? HUB_SERVER : registry
  const { status, stdout, stderr, error } = await run(program, ['get'], server)
  if (error) throw new SnapdirError('ERR_REGISTRY_AUTH', `credential helper ${program} for ${registry}: ${isErrno(error, 'ENOENT') ? 'not installed (not on PATH)' : error.message}`, { cause: error })
  if (status !== 0) {
    // the helpers' protocol: this message on stdout means "no credentials stored for this server"
    if (/credentials not found/i.test(stdout + stderr)) return null
    throw new SnapdirError('ERR_REGISTRY_AUTH', `credential helper ${program} for ${registry} exited ${status}: ${(stderr || stdout).trim()}`)
  }
  let answer: { Username?: unknown; Secret?: unknown }
  try {
    answer = JSON.parse(stdout) as typeof answer
  } catch {
    throw new SnapdirError('ERR_REGISTRY_AUTH', `credential helper ${program} for ${registry} answered no JSON`)
  }
  if (typeof answer.Username !== 'string' || typeof answer.Secret !== 'string') {
    throw new SnapdirError('ERR_REGISTRY_AUTH', `credential helper ${program} for ${registry} answered without Username and Secret`)
  }
  // "<token>" as the user name: the secret is an identity token (docker's convention)
  if (answer.Username === '<token>') return { username: '', password: '', identityToken: answer.Secret }
  return { username: answer.Username, password: answer.Secret }
}

function run(program: string, args: string[], input: string): Promise<{ status: number | null; stdout: string; stderr: string; error?: Error }> {
  return new Promise((resolve) => {
    const child = spawn(program, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s))
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    child.once('error', (error) => resolve({ status: null, stdout, stderr, error }))
    child.once('close', (status) => resolve({ status, stdout, stderr }))
    child.stdin.on('error', () => {})
    child.stdin.end(input)
  })
}
