// Our OCI Distribution client: one RegistryClient per registry host, speaking the distribution spec
// (https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md) over transport.ts, with
// auth.ts answering the registry's challenges. Everything read is checked against its digest;
// every failure is one SnapdirError naming the registry, the repository and what failed.
import type { Readable } from 'node:stream'
import { SnapdirError } from '../util/errors.js'
import { Authenticator, repositoryScope } from './auth.js'
import { dockerConfigCredentials, parseCredentials, type Credentials } from './credentials.js'
import { DigestCheck, digestAlgorithm, digestOf } from './digest-check.js'
import { bareMediaType, MANIFEST_MEDIA_TYPES, MAX_MANIFEST_BYTES } from './media-types.js'
import { apiHost, isDigest, isLoopbackRegistry } from './reference.js'
import { describeStatus, parseErrorBody, registryError, type RequestSite } from './registry-error.js'
import { discard, header, notTls, readBody, retryableError, Transport, unreachable, type HttpMethod, type HttpResponse, type TransportOptions } from './transport.js'

export interface RegistryClientOptions extends TransportOptions {
  /** `USER:PASS` (what --creds gives) or credentials; without them docker's config.json is asked, else anonymous */
  creds?: string | Credentials
  /** the directory holding docker's config.json (default $DOCKER_CONFIG, else ~/.docker) */
  dockerConfig?: string
  /** plain HTTP instead of HTTPS (default: only for loopback registries, as docker does) */
  plainHttp?: boolean
  /**
   * HTTPS first, and plain HTTP once the registry shows it does not speak TLS: for a loopback
   * registry (which would get plain HTTP alone otherwise), or any registry when tlsVerify is false
   * (as skopeo's --tls-verify=false); plainHttp, if given, decides instead
   */
  httpFallback?: boolean
  /** the size of a PATCH when an upload goes in chunks (default 8 MiB) */
  chunkSize?: number
}

export interface Manifest {
  bytes: Buffer
  mediaType: string
  digest: string
}

export interface ManifestHead {
  digest: string
  mediaType: string
  size: number
}

/** An OCI descriptor as a referrers list gives it. */
export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  annotations?: Record<string, string>
}

interface Call {
  method: HttpMethod
  /** a path under the registry (`/v2/…`) or a full URL (an upload's Location) */
  url: string | URL
  scopes: string[]
  site: RequestSite
  headers?: Record<string, string>
  body?: Buffer | (() => Readable)
  followRedirects?: boolean
  retry?: boolean
  signal?: AbortSignal
}

export interface CallOptions {
  signal?: AbortSignal
}

const UPLOAD_REFUSED = new Set([405, 411, 413, 415, 501])

export class RegistryClient {
  /** `host[:port]` as in image references */
  readonly registry: string
  /** where the API is: `https://host` or, for loopback registries, `http://host` (with httpFallback: whichever answers) */
  base: URL
  private readonly httpFallback: boolean
  private readonly transport: Transport
  private readonly auth: Authenticator
  private readonly chunkSize: number
  /**
   * Whether asking the referrers API is worth a request: false once the registry answered 404 (the
   * distribution spec has a registry without the API answer so, and one with it answer 200 for any
   * digest), so the next image of the run goes straight to the tag schema; while the first ask is
   * out, the others wait for its answer rather than asking too.
   */
  private referrersApi: Promise<boolean> | null = null

  constructor(registry: string, options: RegistryClientOptions = {}) {
    this.registry = registry
    const loopback = isLoopbackRegistry(registry)
    // never from verified HTTPS down to plain HTTP for a registry that would get HTTPS anyway
    this.httpFallback = options.plainHttp === undefined && options.httpFallback === true && (loopback || options.tlsVerify === false)
    const plain = options.plainHttp ?? (this.httpFallback ? false : loopback)
    this.base = new URL(`${plain ? 'http' : 'https'}://${apiHost(registry)}`)
    this.transport = new Transport(options)
    this.chunkSize = options.chunkSize ?? 8 * 1024 * 1024
    if (!Number.isInteger(this.chunkSize) || this.chunkSize < 1) throw new RangeError(`chunkSize must be a positive integer, got ${options.chunkSize}`)
    const given = typeof options.creds === 'string' ? parseCredentials(options.creds) : options.creds
    this.auth = new Authenticator({
      registry,
      transport: this.transport,
      credentials: async () => given ?? (await dockerConfigCredentials(registry, options.dockerConfig)),
    })
  }

