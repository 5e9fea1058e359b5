import type { S3Client } from '@aws-sdk/client-s3'
import { abortedError, SnapdirError } from '../util/errors.js'
import { StoreLifecycle } from './lifecycle.js'
import { S3Getter, environmentCredentials } from './s3-get.js'
import type { ListedObject, SweepStore, ReadOptions, StoreSpec } from './store.js'

// The SDK is pinned (package-lock) at a release that supports Node 20; its warning that later
// releases will not would land on stderr of every command that opens an S3 store.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

type Sdk = typeof import('@aws-sdk/client-s3')
let sdkLoading: Promise<Sdk> | null = null
/** The SDK costs about 0.4 CPU-seconds to load: only a process that really talks to S3 pays that
 * (not every command, and not each of push's worker threads when the store is a directory). */
function sdk(): Promise<Sdk> {
  return (sdkLoading ??= import('@aws-sdk/client-s3'))
}

// attempts of a request that fails transiently; ms to connect; ms a request may go without bytes
const MAX_ATTEMPTS = 5
const CONNECTION_TIMEOUT_MS = 5_000
const REQUEST_TIMEOUT_MS = 60_000

/** Keys one DeleteObjects request takes at most. */
const DELETE_BATCH = 1000

export interface S3StoreOptions {
  bucket: string
  /** key prefix, without leading or trailing '/' ('' for the bucket root) */
  prefix: string
  /** S3-compatible endpoint (MinIO, Ceph, R2, GCS interop, a test server); unset for AWS itself */
  endpoint?: string
  region?: string
  /** how the user named the store, for messages */
  url: string
  spec: StoreSpec
}

/**
 * A store in an S3 bucket (or any S3-compatible service), credentials from the SDK's standard chain.
 * Every object is one PUT, so it is atomic; a PUT that S3 acknowledged is durable, so flush() has
 * nothing to do. With a custom endpoint, addressing is path-style (what S3-compatible servers speak).
 */
export class S3Store extends StoreLifecycle implements SweepStore {
  readonly url: string
  readonly spec: StoreSpec
  private readonly bucket: string
  private readonly prefix: string
  private connecting: Promise<{ client: S3Client; sdk: Sdk }> | null = null
  /** GETs without the SDK (s3-get.ts says when), or null: through the SDK */
  private readonly getter: S3Getter | null

  constructor(private readonly options: S3StoreOptions) {
    super()
    this.url = options.url
    this.spec = options.spec
    this.bucket = options.bucket
    this.prefix = options.prefix === '' ? '' : `${options.prefix}/`
    const credentials = options.endpoint !== undefined && options.spec.profile === undefined ? environmentCredentials() : null
    this.getter = credentials && options.endpoint !== undefined
      ? new S3Getter({ endpoint: options.endpoint, region: this.region(), credentials, maxAttempts: MAX_ATTEMPTS, connectionTimeout: CONNECTION_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS })
      : null
  }

  private region(): string {
    return this.options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1'
  }

