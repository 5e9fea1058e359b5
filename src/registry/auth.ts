// Authentication to one registry, learned from its first 401 as docker does: the WWW-Authenticate
// challenge says Basic (send the credentials) or Bearer (fetch a token from the realm for the
// service and the scopes the request needs, then send it). After the first challenge every request
// carries its authorization up front, so a request costs one round trip, not two.
// Bearer tokens are cached per set of scopes until shortly before they expire.
// Specs: https://distribution.github.io/distribution/spec/auth/token/ and .../auth/oauth/ (refresh
// tokens), RFC 9110 11.6.1 (the challenge syntax).
import { SnapdirError } from '../util/errors.js'
import type { Credentials } from './credentials.js'
import { registryError, type RequestSite } from './registry-error.js'
import { discard, readBody, type Transport } from './transport.js'

export interface Challenge {
  scheme: string
  params: Record<string, string>
}

/**
 * The challenges of a WWW-Authenticate header: `Bearer realm="…",service="…",scope="…"`, `Basic
 * realm="…"`, several separated by commas. Scheme names are lowercased; quoted values unescaped.
 */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const text = Array.isArray(header) ? header.join(', ') : (header ?? '')
  const out: Challenge[] = []
  const re = /\s*,?\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*))?/gy
  let current: Challenge | null = null
  for (let m = re.exec(text); m !== null && m[0] !== ''; m = re.exec(text)) {
    const [, name, value] = m
    if (value === undefined) {
      current = { scheme: name!.toLowerCase(), params: {} }
      out.push(current)
      // a scheme may be followed by its first parameter after a space, not a comma
      continue
    }
    if (current) current.params[name!.toLowerCase()] = value.startsWith('"') ? value.slice(1, -1).replace(/\\(.)/g, '$1') : value
  }
  return out
}

/** `repository:NAME:ACTIONS` scopes, as the token spec names them. */
export function repositoryScope(repository: string, actions: 'pull' | 'pull,push' | 'delete'): string {
  return `repository:${repository}:${actions}`
}

interface CachedToken {
  token: string
  /** performance.now() after which a fresh one is fetched */
  renewAt: number
}

export interface AuthenticatorOptions {
  registry: string
  transport: Transport
  /** resolved once, when a challenge first asks for credentials */
  credentials: () => Promise<Credentials | null>
}

/** The tokens' shortest lifetime: the spec says to assume 60 s when a token server says less or nothing. */
const MIN_TOKEN_SECONDS = 60

export class Authenticator {
  private scheme: 'none' | 'basic' | 'bearer' = 'none'
  private bearer: { realm: URL; service?: string } | null = null
  private creds: Promise<Credentials | null> | null = null
  private readonly tokens = new Map<string, CachedToken>()
  private readonly pending = new Map<string, Promise<string>>()

  constructor(private readonly options: AuthenticatorOptions) {}

  /** The Authorization header for a request needing `scopes`, or undefined while none is known to be needed. */
  async authorization(scopes: string[], site: RequestSite, signal?: AbortSignal): Promise<string | undefined> {
    if (this.scheme === 'basic') {
      const creds = await this.credentials()
      return creds ? basic(creds) : undefined
    }
    if (this.scheme === 'bearer') return `Bearer ${await this.token(scopes, site, signal)}`
    return undefined
  }

  /**
   * A request got 401 with this WWW-Authenticate: learns the scheme. True when sending the request
   * again with a new authorization can succeed (the first challenge, or a cached token the registry
   * no longer takes); false when what was sent was all there is.
   */
  async challenged(header: string | string[] | undefined, scopes: string[], sent: string | undefined, site: RequestSite): Promise<boolean> {
    const challenges = parseChallenges(header)
    const bearer = challenges.find((c) => c.scheme === 'bearer')
    const basicChallenge = challenges.find((c) => c.scheme === 'basic')
    if (bearer) {
      const realm = bearer.params.realm
      if (!realm) throw registryError('ERR_REGISTRY_AUTH', site, 'the registry asks for a bearer token but names no realm to get it from', { status: 401 })
      let url: URL
      try {
        url = new URL(realm)
      } catch {
        throw registryError('ERR_REGISTRY_AUTH', site, `the registry's token realm ${JSON.stringify(realm)} is not a URL`, { status: 401 })
      }
      const changed = this.scheme !== 'bearer' || this.bearer?.realm.href !== url.href
      this.scheme = 'bearer'
      this.bearer = { realm: url, ...(bearer.params.service === undefined ? {} : { service: bearer.params.service }) }
      const key = scopeKey(scopes)
      if (changed) this.tokens.clear()
      const hadToken = sent?.startsWith('Bearer ') === true
      const cached = this.tokens.get(key)
      this.tokens.delete(key)
      // a token we sent that came from the cache may have been revoked or expired early: one fresh try
      return !hadToken || changed || cached !== undefined
    }
    if (basicChallenge) {
      const first = this.scheme !== 'basic'
      this.scheme = 'basic'
      return first && sent === undefined && (await this.credentials()) !== null
    }
    return false
  }