  /**
   * The manifest `reference` (a tag or a digest) of `repo`, of one of the `accept`ed media types (by
   * default OCI and Docker manifests, indexes and manifest lists). Checked against the digest asked
   * for, else against the registry's Docker-Content-Digest; larger than 4 MiB or of another media
   * type is an error.
   */
  async getManifest(repo: string, reference: string, accept: readonly string[] = MANIFEST_MEDIA_TYPES, options: CallOptions = {}): Promise<Manifest> {
    const site = this.site(repo, `get manifest ${reference}`)
    const res = await this.call({
      method: 'GET',
      url: `/v2/${repo}/manifests/${reference}`,
      headers: { accept: accept.join(', ') },
      scopes: [repositoryScope(repo, 'pull')],
      site,
      ...signalOf(options),
    })
    if (res.status !== 200) throw await this.failure(res, site)
    const length = Number(header(res.headers, 'content-length') ?? NaN)
    if (length > MAX_MANIFEST_BYTES) {
      await discard(res)
      throw registryError('ERR_REGISTRY', site, `the manifest is ${length} bytes, more than the ${MAX_MANIFEST_BYTES} snapdir reads`)
    }
    const bytes = await readBody(res, MAX_MANIFEST_BYTES, site, 'the manifest')
    const mediaType = manifestMediaType(header(res.headers, 'content-type'), bytes)
    if (!accept.includes(mediaType)) {
      throw registryError('ERR_REGISTRY', site, `the manifest has media type ${mediaType || '(none)'}, which snapdir does not read (it reads ${accept.join(', ')})`)
    }
    const digest = checkManifestDigest(bytes, reference, header(res.headers, 'docker-content-digest'), site)
    return { bytes, mediaType, digest }
  }

  /** The digest, media type and size of a manifest without its bytes, or null when there is none (404). */
  async headManifest(repo: string, reference: string, options: CallOptions = {}): Promise<ManifestHead | null> {
    const site = this.site(repo, `check manifest ${reference}`)
    const res = await this.call({
      method: 'HEAD',
      url: `/v2/${repo}/manifests/${reference}`,
      headers: { accept: MANIFEST_MEDIA_TYPES.join(', ') },
      scopes: [repositoryScope(repo, 'pull')],
      site,
      ...signalOf(options),
    })
    if (res.status !== 200 && res.status !== 404) throw await this.failure(res, site)
    await discard(res)
    if (res.status === 404) return null
    const digest = header(res.headers, 'docker-content-digest')
    const size = Number(header(res.headers, 'content-length') ?? NaN)
    const mediaType = bareMediaType(header(res.headers, 'content-type'))
    if (digest === undefined || digestAlgorithm(digest) === null || !Number.isSafeInteger(size) || !MANIFEST_MEDIA_TYPES.includes(mediaType)) {
      // a registry that does not say (the spec makes Docker-Content-Digest optional): read it
      const m = await this.getManifest(repo, reference, MANIFEST_MEDIA_TYPES, options)
      return { digest: m.digest, mediaType: m.mediaType, size: m.bytes.length }
    }
    if (isDigest(reference) && digest !== reference) {
      throw registryError('ERR_REGISTRY_CORRUPT', site, `the registry says its digest is ${digest}`)
    }
    return { digest, mediaType, size }
  }