  /** An object's bytes, or the SDK's error (or one shaped as it, from the getter). */
  private async getObject(key: string, signal?: AbortSignal): Promise<Buffer> {
    if (this.getter) {
      if (this.closing) throw new SnapdirError('ERR_STORE_CLOSED', `store ${this.url} is closed`, { data: { store: this.url } })
      return this.getter.get(this.bucket, this.key(key), signal)
    }
    const { client, sdk } = await this.connect()
    const out = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.key(key) }), signal ? { abortSignal: signal } : {})
    return Buffer.from(await out.Body!.transformToByteArray())
  }

  /** The client, made on first use; none after close(), which destroyed it. */
  private connect(): Promise<{ client: S3Client; sdk: Sdk }> {
    if (this.closing) return Promise.reject(new SnapdirError('ERR_STORE_CLOSED', `store ${this.url} is closed`, { data: { store: this.url } }))
    return (this.connecting ??= sdk().then((s) => {
      const o = this.options
      const client = new s.S3Client({
        region: this.region(),
        ...(o.endpoint ? { endpoint: o.endpoint, forcePathStyle: true } : {}),
        // a profile of the shared config files, as AWS_PROFILE would be, but for this store only. The
        // SDK's credential chain then prints a warning of its own (console.warn, not its logger) if keys
        // are in the environment too, which is the very case of a sync where only one side has a
        // profile: given a logger, it warns there instead, and this one is as silent as the default
        ...(o.spec.profile !== undefined ? { profile: o.spec.profile, logger: SILENT } : {}),
        // Plain bodies: the default aws-chunked checksum framing is stored verbatim as the object by
        // several S3-compatible servers (s3rver among them), corrupting every object.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        maxAttempts: MAX_ATTEMPTS,
        // a server that stops answering becomes an error in bounded time, never a hang (without
        // throwOnRequestTimeout the SDK's handler only logs a warning when requestTimeout passes)
        requestHandler: { connectionTimeout: CONNECTION_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, throwOnRequestTimeout: true },
      })
      return { client, sdk: s }
    }))
  }

  private key(key: string): string {
    return this.prefix + key
  }

  /**
   * An open without create: the GET of the store's config that was sent for it, until a get() of the
   * config takes its answer (readConfig, which every command that reads a store does right after).
   */
  private openingConfig: Promise<Buffer> | null = null

  /** Checks the bucket answers; with `create` (push), makes it if it does not exist. */
  protected async openStore(create: boolean): Promise<void> {
    if (!create) return this.openToRead()
    try {
      const { client, sdk } = await this.connect()
      await client.send(new sdk.HeadBucketCommand({ Bucket: this.bucket }))
      // a prefix with nothing under it is a new store: should the command fail, it is emptied again.
      // A store's config answers for the usual case in one HEAD; only without one is the prefix listed
      // (whole pages: s3rver answers a ListObjectsV2 with MaxKeys below the key count with HTTP 500)
      if (create) {
        let config = true
        try {
          await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.key('config') }))
        } catch (err) {
          if (statusOf(err) !== 404) throw err
          config = false
        }
        if (!config) {
          const page = await client.send(new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix }))
          this.createdHere = (page.Contents?.length ?? 0) === 0
        }
      }
      return
    } catch (err) {
      if (statusOf(err) !== 404) throw this.failure('cannot open', err)
      if (!create) {
        throw new SnapdirError('ERR_STORE_NOT_FOUND', `store ${this.url}: bucket '${this.bucket}' does not exist`, { data: { store: this.url } })
      }
    }
    try {
      const { client, sdk } = await this.connect()
      await client.send(new sdk.CreateBucketCommand({ Bucket: this.bucket }))
      this.createdHere = true
      this.bucketCreated = true
    } catch (err) {
      // another push made it meanwhile
      if (!(errorName(err) === 'BucketAlreadyOwnedByYou' || errorName(err) === 'BucketAlreadyExists')) {
        throw this.failure('cannot create the bucket', err)
      }
    }
  }

  /**
   * Opens a store to read with one GET of its config instead of a HeadBucket: its answer says whether
   * the bucket is there (NoSuchBucket) as well, and it is kept for the read of the config that comes
   * next, so that opening costs no request of its own. HeadBucket needs s3:ListBucket, which a
   * read-only policy may not grant, and s3rver answers it by listing the whole bucket (0.3-1 s before
   * a mount from a store of a few thousand objects was up). A config that is not there is no error
   * here: whoever reads it says so (a store that is not a snapdir store, or is empty).
   */
  private async openToRead(): Promise<void> {
    const reading = this.getObject('config')
    this.openingConfig = reading
    try {
      await reading
    } catch (err) {
      if (errorName(err) === 'NoSuchBucket') {
        this.openingConfig = null
        throw new SnapdirError('ERR_STORE_NOT_FOUND', `store ${this.url}: bucket '${this.bucket}' does not exist`, { data: { store: this.url } })
      }
      if (!(statusOf(err) === 404 || errorName(err) === 'NoSuchKey')) {
        this.openingConfig = null
        throw this.failure('cannot open', err)
      }
    }
  }

  /** Whether openStore made the bucket (discardIfCreated then removes it, not only what is in it). */
  private bucketCreated = false

  protected override async removeCreated(): Promise<void> {
    const keys: string[] = []
    for await (const key of this.list('')) keys.push(key)
    await this.deleteMany(keys)
    if (this.bucketCreated) {
      const { client, sdk } = await this.connect()
      await client.send(new sdk.DeleteBucketCommand({ Bucket: this.bucket }))
    }
  }

  /** Destroys the client: its sockets close, so nothing of this store keeps the process alive. */
  protected override async closeStore(): Promise<void> {
    const connecting = this.connecting
    this.connecting = null
    const connected = await connecting?.catch(() => null)
    connected?.client.destroy()
    this.getter?.destroy()
  }

  async has(key: string): Promise<boolean> {
    return (await this.size(key)) !== null
  }

  async size(key: string): Promise<number | null> {
    try {
      const { client, sdk } = await this.connect()
      const head = await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.key(key) }))
      return head.ContentLength ?? 0
    } catch (err) {
      if (statusOf(err) === 404) return null
      throw this.failure(`cannot check ${key}`, err)
    }
  }

  async get(key: string, options: ReadOptions = {}): Promise<Buffer> {
    const { signal } = options
    const opened = key === 'config' ? this.openingConfig : null
    if (opened) this.openingConfig = null
    try {
      return await (opened ?? this.getObject(key, signal))
    } catch (err) {
      if (signal?.aborted) throw abortedError(`reading ${key} from ${this.url}`, signal)
      // S3 answers a missing key with NoSuchKey, or with a bare 404 (or 403 without list permission)
      if (statusOf(err) === 404 || errorName(err) === 'NoSuchKey') {
        throw new SnapdirError('ERR_OBJECT_MISSING', `${key} is missing from ${this.url}`, { data: { key, store: this.url } })
      }
      throw this.failure(`cannot read ${key}`, err)
    }
  }

  async put(key: string, data: Buffer): Promise<void> {
    if (key === 'config') this.openingConfig = null
    try {
      const { client, sdk } = await this.connect()
      await client.send(new sdk.PutObjectCommand({ Bucket: this.bucket, Key: this.key(key), Body: data, ContentLength: data.length }))
    } catch (err) {
      throw this.failure(`cannot write ${key}`, err)
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    for await (const o of this.listObjects(prefix)) yield o.key
  }

  /** Every PUT is whole, so there are no temporary objects: `temporary` changes nothing. */
  async *listObjects(prefix: string, _options: { temporary?: boolean } = {}): AsyncIterable<ListedObject> {
    let token: string | undefined
    do {
      let page
      try {
        const { client, sdk } = await this.connect()
        page = await client.send(
          new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.key(prefix), ...(token ? { ContinuationToken: token } : {}) }),
        )
      } catch (err) {
        throw this.failure(`cannot list ${prefix}`, err)
      }
      for (const o of page.Contents ?? []) {
        if (o.Key) yield { key: o.Key.slice(this.prefix.length), size: o.Size ?? 0, modified: o.LastModified?.getTime() ?? 0 }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token)
  }

  /** DeleteObjects, 1000 keys a request (S3's limit); a key that is not there is no error, as on S3. */
  async deleteMany(keys: string[]): Promise<void> {
    for (let at = 0; at < keys.length; at += DELETE_BATCH) {
      const batch = keys.slice(at, at + DELETE_BATCH)
      let out
      try {
        const { client, sdk } = await this.connect()
        out = await client.send(new sdk.DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: batch.map((k) => ({ Key: this.key(k) })), Quiet: true },
        }))
      } catch (err) {
        throw this.failure(`cannot delete ${batch.length} object(s) from ${batch[0]}`, err)
      }
      const failed = out.Errors ?? []
      if (failed.length > 0) {
        const first = failed[0]!
        throw new SnapdirError('ERR_STORE_IO', `store ${this.url}: cannot delete ${failed.length} object(s), ${first.Key ?? '?'} first: ${first.Code ?? ''} ${first.Message ?? ''}`.trim(), {
          data: { store: this.url },
        })
      }
    }
  }

  async flush(): Promise<void> {}

  private failure(what: string, err: unknown): SnapdirError {
    const status = statusOf(err)
    const detail = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
    const code = status === undefined ? 'ERR_STORE_UNREACHABLE' : 'ERR_STORE_IO'
    // a refused signature or key (S3 answers HeadBucket's with a bare 403): say it is the credentials
    const refused = status === 401 || status === 403 ? ': access denied, check the credentials for this store' : ''
    const store = this.spec.role === undefined ? `store ${this.url}` : `${this.spec.role} store ${this.url}`
    return new SnapdirError(code, `${store}: ${what}: ${detail}${status ? ` (HTTP ${status}${refused})` : ''}`, {
      cause: err,
      data: { store: this.url, ...(status ? { status } : {}) },
    })
  }
}

const SILENT = { debug() {}, info() {}, warn() {}, error() {} }

function errorName(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined
}

function statusOf(err: unknown): number | undefined {
  const meta = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata
  return meta?.httpStatusCode
}
