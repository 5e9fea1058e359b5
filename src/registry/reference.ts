// Image references as the user writes them: `docker://HOST[:PORT]/REPO[:TAG][@DIGEST]`, the grammar of
// distribution's reference package (https://github.com/distribution/reference/blob/main/reference.go)
// behind skopeo's `docker://` transport. As docker does, a first path component that is no host name
// (no '.', no ':', not `localhost`) means Docker Hub: `docker://alpine` is docker.io/library/alpine.
import { UsageError } from '../util/errors.js'

export const IMAGE_REF_PREFIX = 'docker://'

/** Docker Hub's name in references, and the host its API answers on. */
export const DOCKER_HUB = 'docker.io'
export const DOCKER_HUB_API = 'registry-1.docker.io'

export interface ImageRef {
  /** `host[:port]` as written (lowercased host), `docker.io` for Docker Hub */
  readonly registry: string
  /** the repository path, e.g. `library/alpine`, `team/app` */
  readonly repository: string
  readonly tag?: string
  /** `sha256:<hex>` (or sha512) */
  readonly digest?: string
  /** what to ask the registry for: the digest if given, else the tag, else `latest` */
  readonly reference: string
  /** `docker://registry/repository[:tag][@digest]` */
  toString(): string
}

const USAGE = `expected ${IMAGE_REF_PREFIX}HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]`

// distribution/reference's grammar
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG = /^[\w][\w.-]{0,127}$/
const DIGEST = /^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/
const HOST_NAME = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*$/
const IPV6 = /^\[[0-9a-fA-F:.]+\]$/

/** Whether `s` is meant as an image reference (it starts with `docker://`); parseImageRef says if it is a good one. */
export function isImageRef(s: string): boolean {
  return s.startsWith(IMAGE_REF_PREFIX)
}

/** Parses `docker://…`; bad input throws a UsageError (exit 2) naming what was given and what was expected. */
export function parseImageRef(input: string): ImageRef {
  const bad = (why: string): UsageError => new UsageError(`bad image reference ${JSON.stringify(input)}: ${why}; ${USAGE}`, 'ERR_BAD_IMAGE_REF')
  if (!isImageRef(input)) throw bad(`it does not start with ${IMAGE_REF_PREFIX}`)
  let rest = input.slice(IMAGE_REF_PREFIX.length)
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST.test(digest)) throw bad(`${JSON.stringify(digest)} is not a digest (sha256: and 64 lowercase hex digits)`)
  }
  let tag: string | undefined
  const lastSlash = rest.lastIndexOf('/')
  const colon = rest.lastIndexOf(':')
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG.test(tag)) throw bad(`${JSON.stringify(tag)} is not a tag (letters, digits, '_', '.', '-'; at most 128)`)
  }
  if (rest === '') throw bad('it names no repository')
  const slash = rest.indexOf('/')
  let registry = DOCKER_HUB
  let repository = rest
  const first = slash >= 0 ? rest.slice(0, slash) : ''
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost' || IPV6.test(first))) {
    registry = first
    repository = rest.slice(slash + 1)
    const portAt = registry.startsWith('[') ? registry.indexOf(']:') + 1 : registry.indexOf(':')
    const host = portAt > 0 ? registry.slice(0, portAt) : registry
    const port = portAt > 0 ? registry.slice(portAt + 1) : undefined
    if (!(HOST_NAME.test(host) || IPV6.test(host))) throw bad(`${JSON.stringify(host)} is not a host name`)
    if (port !== undefined && !(/^\d{1,5}$/.test(port) && Number(port) > 0 && Number(port) < 65536)) throw bad(`${JSON.stringify(port)} is not a port`)
    registry = port === undefined ? host.toLowerCase() : `${host.toLowerCase()}:${port}`
  }
  if (repository === '') throw bad('it names no repository')
  for (const c of repository.split('/')) {
    if (!COMPONENT.test(c)) throw bad(`${JSON.stringify(repository)} is not a repository name (lowercase letters and digits, separated by '.', '_', '-' or '/')`)
  }
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`
  if (repository.length > 255) throw bad('the repository name is longer than 255 characters')
  return imageRef(registry, repository, tag, digest)
}

/** An ImageRef from its parts (already valid). */
export function imageRef(registry: string, repository: string, tag?: string, digest?: string): ImageRef {
  const text = `${IMAGE_REF_PREFIX}${registry}/${repository}${tag === undefined ? '' : `:${tag}`}${digest === undefined ? '' : `@${digest}`}`
  return {
    registry,
    repository,
    ...(tag === undefined ? {} : { tag }),
    ...(digest === undefined ? {} : { digest }),
    reference: digest ?? tag ?? 'latest',
    toString: () => text,
  }
}

/** The host (and port) whose API serves `registry`: Docker Hub's API is not on docker.io itself. */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB || registry === 'index.docker.io' ? DOCKER_HUB_API : registry
}

/**
 * Loopback registries (localhost, 127.0.0.0/8, ::1) are spoken to over plain HTTP, as docker treats
 * them as insecure registries by default; every other host needs HTTPS unless the caller says otherwise.
 */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(1, registry.indexOf(']')) : registry.replace(/:\d+$/, '')
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

/** Whether a manifest reference is a digest (else it is a tag). */
export function isDigest(reference: string): boolean {
  return DIGEST.test(reference)
}