  /**
   * The blob's bytes as a stream, from the registry or wherever it redirects to. The stream checks the
   * bytes against `digest` (and `size` if given) as they pass and fails at the end, naming the blob,
   * when they do not match: a consumer must not trust what it read until the stream has ended.
   * A connection that breaks mid-blob (a reset, a stall) is picked up where it broke with a Range
   * request, up to `retries` times, so a large layer is not read again from its start.
   */
  async getBlob(repo: string, digest: string, options: CallOptions & { size?: number } = {}): Promise<Readable> {
    const site = this.site(repo, `get blob ${digest}`)
    if (digestAlgorithm(digest) === null) throw registryError('ERR_REGISTRY', site, 'not a digest snapdir can check (sha256: or sha512: and hex)')
    const request = (range?: number): Promise<HttpResponse> =>
      this.call({
        method: 'GET',
        url: `/v2/${repo}/blobs/${digest}`,
        scopes: [repositoryScope(repo, 'pull')],
        site,
        followRedirects: true,
        ...(range === undefined ? {} : { headers: { range: `bytes=${range}-` } }),
        ...signalOf(options),
      })
    const res = await request()
    if (res.status !== 200) throw await this.failure(res, site)
    const length = Number(header(res.headers, 'content-length') ?? NaN)
    if (options.size !== undefined && Number.isSafeInteger(length) && length !== options.size) {
      await discard(res)
      throw registryError('ERR_REGISTRY_CORRUPT', site, `expected ${options.size} bytes, the registry sends ${length}`)
    }
    const check = new DigestCheck(digest, options.size, (problem) => registryError('ERR_REGISTRY_CORRUPT', site, problem))
    this.feedResuming(res, request, site, check, options.signal)
    return check
  }

  /**
   * Feeds a blob answer's bytes into `check`; where the connection breaks, the rest from a Range
   * request (or a whole answer, skipped ahead). Event-driven, as pipe() is: a promise per piece (an
   * async iterator, Readable.from) cost a 60 MB layer ~50 ms of CPU more.
   */
  private feedResuming(first: HttpResponse, request: (range: number) => Promise<HttpResponse>, site: RequestSite, check: DigestCheck, signal?: AbortSignal): void {
    let current = first
    let received = 0
    let attempt = 0
    // the consumer gave up (an upload that failed): the answer is not read further
    check.once('close', () => {
      if (!current.body.readableEnded) current.body.destroy()
    })
    const feed = (res: HttpResponse, skip: number): void => {
      current = res
      const body = res.body
      let left = skip
      const onData = (part: Buffer): void => {
        const fresh = left > 0 ? part.subarray(Math.min(left, part.length)) : part
        left -= part.length - fresh.length
        if (fresh.length === 0) return
        received += fresh.length
        if (!check.write(fresh)) {
          body.pause()
          check.once('drain', () => body.resume())
        }
      }
      body.on('data', onData)
      body.once('end', () => check.end())
      body.once('error', (err) => {
        body.off('data', onData)
        resume(err).catch((e: unknown) => check.destroy(e instanceof Error ? e : new Error(String(e))))
      })
    }
    const resume = async (err: unknown): Promise<void> => {
      if (check.destroyed) return
      if (err instanceof SnapdirError) throw err
      if (attempt >= this.transport.retries || !retryableError(err) || signal?.aborted) throw unreachable(site, current.url, err, attempt)
      await this.transport.backoff(attempt++, signal)
      const res = await request(received)
      if (res.status === 206) {
        const range = /^bytes (\d+)-/.exec(header(res.headers, 'content-range') ?? '')
        if (!range || Number(range[1]) !== received) {
          await discard(res)
          throw registryError('ERR_REGISTRY', site, `asked for the rest from byte ${received}, the registry sent range ${header(res.headers, 'content-range') ?? '(none)'}`)
        }
        feed(res, 0)
      } else if (res.status === 200) {
        feed(res, received) // no ranges here: the whole blob again, the part already passed on skipped
      } else {
        throw await this.failure(res, site)
      }
    }
    feed(first, 0)
  }