  /** Whether credentials are at hand (to word a 401: "authentication failed" vs "needs credentials"). */
  async hasCredentials(): Promise<boolean> {
    return (await this.credentials()) !== null
  }

  private credentials(): Promise<Credentials | null> {
    this.creds ??= this.options.credentials()
    return this.creds
  }

  private async token(scopes: string[], site: RequestSite, signal?: AbortSignal): Promise<string> {
    const key = scopeKey(scopes)
    const cached = this.tokens.get(key)
    if (cached && performance.now() < cached.renewAt) return cached.token
    // concurrent requests for the same scopes share one token request
    let pending = this.pending.get(key)
    if (!pending) {
      pending = this.fetchToken(scopes, site, signal).finally(() => this.pending.delete(key))
      this.pending.set(key, pending)
    }
    return pending
  }

  private async fetchToken(scopes: string[], site: RequestSite, signal?: AbortSignal): Promise<string> {
    const { realm, service } = this.bearer!
    const creds = await this.credentials()
    const tokenSite: RequestSite = { ...site, action: `${site.action}: get a token from ${realm.origin}${realm.pathname}` }
    const url = new URL(realm)
    if (service !== undefined) url.searchParams.set('service', service)
    for (const s of scopes) url.searchParams.append('scope', s)
    let res
    if (creds?.identityToken) {
      // OAuth2 with a refresh token (docker's identity token): POST a form to the same realm
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'snapdir', scope: scopes.join(' ') })
      if (service !== undefined) form.set('service', service)
      res = await this.options.transport.request({
        method: 'POST',
        url: realm,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: Buffer.from(form.toString()),
        site: tokenSite,
        ...(signal === undefined ? {} : { signal }),
      })
    } else {
      url.searchParams.set('client_id', 'snapdir')
      res = await this.options.transport.request({
        method: 'GET',
        url,
        headers: creds ? { authorization: basic(creds) } : {},
        site: tokenSite,
        ...(signal === undefined ? {} : { signal }),
      })
    }
    if (res.status === 401 || res.status === 403) {
      await discard(res)
      throw registryError('ERR_REGISTRY_AUTH', site, `${res.status === 401 ? 'authentication failed' : 'denied'}: the token server ${realm.origin} answered ${res.status}${creds ? ` for user ${creds.username || '(identity token)'}` : ' to an anonymous request'}`, { status: res.status })
    }
    if (res.status !== 200) {
      await discard(res)
      throw registryError('ERR_REGISTRY_AUTH', site, `the token server ${realm.origin} answered ${res.status}`, { status: res.status })
    }
    const body = await readBody(res, 1 << 20, tokenSite, 'the token answer')
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown }
    try {
      doc = JSON.parse(body.toString('utf8')) as typeof doc
    } catch (err) {
      throw new SnapdirError('ERR_REGISTRY_AUTH', `${tokenSite.action}: the answer is not JSON`, { cause: err })
    }
    const token = typeof doc.token === 'string' && doc.token !== '' ? doc.token : typeof doc.access_token === 'string' ? doc.access_token : ''
    if (token === '') throw registryError('ERR_REGISTRY_AUTH', site, `the token server ${realm.origin} answered without a token`)
    const seconds = Math.max(MIN_TOKEN_SECONDS, typeof doc.expires_in === 'number' ? doc.expires_in : 0)
    // renew a little early (a tenth of its life, at most 30 s): a request must not carry a token that expires on the way
    const renewAt = performance.now() + seconds * 1000 - Math.min(30_000, seconds * 100)
    this.tokens.set(scopeKey(scopes), { token, renewAt })
    return token
  }
}

function basic(creds: Credentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`
}

function scopeKey(scopes: string[]): string {
  return [...scopes].sort().join(' ')
}
