import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { UsageError } from '../util/errors.js'
import { FileStore } from './file-store.js'
import { S3Store } from './s3-store.js'
import type { Store, StoreSpec } from './store.js'

const EXPECTED = 'expected a path, file:///path, s3://bucket/prefix or gs://bucket/prefix'
// GCS speaks the S3 API at this endpoint, with HMAC keys as the access key pair
const GCS_ENDPOINT = 'https://storage.googleapis.com'

/**
 * The store a URL the user typed names, not opened yet: its owner opens and closes it. `s3Endpoint`
 * (or AWS_ENDPOINT_URL) points s3:// (and gs://, e.g. at a test server) at an S3-compatible service;
 * `profile` picks the credentials (one per side of a sync between providers); `role` is named in errors.
 */
export function storeFromUrl(url: string, options: { s3Endpoint?: string; profile?: string; role?: string } = {}): Store {
  const spec: StoreSpec = { url }
  const endpoint = options.s3Endpoint ?? process.env.AWS_ENDPOINT_URL
  if (endpoint) spec.s3Endpoint = endpoint
  if (options.profile !== undefined) spec.profile = options.profile
  if (options.role !== undefined) spec.role = options.role
  return openStore(spec)
}

/** The store a spec names (how worker threads make their own of the store they were handed). */
export function openStore(spec: StoreSpec): Store {
  const { url } = spec
  if (url.trim() === '') throw new UsageError(`empty store URL: ${EXPECTED}`, 'ERR_BAD_STORE_URL')
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(url)?.[1]?.toLowerCase()
  if (scheme === undefined) return new FileStore(path.resolve(url), url)
  if (scheme === 'file') {
    let p: string
    try {
      p = fileURLToPath(url)
    } catch (err) {
      throw new UsageError(`bad store URL '${url}': ${(err as Error).message}; expected file:///absolute/path`, 'ERR_BAD_STORE_URL')
    }
    return new FileStore(p, url)
  }
  if (scheme === 's3' || scheme === 'gs') {
    const m = /^[a-zA-Z0-9]+:\/\/([^/]+)\/?(.*)$/.exec(url)
    const bucket = m?.[1] ?? ''
    // S3 bucket names: 3-63 of lower-case letters, digits, dots and hyphens (GCS allows '_' too)
    if (!/^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/.test(bucket)) {
      throw new UsageError(`bad store URL '${url}': '${bucket}' is not a bucket name; ${EXPECTED}`, 'ERR_BAD_STORE_URL')
    }
    const prefix = (m?.[2] ?? '').replace(/^\/+|\/+$/g, '')
    const endpoint = spec.s3Endpoint ?? (scheme === 'gs' ? GCS_ENDPOINT : undefined)
    return new S3Store({
      url,
      spec,
      bucket,
      prefix,
      ...(endpoint ? { endpoint } : {}),
      ...(scheme === 'gs' ? { region: 'auto' } : {}),
    })
  }
  throw new UsageError(`unsupported store URL '${url}': scheme '${scheme}' is not known; ${EXPECTED}`, 'ERR_BAD_STORE_URL')
}