  /** Whether the repository holds the blob (HEAD; 404 is false). */
  async hasBlob(repo: string, digest: string, options: CallOptions = {}): Promise<boolean> {
    const site = this.site(repo, `check blob ${digest}`)
    const res = await this.call({ method: 'HEAD', url: `/v2/${repo}/blobs/${digest}`, scopes: [repositoryScope(repo, 'pull')], site, followRedirects: true, ...signalOf(options) })
    if (res.status !== 200 && res.status !== 404) throw await this.failure(res, site)
    await discard(res)
    return res.status === 200
  }

  /**
   * Cross-repository mount: asks the registry to link `digest` of `fromRepo` into `repo` without
   * sending it. True when mounted (201); false when the registry did not (202: it lacks the blob
   * there or does not mount, after cancelling the upload it opened; 401/403: we may not read
   * `fromRepo`). A false is the caller's cue to upload the blob.
   */
  async mountBlob(repo: string, fromRepo: string, digest: string, options: CallOptions = {}): Promise<boolean> {
    const site = this.site(repo, `mount blob ${digest} from ${fromRepo}`)
    const query = new URLSearchParams({ mount: digest, from: fromRepo })
    const scopes = [repositoryScope(repo, 'pull,push'), repositoryScope(fromRepo, 'pull')]
    const res = await this.call({ method: 'POST', url: `/v2/${repo}/blobs/uploads/?${query.toString()}`, scopes, site, body: Buffer.alloc(0), ...signalOf(options) })
    // 401/403: the credentials do not cover reading `fromRepo` (docker-registry refuses the whole
    // request then, where others answer 202): no mount, and the upload that follows says whether
    // `repo` itself may be written
    if (res.status === 401 || res.status === 403) {
      await discard(res)
      return false
    }
    if (res.status !== 201 && res.status !== 202) throw await this.failure(res, site)
    await discard(res)
    if (res.status === 201) return true
    await this.cancelUpload(res, scopes, site)
    return false
  }

  /**
   * Uploads a blob: one POST to open an upload and one PUT with all the bytes (a monolithic upload);
   * when the registry refuses that (413 and the like, as a proxy with a body limit does), again in
   * PATCHes of `chunkSize` and a closing PUT. `body` gives a fresh stream of the blob for each try;
   * the whole sequence is retried where the transport would retry a request. Idempotent: uploading a
   * blob the registry has is harmless (hasBlob first is the caller's choice).
   */
  async putBlob(repo: string, digest: string, size: number, body: () => Readable, options: CallOptions = {}): Promise<void> {
    const site = this.site(repo, `upload blob ${digest}`)
    if (digestAlgorithm(digest) === null) throw registryError('ERR_REGISTRY', site, 'not a digest (sha256: or sha512: and hex)')
    const scopes = [repositoryScope(repo, 'pull,push')]
    for (let attempt = 0; ; attempt++) {
      try {
        const location = await this.startUpload(repo, scopes, site, options)
        const put = await this.call({
          method: 'PUT',
          url: withDigest(location, digest),
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
          body,
          scopes,
          site,
          retry: false,
          ...signalOf(options),
        })
        if (put.status === 201) return this.uploaded(put, digest, site)
        if (UPLOAD_REFUSED.has(put.status)) {
          await discard(put)
          await this.cancel(location, scopes, site)
          return await this.putBlobChunked(repo, digest, size, body, scopes, site, options)
        }
        throw await this.failure(put, site, attempt < this.transport.retries)
      } catch (err) {
        if (attempt < this.transport.retries && transient(err)) {
          await this.transport.backoff(attempt, options.signal)
          continue
        }
        throw err
      }
    }
  }

