// Image names and tags as users and registries write them (`registry.example:5000/team/app:1.2`), and
// how one is spelled as a single component of a store key (docs/FORMAT.md, "Image names").
//
// The grammar is distribution/reference's (the one docker, containerd and skopeo parse with):
//   name   := [domain '/'] path-component ['/' path-component]*
//   domain := host [':' port]   (host: DNS labels joined by '.', or '[' IPv6 ']')
//   path-component := [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
//   tag    := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
// https://github.com/distribution/reference/blob/main/reference.go
// The first component is a domain when it has a '.' or a ':', is 'localhost', or has an upper-case
// letter, as there. Names are kept as given: `debian` is not rewritten to `docker.io/library/debian`.
import { UsageError } from '../util/errors.js'

export interface ImageName {
  /** the repository, with its registry host (and port) when one was given */
  name: string
  tag: string
}

export const DEFAULT_TAG = 'latest'
const NAME_MAX = 255
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const DOMAIN = /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$/
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/

/** Why `name` is not an image name, or null when it is one. */
export function imageNameProblem(name: string): string | null {
  if (name.length === 0) return 'the name is empty'
  if (name.length > NAME_MAX) return `the name is longer than ${NAME_MAX} characters`
  const parts = name.split('/')
  const first = parts[0]!
  const hasDomain = parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[') || first !== first.toLowerCase())
  if (hasDomain && !DOMAIN.test(first)) return `${JSON.stringify(first)} is not a registry host[:port]`
  for (const p of hasDomain ? parts.slice(1) : parts) {
    if (!PATH_COMPONENT.test(p)) return `${JSON.stringify(p)} is not a repository path component (lower-case letters and digits, joined by '.', '_', '__' or '-')`
  }
  return null
}

export function tagProblem(tag: string): string | null {
  return TAG.test(tag) ? null : `tag ${JSON.stringify(tag)} is not a tag (up to 128 of A-Z a-z 0-9 _ . -, not starting with . or -)`
}

/**
 * `NAME[:TAG]` as a user gives it (the tag defaults to `latest`, as docker's does); a usage error
 * (exit 2) naming what was given otherwise. A digest (`NAME@sha256:…`) names content, not a tag.
 */
export function parseImageName(ref: string): ImageName {
  const bad = (why: string): never => {
    throw new UsageError(`malformed image name ${JSON.stringify(ref)}: ${why}; expected NAME[:TAG], e.g. registry.example:5000/team/app:1.2`, 'ERR_BAD_ID')
  }
  if (ref.includes('@')) bad('a digest names content, not a tag (give --id, or NAME:TAG)')
  const slash = ref.lastIndexOf('/')
  const colon = ref.lastIndexOf(':')
  const name = colon > slash ? ref.slice(0, colon) : ref
  const tag = colon > slash ? ref.slice(colon + 1) : DEFAULT_TAG
  const problem = imageNameProblem(name) ?? tagProblem(tag)
  if (problem !== null) bad(problem)
  return { name, tag }
}

export function formatImageName(n: ImageName): string {
  return `${n.name}:${n.tag}`
}

// A key component holds only [a-z0-9._-]: safe as a file name (on case-insensitive file systems
// too), an S3 or GCS key, and in a URL. Every other byte, and the '-' of '.tmp-' (what a file store's
// temporary names have in them, which listings hide and gc deletes), is '%' and two upper-case hex
// digits, as encodeURIComponent writes them; decoding is decodeURIComponent, so each name has one
// spelling and the spelling gives the name back.
const KEEP = /[a-z0-9._-]/

/** One key component for a name or a tag. */
export function encodeKeyComponent(s: string): string {
  let out = ''
  for (const ch of s) {
    if (KEEP.test(ch)) out += ch
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out.replace(/\.tmp-/g, '.tmp%2D')
}

/** The name or tag a key component spells, or null when it is not one encodeKeyComponent writes. */
export function decodeKeyComponent(s: string): string | null {
  let decoded: string
  try {
    decoded = decodeURIComponent(s)
  } catch {
    return null
  }
  return encodeKeyComponent(decoded) === s ? decoded : null
}
