// The registry's one error table (distribution-spec v1.1, "Error Codes"): every failure a route
// reports is a RegistryError with one of the spec's codes, answered as
//   {"errors":[{"code":"…","message":"…","detail":…}]}
// with the status the spec gives that code. Anything else a route throws (a store that fails, a
// damaged snapshot) is UNKNOWN with 500, its message kept for the log, never a stack in a body.
// https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md#error-codes
import { SnapdirError } from '../util/errors.js'

export type RegistryErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'UNKNOWN'

/**
 * Each code's status and message, as distribution-spec (and docker-registry) answer them. The spec
 * gives MANIFEST_BLOB_UNKNOWN no status of its own; docker-registry 2.8 answers it 400 (the manifest
 * is the request's, and what it names is missing), and so do we.
 */
const CODES: Record<RegistryErrorCode, { status: number; message: string }> = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: { status: 400, message: 'manifest references a manifest or blob unknown to registry' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  UNKNOWN: { status: 500, message: 'unknown error' },
}

export interface RegistryErrorOptions {
  /** the spec's message for the code when absent */
  message?: string
  /** what the client may act on: e.g. the digest or the name that is unknown */
  detail?: unknown
  /** a status other than the code's own (UNSUPPORTED as 404 for a path no route serves) */
  status?: number
  /** headers the answer needs (WWW-Authenticate with 401, Content-Range with 416) */
  headers?: Record<string, string>
  cause?: unknown
}

export class RegistryError extends Error {
  readonly code: RegistryErrorCode
  readonly status: number
  readonly detail: unknown
  readonly headers: Readonly<Record<string, string>>

  constructor(code: RegistryErrorCode, options: RegistryErrorOptions = {}) {
    super(options.message ?? CODES[code].message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'RegistryError'
    this.code = code
    this.status = options.status ?? CODES[code].status
    this.detail = options.detail
    this.headers = options.headers ?? {}
  }
}

/** The error a route's failure is answered with: a RegistryError as it is, anything else UNKNOWN (500). */
export function toRegistryError(err: unknown): RegistryError {
  if (err instanceof RegistryError) return err
  const message = err instanceof SnapdirError ? err.message : `internal error: ${err instanceof Error ? err.message : String(err)}`
  return new RegistryError('UNKNOWN', { message, cause: err })
}

/** The body the spec defines for an error. */
export function errorBody(err: RegistryError): string {
  return JSON.stringify({ errors: [{ code: err.code, message: err.message, detail: err.detail ?? null }] })
}