  /** Stores a manifest under `reference` (a tag or its digest); returns its digest. */
  async putManifest(repo: string, reference: string, bytes: Buffer, mediaType: string, options: CallOptions = {}): Promise<string> {
    const site = this.site(repo, `put manifest ${reference}`)
    if (bytes.length > MAX_MANIFEST_BYTES) throw registryError('ERR_REGISTRY', site, `the manifest is ${bytes.length} bytes, more than the ${MAX_MANIFEST_BYTES} registries take`)
    const algorithm = isDigest(reference) ? digestAlgorithm(reference)! : 'sha256'
    const digest = digestOf(bytes, algorithm)
    if (isDigest(reference) && digest !== reference) throw registryError('ERR_REGISTRY', site, `these bytes have digest ${digest}`)
    const res = await this.call({
      method: 'PUT',
      url: `/v2/${repo}/manifests/${reference}`,
      headers: { 'content-type': mediaType },
      body: bytes,
      scopes: [repositoryScope(repo, 'pull,push')],
      site,
      ...signalOf(options),
    })
    if (res.status !== 201 && res.status !== 200) throw await this.failure(res, site)
    await discard(res)
    const said = header(res.headers, 'docker-content-digest')
    if (said !== undefined && digestAlgorithm(said) === algorithm && said !== digest) {
      throw registryError('ERR_REGISTRY_CORRUPT', site, `the registry stored it as ${said}, not ${digest}`)
    }
    return digest
  }

  /** Deletes a manifest by digest (the registry must allow deletes). */
  async deleteManifest(repo: string, digest: string, options: CallOptions = {}): Promise<void> {
    const site = this.site(repo, `delete manifest ${digest}`)
    const res = await this.call({ method: 'DELETE', url: `/v2/${repo}/manifests/${digest}`, scopes: [repositoryScope(repo, 'delete')], site, ...signalOf(options) })
    if (res.status !== 202 && res.status !== 200) throw await this.failure(res, site)
    await discard(res)
  }

  /** All tags of `repo`, page by page as the Link headers lead (`pageSize` asks for that many per page). */
  async listTags(repo: string, options: CallOptions & { pageSize?: number } = {}): Promise<string[]> {
    const site = this.site(repo, 'list tags')
    const tags: string[] = []
    let next: string | URL | undefined = `/v2/${repo}/tags/list${options.pageSize === undefined ? '' : `?n=${options.pageSize}`}`
    const seen = new Set<string>()
    while (next !== undefined) {
      const url: URL = new URL(next, this.base)
      if (seen.has(url.href)) throw registryError('ERR_REGISTRY', site, `the tag list's pages lead back to ${url.pathname}${url.search}`)
      seen.add(url.href)
      const res = await this.call({ method: 'GET', url, scopes: [repositoryScope(repo, 'pull')], site, ...signalOf(options) })
      if (res.status !== 200) throw await this.failure(res, site)
      const doc = parseJson(await readBody(res, 64 * 1024 * 1024, site, 'the tag list'), site, 'the tag list') as { tags?: unknown }
      if (doc.tags !== null && doc.tags !== undefined) {
        if (!Array.isArray(doc.tags) || !doc.tags.every((t) => typeof t === 'string')) throw registryError('ERR_REGISTRY', site, 'the tag list is not a list of names')
        tags.push(...doc.tags)
      }
      next = nextLink(header(res.headers, 'link'), url)
    }
    return tags
  }

  /**
   * The descriptors of manifests that refer to `digest` (signatures, SBOMs) through the referrers API,
   * or null when the registry has none (404, as docker-registry 2.8 answers; then the
   * `sha256-<hex>` tag scheme is the caller's fallback). Asked once per client: after a 404, null
   * without a request.
   */
  async referrers(repo: string, digest: string, options: CallOptions & { artifactType?: string } = {}): Promise<Descriptor[] | null> {
    const known = this.referrersApi
    if (known !== null && !(await known)) return null
    const answered = known === null ? this.askingReferrersApi() : undefined
    try {
      const listed = await this.listReferrers(repo, digest, options)
      answered?.(listed !== null)
      return listed
    } catch (err) {
      // a failure tells nothing about the API: those waiting ask themselves, and so does the next call
      if (answered !== undefined) {
        this.referrersApi = null
        answered(true)
      }
      throw err
    }
  }

