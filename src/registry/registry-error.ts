// How a registry failure reads: one line naming the registry, the repository and what failed, with a
// stable code for callers (auth, not found, unreachable, corrupt, anything else) and the HTTP status
// and the registry's error codes (distribution spec, "Error Codes") as data. The CLI maps them all to
// exit 1 through its one table (cli/run-command.ts).
import { SnapdirError, type ErrorCode } from '../util/errors.js'

export type RegistryErrorCode = Extract<
  ErrorCode,
  'ERR_REGISTRY' | 'ERR_REGISTRY_AUTH' | 'ERR_REGISTRY_NOT_FOUND' | 'ERR_REGISTRY_UNREACHABLE' | 'ERR_REGISTRY_CORRUPT'
>

/** Where a request went and what it was for: "docker://host/repo: get manifest v1". */
export interface RequestSite {
  registry: string
  /** none for requests about the registry itself (a token, the API version check) */
  repository?: string
  /** what was being done, in words: "get manifest v1", "upload blob sha256:…" */
  action: string
}

export function siteText(site: RequestSite): string {
  return `docker://${site.registry}${site.repository === undefined ? '' : `/${site.repository}`}: ${site.action}`
}

export function registryError(
  code: RegistryErrorCode,
  site: RequestSite,
  reason: string,
  options: { cause?: unknown; status?: number; errors?: RegistryErrorEntry[] } = {},
): SnapdirError {
  return new SnapdirError(code, `${siteText(site)}: ${reason}`, {
    cause: options.cause,
    data: {
      registry: site.registry,
      ...(site.repository === undefined ? {} : { repository: site.repository }),
      ...(options.status === undefined ? {} : { status: options.status }),
      ...(options.errors === undefined ? {} : { errors: options.errors }),
    },
  })
}

/** One entry of a registry's error body: `{"errors":[{"code":"MANIFEST_UNKNOWN","message":…}]}`. */
export interface RegistryErrorEntry {
  code: string
  message?: string
}

/** The error entries of a response body, or none when it is not the spec's JSON. */
export function parseErrorBody(text: string): RegistryErrorEntry[] {
  try {
    const doc = JSON.parse(text) as { errors?: unknown }
    if (!Array.isArray(doc.errors)) return []
    return doc.errors
      .filter((e): e is { code: string; message?: unknown } => typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string')
      .map((e) => (typeof e.message === 'string' ? { code: e.code, message: e.message } : { code: e.code }))
  } catch {
    return []
  }
}

/** Words for the common codes (what a user understands), else the registry's own message. */
const CODE_WORDS: Record<string, string> = {
  MANIFEST_UNKNOWN: 'manifest unknown',
  NAME_UNKNOWN: 'repository unknown',
  BLOB_UNKNOWN: 'blob unknown',
  TAG_INVALID: 'tag invalid',
  MANIFEST_INVALID: 'manifest invalid',
  MANIFEST_BLOB_UNKNOWN: 'the manifest names a blob the repository lacks',
  DIGEST_INVALID: 'digest does not match the content',
  SIZE_INVALID: 'size does not match the content',
  UNAUTHORIZED: 'authentication failed',
  DENIED: 'denied',
  UNSUPPORTED: 'unsupported',
  TOOMANYREQUESTS: 'too many requests',
}

/** "manifest unknown (404 MANIFEST_UNKNOWN)" from a status and the body's error entries. */
export function describeStatus(status: number, errors: RegistryErrorEntry[], fallback: string): string {
  const first = errors[0]
  const words = first ? (CODE_WORDS[first.code] ?? first.message ?? first.code.toLowerCase()) : fallback
  return `${words} (${status}${first ? ` ${first.code}` : ''})`
}
