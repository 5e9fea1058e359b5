// Which tags of a repository a sync entry copies: those named, those a regex matches, those whose
// version a semver range admits (any of the three), less those an exclude regex matches. Versions are
// read as skopeo sync's images-by-semver reads them (Masterminds' lenient form): an optional `v`, one
// to three numbers (`3.19` is 3.19.0), then -prerelease and +build. A tag that is no version (`latest`,
// `bookworm`) is never selected by a range. As npm's semver ranges do, a prerelease (`1.25-alpine` is
// 1.25.0-alpine) is admitted only by a range that names a prerelease of the same version.
import semver from 'semver'
import type { TagFilter } from './sync-config.js'

const LENIENT = /^v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/

/** The semver a tag stands for, or null when it is no version. */
export function tagVersion(tag: string): semver.SemVer | null {
  const m = LENIENT.exec(tag)
  if (m === null) return null
  const [, major, minor, patch, pre, build] = m
  return semver.parse(`${major}.${minor ?? '0'}.${patch ?? '0'}${pre ? `-${pre}` : ''}${build ? `+${build}` : ''}`)
}

/** The tags a filter selects from `tags`, in a stable order (versions ascending, then by name). */
export function selectTags(tags: readonly string[], filter: TagFilter | null): string[] {
  const chosen = filter === null ? [...tags] : tags.filter((t) => selects(filter, t))
  return chosen.sort(compareTags)
}

function selects(f: TagFilter, tag: string): boolean {
  if (f.exclude.some((r) => r.test(tag))) return false
  if (f.names.includes(tag)) return true
  if (f.regex.some((r) => r.test(tag))) return true
  if (f.semver.length === 0) return false
  const v = tagVersion(tag)
  return v !== null && f.semver.some((range) => semver.satisfies(v, range))
}

function compareTags(a: string, b: string): number {
  const va = tagVersion(a)
  const vb = tagVersion(b)
  if (va && vb) return semver.compare(va, vb) || (a < b ? -1 : a > b ? 1 : 0)
  if (va) return -1
  if (vb) return 1
  return a < b ? -1 : a > b ? 1 : 0
}