  /** Marks the referrers API as being asked; the function given settles whether it is there. */
  private askingReferrersApi(): (api: boolean) => void {
    let resolve: (api: boolean) => void = () => {}
    this.referrersApi = new Promise<boolean>((r) => (resolve = r))
    return resolve
  }

  private async listReferrers(repo: string, digest: string, options: CallOptions & { artifactType?: string }): Promise<Descriptor[] | null> {
    const site = this.site(repo, `list referrers of ${digest}`)
    const query = options.artifactType === undefined ? '' : `?${new URLSearchParams({ artifactType: options.artifactType }).toString()}`
    let next: string | URL | undefined = `/v2/${repo}/referrers/${digest}${query}`
    const out: Descriptor[] = []
    const seen = new Set<string>()
    while (next !== undefined) {
      const url: URL = new URL(next, this.base)
      if (seen.has(url.href)) throw registryError('ERR_REGISTRY', site, `the referrers' pages lead back to ${url.pathname}${url.search}`)
      seen.add(url.href)
      const res = await this.call({ method: 'GET', url, headers: { accept: 'application/vnd.oci.image.index.v1+json' }, scopes: [repositoryScope(repo, 'pull')], site, ...signalOf(options) })
      if (res.status === 404 && seen.size === 1) {
        await discard(res)
        return null
      }
      if (res.status !== 200) throw await this.failure(res, site)
      const doc = parseJson(await readBody(res, MAX_MANIFEST_BYTES, site, 'the referrers list'), site, 'the referrers list') as { manifests?: unknown }
      if (!Array.isArray(doc.manifests)) throw registryError('ERR_REGISTRY', site, 'the referrers answer is not an image index')
      for (const d of doc.manifests as Array<Partial<Descriptor>>) {
        if (typeof d.mediaType !== 'string' || typeof d.digest !== 'string' || typeof d.size !== 'number') throw registryError('ERR_REGISTRY', site, 'the referrers list holds a malformed descriptor')
        out.push(d as Descriptor)
      }
      next = nextLink(header(res.headers, 'link'), url)
    }
    return out
  }

  /** HTTP requests sent so far (retries, redirects and token requests included): what a no-op costs. */
  get requests(): number {
    return this.transport.requests
  }

  /** Closes the connections; the client is not used after. */
  async close(): Promise<void> {
    await this.transport.close()
  }

  private site(repository: string, action: string): RequestSite {
    return { registry: this.registry, repository, action }
  }

  /** One request with authorization: sent as last known; after a 401, once more with what its challenge asks. */
  private async call(c: Call): Promise<HttpResponse> {
    for (let round = 0; ; round++) {
      const authorization = await this.auth.authorization(c.scopes, c.site, c.signal)
      const base = this.base
      const res = await this.transport
        .request({
          method: c.method,
          url: new URL(c.url, base),
          headers: { ...c.headers, ...(authorization === undefined ? {} : { authorization }) },
          site: c.site,
          ...(c.body === undefined ? {} : { body: c.body }),
          ...(c.followRedirects === undefined ? {} : { followRedirects: c.followRedirects }),
          ...(c.retry === undefined ? {} : { retry: c.retry }),
          ...(c.signal === undefined ? {} : { signal: c.signal }),
        })
        .catch((err: unknown) => {
          // a registry that answers HTTPS with plain HTTP: from now on, plain HTTP, as allowed
          if (this.httpFallback && base.protocol === 'https:' && typeof c.url === 'string' && err instanceof SnapdirError && notTls(err.cause)) return null
          throw err
        })
      if (res === null) {
        if (this.base === base) this.base = new URL(`http://${base.host}`)
        round--
        continue
      }
      if (res.status !== 401 || round > 0) return res
      if (!(await this.auth.challenged(res.headers['www-authenticate'], c.scopes, authorization, c.site))) return res
      await discard(res)
    }
  }

  /** The error for an answer that is not what was asked for; reads (a bounded part of) its body. */
  private async failure(res: HttpResponse, site: RequestSite, transientAllowed = false): Promise<SnapdirError> {
    const text = (await readBody(res, 64 * 1024, site, 'the error answer').catch(() => Buffer.alloc(0))).toString('utf8')
    const errors = parseErrorBody(text)
    const status = res.status
    const opts = { status, errors }
    if (status === 401) {
      const withCreds = await this.auth.hasCredentials().catch(() => false)
      const reason = withCreds ? 'authentication failed' : `authentication required: no credentials for ${this.registry} (give them with --creds USER:PASS, or docker login)`
      return registryError('ERR_REGISTRY_AUTH', site, `${reason} (401${errors[0] ? ` ${errors[0].code}` : ''})`, opts)
    }
    if (status === 403) return registryError('ERR_REGISTRY_AUTH', site, `denied (403${errors[0] ? ` ${errors[0].code}` : ''})`, opts)
    if (status === 400 && this.base.protocol === 'http:' && /HTTP request to an HTTPS server/i.test(text)) {
      // Go's net/http (docker-registry, distribution) answers so to plain HTTP on a TLS port
      return registryError('ERR_REGISTRY', site, `it speaks HTTPS, not the plain HTTP snapdir used (loopback registries get plain HTTP unless --tls-verify=true, --cert-dir or --ca-file is given)`, opts)
    }
    if (status === 404) {
      const fallback = site.action.includes('manifest') ? 'manifest unknown' : site.action.includes('blob') ? 'blob unknown' : 'not found'
      return registryError('ERR_REGISTRY_NOT_FOUND', site, describeStatus(status, errors, fallback), opts)
    }
    const retried = status === 429 || status === 408 || status >= 500
    const words = describeStatus(status, errors, status >= 500 ? 'server error' : status === 429 ? 'too many requests' : `unexpected answer`)
    const err = registryError('ERR_REGISTRY', site, retried && !transientAllowed ? `${words} after ${this.transport.retries} retries` : words, opts)
    return transientAllowed && retried ? markTransient(err) : err
  }

  private async startUpload(repo: string, scopes: string[], site: RequestSite, options: CallOptions): Promise<URL> {
    const res = await this.call({ method: 'POST', url: `/v2/${repo}/blobs/uploads/`, scopes, site, body: Buffer.alloc(0), ...signalOf(options) })
    if (res.status !== 202) throw await this.failure(res, site)
    await discard(res)
    return this.location(res, site)
  }

  private location(res: HttpResponse, site: RequestSite): URL {
    const location = header(res.headers, 'location')
    if (location === undefined) throw registryError('ERR_REGISTRY', site, `the registry answered ${res.status} without a Location for the upload`)
    return new URL(location, res.url)
  }

  private async putBlobChunked(repo: string, digest: string, size: number, body: () => Readable, scopes: string[], site: RequestSite, options: CallOptions): Promise<void> {
    let location = await this.startUpload(repo, scopes, site, options)
    let offset = 0
    const send = async (chunk: Buffer): Promise<void> => {
      const res = await this.call({
        method: 'PATCH',
        url: location,
        headers: { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + chunk.length - 1}` },
        body: chunk,
        scopes,
        site,
        retry: false,
        ...signalOf(options),
      })
      if (res.status !== 202) throw await this.failure(res, site, true)
      await discard(res)
      location = this.location(res, site)
      offset += chunk.length
    }
    let parts: Buffer[] = []
    let held = 0
    for await (const part of body() as AsyncIterable<Buffer>) {
      for (let at = 0; at < part.length; ) {
        const take = Math.min(part.length - at, this.chunkSize - held)
        parts.push(part.subarray(at, at + take))
        held += take
        at += take
        if (held === this.chunkSize) {
          await send(Buffer.concat(parts, held))
          parts = []
          held = 0
        }
      }
    }
    if (held > 0) await send(Buffer.concat(parts, held))
    if (offset !== size) throw registryError('ERR_REGISTRY', site, `the blob's source gave ${offset} bytes, not ${size}`)
    const put = await this.call({ method: 'PUT', url: withDigest(location, digest), headers: { 'content-length': '0' }, scopes, site, retry: false, ...signalOf(options) })
    if (put.status !== 201) throw await this.failure(put, site, true)
    this.uploaded(put, digest, site)
  }

  private uploaded(put: HttpResponse, digest: string, site: RequestSite): void {
    void discard(put)
    const said = header(put.headers, 'docker-content-digest')
    if (said !== undefined && digestAlgorithm(said) === digestAlgorithm(digest) && said !== digest) {
      throw registryError('ERR_REGISTRY_CORRUPT', site, `the registry stored it as ${said}`)
    }
  }

  private async cancelUpload(res: HttpResponse, scopes: string[], site: RequestSite): Promise<void> {
    const location = header(res.headers, 'location')
    if (location !== undefined) await this.cancel(new URL(location, res.url), scopes, site)
  }

  /** Cancels an upload (best effort: a registry forgets abandoned uploads anyway). */
  private async cancel(location: URL, scopes: string[], site: RequestSite): Promise<void> {
    try {
      await discard(await this.call({ method: 'DELETE', url: location, scopes, site, retry: false }))
    } catch {
      // nothing to do: the upload expires on the registry
    }
  }
}

function signalOf(options: CallOptions): { signal?: AbortSignal } {
  return options.signal === undefined ? {} : { signal: options.signal }
}

/** An upload URL with `digest=` added to whatever query the registry put in it (its state). */
function withDigest(location: URL, digest: string): URL {
  const url = new URL(location)
  url.searchParams.set('digest', digest)
  return url
}

/** The manifest's media type: its Content-Type, else (a registry that says application/json) its own mediaType field. */
function manifestMediaType(contentType: string | undefined, bytes: Buffer): string {
  const type = bareMediaType(contentType)
  if (MANIFEST_MEDIA_TYPES.includes(type)) return type
  if (type === '' || type === 'application/json' || type === 'text/plain' || type === 'application/octet-stream') {
    try {
      const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }
      if (typeof doc.mediaType === 'string') return doc.mediaType
    } catch {
      // not JSON: its Content-Type is all there is
    }
  }
  return type
}

function checkManifestDigest(bytes: Buffer, reference: string, said: string | undefined, site: RequestSite): string {
  if (isDigest(reference)) {
    const computed = digestOf(bytes, digestAlgorithm(reference)!)
    if (computed !== reference) throw registryError('ERR_REGISTRY_CORRUPT', site, `expected ${reference}, computed ${computed}`)
    return computed
  }
  const algorithm = said === undefined ? 'sha256' : (digestAlgorithm(said) ?? 'sha256')
  const computed = digestOf(bytes, algorithm)
  if (said !== undefined && digestAlgorithm(said) !== null && said !== computed) {
    throw registryError('ERR_REGISTRY_CORRUPT', site, `the registry says ${said}, computed ${computed}`)
  }
  return computed
}

/** RFC 8288: the `rel="next"` target of a Link header, resolved against the page's URL. */
export function nextLink(link: string | undefined, page: URL): URL | undefined {
  if (link === undefined) return undefined
  for (const part of link.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>(.*)$/.exec(part)
    if (m && /;\s*rel="?next"?/i.test(m[2]!)) return new URL(m[1]!, page)
  }
  return undefined
}

function parseJson(bytes: Buffer, site: RequestSite, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'))
  } catch (err) {
    throw registryError('ERR_REGISTRY', site, `${what} is not JSON`, { cause: err })
  }
}

const TRANSIENT = Symbol('transient')

function markTransient(err: SnapdirError): SnapdirError {
  ;(err as SnapdirError & { [TRANSIENT]?: true })[TRANSIENT] = true
  return err
}

/** An upload step's failure that trying the upload again can cure: a retryable status or network error. */
function transient(err: unknown): boolean {
  if (!(err instanceof SnapdirError)) return false
  return (err as SnapdirError & { [TRANSIENT]?: true })[TRANSIENT] === true || err.data.transient === true
}
