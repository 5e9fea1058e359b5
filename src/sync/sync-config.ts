// `snapdir sync --config FILE`: the many-to-many sync file (docs/sync-config.md), YAML or JSON (JSON
// is read as YAML 1.2, of which it is a subset, so both get line numbers in errors). The schema is
// regsync's shape (a `sync` list of source and target, per-registry settings, `x-` keys for anchors)
// with skopeo sync's three ways of choosing tags (names, regex, semver) and several targets per
// source, as image-syncer allows. Everything is checked before anything is contacted: a bad file is
// one line naming the file, the line, the field and what was expected (exit 2).
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import semver from 'semver'
import { LineCounter, isMap, isNode, isScalar, isSeq, parseDocument, type Document } from 'yaml'
import { parsePlatform, type Platform } from '../oci/platform.js'
import { isImageRef, parseImageRef, type ImageRef } from '../registry/reference.js'
import { isErrno, UsageError } from '../util/errors.js'

/** How a registry is reached: regsync's three TLS modes. */
export type TlsMode = 'enabled' | 'insecure' | 'disabled'

/** Settings for one registry host[:port], from `registries:`. */
export interface RegistrySettings {
  host: string
  username?: string
  /** resolved at load from password, passwordFile or passwordEnv */
  password?: string
  /** a docker config.json (or the directory holding one) to take this registry's login from (auths, credHelpers, credsStore) */
  dockerConfig?: string
  /** absent: HTTPS, verified, and plain HTTP for a loopback registry, as docker does */
  tls?: TlsMode
  /** PEM file of the CA that signs the registry's certificate */
  caFile?: string
  /** a certificate directory as skopeo's --cert-dir: CAs (*.crt), a client certificate (NAME.cert, NAME.key) */
  certDir?: string
}

/** A registry repository (optionally one tag or one digest) or a store, as the file names it. */
export type Location =
  | { kind: 'registry'; text: string; host: string; repository: string; tag?: string; digest?: string }
  | { kind: 'store'; text: string; url: string }

/** Which tags of a repository: any of names, regex, semver (each OR'ed), then minus exclude. */
export interface TagFilter {
  names: string[]
  regex: RegExp[]
  semver: string[]
  exclude: RegExp[]
}

export interface SyncEntry {
  /** where the entry sits in the file (`sync[3]`), named in messages */
  field: string
  source: Location
  targets: Location[]
  /** null: every tag (or the one the source names) */
  tags: TagFilter | null
  /** null: every platform the source has */
  platforms: Platform[] | null
  /** snapshot IDs, for a store source */
  ids: string[]
}

export interface SyncConfig {
  file: string
  /** images copied at once (`defaults.jobs`), unless --jobs says otherwise */
  jobs?: number
  registries: Map<string, RegistrySettings>
  entries: SyncEntry[]
}

type Path = Array<string | number>

/** A config problem: one line with the file, the line, the field and what was expected (exit 2). */
export class ConfigError extends UsageError {
  constructor(message: string) {
    super(message, 'ERR_BAD_CONFIG')
    this.name = 'ConfigError'
  }
}

/** Reads and checks a sync config file; relative paths in it are relative to its directory. */
export function loadSyncConfig(file: string, env: NodeJS.ProcessEnv = process.env): SyncConfig {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const why = isErrno(err, 'ENOENT') ? 'no such file' : isErrno(err, 'EISDIR') ? 'a directory, not a file' : (err as Error).message
    throw new ConfigError(`${file}: cannot read the sync config: ${why}`)
  }
  return parseSyncConfig(text, file, env)
}

export function parseSyncConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): SyncConfig {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: true, strict: true, merge: true })
  const bad = doc.errors[0]
  if (bad !== undefined) {
    const at = bad.linePos?.[0]
    const first = bad.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')
    throw new ConfigError(`${file}${at ? `:${at.line}:${at.col}` : ''}: not valid YAML or JSON: ${first}`)
  }
  return new ConfigReader(file, doc, lines, env).read()
}

const TOP_KEYS = ['version', 'defaults', 'registries', 'sync']
const DEFAULT_KEYS = ['jobs', 'platforms']
const REGISTRY_KEYS = ['username', 'password', 'passwordFile', 'passwordEnv', 'dockerConfig', 'tls', 'caFile', 'certDir']
const ENTRY_KEYS = ['source', 'target', 'targets', 'tags', 'platforms', 'ids']
const TAG_KEYS = ['names', 'regex', 'semver', 'exclude']
const TLS_MODES: readonly TlsMode[] = ['enabled', 'insecure', 'disabled']

const EXPECTED_LOCATION = 'docker://HOST[:PORT]/REPO[:TAG|@DIGEST], or a store (a path, file:///path, s3://bucket/prefix, gs://bucket/prefix)'

class ConfigReader {
  private readonly dir: string

  constructor(
    private readonly file: string,
    private readonly doc: Document,
    private readonly lines: LineCounter,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    this.dir = path.dirname(path.resolve(file))
  }

  read(): SyncConfig {
    const top = this.object([], this.doc.toJS({ maxAliasCount: 1000 }) as unknown, TOP_KEYS)
    if (top.version !== undefined && top.version !== 1) this.fail(['version'], 'version 1 (the only one there is), or no version', top.version)
    const defaults = top.defaults === undefined ? {} : this.object(['defaults'], top.defaults, DEFAULT_KEYS)
    const jobs = defaults.jobs === undefined ? undefined : this.integer(['defaults', 'jobs'], defaults.jobs, 1, 256)
    const defaultPlatforms = defaults.platforms === undefined ? null : this.platforms(['defaults', 'platforms'], defaults.platforms)
    const registries = new Map<string, RegistrySettings>()
    if (top.registries !== undefined) {
      const all = this.object(['registries'], top.registries, null)
      for (const [host, value] of Object.entries(all)) registries.set(host, this.registry(host, value))
    }
    if (top.sync === undefined) this.fail([], 'a `sync:` list of entries with a source and targets', undefined, 'sync')
    const list = this.list(['sync'], top.sync, 'a list of entries, each with a source and targets')
    if (list.length === 0) this.fail(['sync'], 'at least one entry', list)
    const entries = list.map((e, i) => this.entry(['sync', i], e, defaultPlatforms))
    return { file: this.file, ...(jobs === undefined ? {} : { jobs }), registries, entries }
  }

  private registry(host: string, value: unknown): RegistrySettings {
    const at: Path = ['registries', host]
    if (!/^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$/.test(host)) {
      this.fail(at, 'a registry as HOST[:PORT] (no scheme, no path), e.g. registry.example.org or localhost:5000', host, 'key')
    }
    const r = this.object(at, value ?? {}, REGISTRY_KEYS)
    const settings: RegistrySettings = { host }
    if (r.tls !== undefined) {
      if (typeof r.tls !== 'string' || !(TLS_MODES as readonly string[]).includes(r.tls)) this.fail([...at, 'tls'], `one of ${TLS_MODES.join(', ')}`, r.tls)
      settings.tls = r.tls as TlsMode
    }
    if (r.caFile !== undefined) {
      settings.caFile = this.path([...at, 'caFile'], r.caFile)
      if (settings.tls !== undefined && settings.tls !== 'enabled') this.fail([...at, 'caFile'], 'no caFile unless tls is enabled (a CA only matters when certificates are verified)', r.caFile)
    }
    if (r.certDir !== undefined) {
      settings.certDir = this.path([...at, 'certDir'], r.certDir)
      if (settings.tls === 'disabled') this.fail([...at, 'certDir'], 'no certDir when tls is disabled (plain HTTP has no certificates)', r.certDir)
      if (!existsSync(settings.certDir)) this.fail([...at, 'certDir'], `a directory of *.crt (and NAME.cert, NAME.key) files (there is no ${settings.certDir})`, r.certDir)
    }
    const secrets = (['password', 'passwordFile', 'passwordEnv'] as const).filter((k) => r[k] !== undefined)
    if (secrets.length > 1) this.fail([...at, secrets[1]!], `one of password, passwordFile, passwordEnv, not ${secrets.join(' and ')}`, r[secrets[1]!])
    if (r.username !== undefined) settings.username = this.string([...at, 'username'], r.username)
    if (secrets.length === 1 && settings.username === undefined) this.fail(at, `a username with ${secrets[0]}`, undefined, 'username')
    if (settings.username !== undefined && secrets.length === 0) this.fail([...at], 'password, passwordFile or passwordEnv with username', undefined, 'password')
    if (r.password !== undefined) settings.password = this.string([...at, 'password'], r.password)
    if (r.passwordFile !== undefined) {
      const p = this.path([...at, 'passwordFile'], r.passwordFile)
      try {
        settings.password = readFileSync(p, 'utf8').replace(/\r?\n$/, '')
      } catch (err) {
        this.fail([...at, 'passwordFile'], `a readable file (${isErrno(err, 'ENOENT') ? 'there is no such file' : (err as Error).message})`, r.passwordFile)
      }
    }
    if (r.passwordEnv !== undefined) {
      const name = this.string([...at, 'passwordEnv'], r.passwordEnv)
      const v = this.env[name]
      if (v === undefined || v === '') this.fail([...at, 'passwordEnv'], `the name of a set environment variable (${name} is not set)`, name)
      settings.password = v
    }
    if (r.dockerConfig !== undefined) {
      if (settings.username !== undefined) this.fail([...at, 'dockerConfig'], 'either username and a password, or dockerConfig, not both', r.dockerConfig)
      const p = this.path([...at, 'dockerConfig'], r.dockerConfig)
      const file = p.endsWith('.json') ? p : path.join(p, 'config.json')
      if (!existsSync(file)) this.fail([...at, 'dockerConfig'], `a docker config.json, or the directory holding one (there is no ${file})`, r.dockerConfig)
      settings.dockerConfig = p
    }
    return settings
  }

  private entry(at: Path, value: unknown, defaultPlatforms: Platform[] | null): SyncEntry {
    const e = this.object(at, value, ENTRY_KEYS)
    if (e.source === undefined) this.fail(at, 'a source', undefined, 'source')
    const source = this.location([...at, 'source'], e.source)
    if (e.target !== undefined && e.targets !== undefined) this.fail([...at, 'targets'], 'target (one) or targets (a list), not both', e.targets)
    let targets: Location[]
    if (e.target !== undefined) targets = [this.location([...at, 'target'], e.target)]
    else if (e.targets !== undefined) {
      const list = this.list([...at, 'targets'], e.targets, 'a list of targets')
      if (list.length === 0) this.fail([...at, 'targets'], 'at least one target', list)
      targets = list.map((t, i) => this.location([...at, 'targets', i], t))
    } else this.fail(at, 'a target (or targets, a list)', undefined, 'target')
    const seen = new Set<string>()
    for (const [i, t] of targets.entries()) {
      const field: Path = e.target !== undefined ? [...at, 'target'] : [...at, 'targets', i]
      const key = locationKey(t)
      if (seen.has(key)) this.fail(field, 'each target once', t.text)
      seen.add(key)
      if (key === locationKey(source)) this.fail(field, 'a target other than the source', t.text)
      if (t.kind === 'registry' && t.digest !== undefined) this.fail(field, 'a repository or REPO:TAG as the target (a digest is the image itself, not a place)', t.text)
      if (t.kind === 'registry' && t.tag !== undefined && !(source.kind === 'registry' && (source.tag !== undefined || source.digest !== undefined)) && !(source.kind === 'store' && Array.isArray(e.ids) && e.ids.length === 1)) {
        this.fail(field, 'a repository without a tag (each tag keeps its name), unless the source is one image', t.text)
      }
      if (t.kind === 'registry' && t.tag === undefined && source.kind === 'store') {
        this.fail(field, 'docker://HOST/REPO:TAG (a snapshot from a store has no tag of its own to keep)', t.text)
      }
    }
    let tags: TagFilter | null = null
    if (e.tags !== undefined) {
      if (source.kind !== 'registry') this.fail([...at, 'tags'], 'no tags for a store source (it names snapshots by ids)', e.tags)
      if (source.tag !== undefined || source.digest !== undefined) this.fail([...at, 'tags'], `no tags when the source names one image (${source.text})`, e.tags)
      tags = this.tagFilter([...at, 'tags'], e.tags)
    }
    const ids: string[] = []
    if (e.ids !== undefined) {
      if (source.kind !== 'store') this.fail([...at, 'ids'], 'ids only for a store source (a registry source chooses by tags)', e.ids)
      const list = this.list([...at, 'ids'], e.ids, 'a list of snapshot IDs')
      if (list.length === 0) this.fail([...at, 'ids'], 'at least one snapshot ID', list)
      for (const [i, id] of list.entries()) {
        if (typeof id !== 'string' || !/^[0-9a-f]{64}$/.test(id)) this.fail([...at, 'ids', i], 'a snapshot ID (64 lower-case hex digits)', id)
        ids.push(id)
      }
    } else if (source.kind === 'store') this.fail(at, 'ids: the snapshots to copy from the store', undefined, 'ids')
    const platforms = e.platforms === undefined ? defaultPlatforms : this.platforms([...at, 'platforms'], e.platforms)
    return { field: fieldName(at), source, targets, tags, platforms, ids }
  }

  private tagFilter(at: Path, value: unknown): TagFilter {
    const t = this.object(at, value, TAG_KEYS)
    const strings = (k: string): string[] => {
      if (t[k] === undefined) return []
      const list = this.list([...at, k], t[k], 'a list of strings')
      return list.map((s, i) => this.string([...at, k, i], s))
    }
    const regex = (k: string): RegExp[] =>
      strings(k).map((s, i) => {
        try {
          // anchored, as regsync does: `v1` does not select `v10`
          return new RegExp(`^(?:${s})$`, 'u')
        } catch (err) {
          return this.fail([...at, k, i], `a regular expression (${(err as Error).message.replace(/^Invalid regular expression: /, '')})`, s)
        }
      })
    const names = strings('names')
    for (const [i, n] of names.entries()) if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(n)) this.fail([...at, 'names', i], 'a tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127})', n)
    const ranges = strings('semver')
    for (const [i, r] of ranges.entries()) if (semver.validRange(r) === null) this.fail([...at, 'semver', i], "a semver range such as '>=1.2.0 <2' or '~3.19'", r)
    const filter = { names, regex: regex('regex'), semver: ranges, exclude: regex('exclude') }
    if (filter.names.length + filter.regex.length + filter.semver.length === 0) this.fail(at, 'names, regex or semver (leave tags out to copy every tag)', value)
    return filter
  }

  private location(at: Path, value: unknown): Location {
    const text = this.string(at, value)
    if (isImageRef(text)) {
      let ref: ImageRef
      try {
        ref = parseImageRef(text)
      } catch (err) {
        // the reference parser's reason, without its own "bad image reference" framing
        const why = /^bad image reference ".*?": (.*?); expected /.exec((err as Error).message)?.[1] ?? (err as Error).message
        return this.fail(at, `docker://HOST[:PORT]/REPO[:TAG|@sha256:DIGEST] (${why})`, text)
      }
      return { kind: 'registry', text, host: ref.registry, repository: ref.repository, ...(ref.tag !== undefined ? { tag: ref.tag } : {}), ...(ref.digest !== undefined ? { digest: ref.digest } : {}) }
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text) && !/^(file|s3|gs):\/\//i.test(text)) this.fail(at, EXPECTED_LOCATION, text)
    if (text.trim() === '') this.fail(at, EXPECTED_LOCATION, text)
    if (/^(s3|gs):\/\//i.test(text) && !/^[a-z0-9]+:\/\/[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](\/|$)/.test(text)) this.fail(at, 's3://BUCKET/PREFIX or gs://BUCKET/PREFIX with a valid bucket name', text)
    const url = /^[a-z0-9+.-]+:\/\//i.test(text) ? text : path.resolve(this.dir, text)
    return { kind: 'store', text, url }
  }

  private platforms(at: Path, value: unknown): Platform[] {
    const list = this.list(at, value, 'a list of platforms such as linux/amd64')
    if (list.length === 0) this.fail(at, 'at least one platform (leave platforms out to copy every platform)', list)
    return list.map((p, i) => {
      const s = this.string([...at, i], p)
      try {
        return parsePlatform(s)
      } catch {
        return this.fail([...at, i], 'os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8', s)
      }
    })
  }

  private path(at: Path, value: unknown): string {
    const s = this.string(at, value)
    const home = process.env.HOME
    if (s.startsWith('~/') && home) return path.join(home, s.slice(2))
    return path.resolve(this.dir, s)
  }

  // ---- shapes

  private object(at: Path, value: unknown, keys: readonly string[] | null): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      this.fail(at, at.length === 0 ? 'a mapping with a `sync:` list' : 'a mapping of keys to values', value)
    }
    const o = value as Record<string, unknown>
    if (keys !== null) {
      for (const k of Object.keys(o)) {
        // x- keys are the user's own (regsync's convention: YAML anchors, notes for other tools)
        if (!keys.includes(k) && !k.startsWith('x-')) this.fail([...at, k], `one of the keys ${keys.join(', ')} (or x-… for your own)`, undefined, 'key')
      }
    }
    return o
  }

  private list(at: Path, value: unknown, expected: string): unknown[] {
    if (!Array.isArray(value)) this.fail(at, expected, value)
    return value as unknown[]
  }

  private string(at: Path, value: unknown): string {
    if (typeof value !== 'string') this.fail(at, 'a string', value)
    return value
  }

  private integer(at: Path, value: unknown, min: number, max: number): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) this.fail(at, `an integer from ${min} to ${max}`, value)
    return value
  }

  /**
   * Throws the one line: FILE:LINE: FIELD: expected WHAT, got VALUE. `missing` names a key that is
   * absent (its parent's line is given); `key` marks a key that should not be there.
   */
  private fail(at: Path, expected: string, got: unknown, missing?: string): never {
    const line = this.lineOf(at)
    const where = `${this.file}${line === null ? '' : `:${line}`}`
    if (missing === 'key') throw new ConfigError(`${where}: ${fieldName(at)}: unexpected ${at.length > 0 && typeof at.at(-1) === 'string' ? 'key' : 'value'}; expected ${expected}`)
    if (missing !== undefined) throw new ConfigError(`${where}: ${fieldName([...at, missing])}: missing; expected ${expected}`)
    throw new ConfigError(`${where}: ${fieldName(at) || '(top level)'}: expected ${expected}, got ${got === undefined ? 'nothing' : describe(got)}`)
  }

  /** The line of the field at `at` (a key's own line), or of its nearest parent there is; 1-based. */
  private lineOf(at: Path): number | null {
    for (let n = at.length; n >= 0; n--) {
      const parent: unknown = n <= 1 ? this.doc.contents : this.doc.getIn(at.slice(0, n - 1), true)
      const last = at[n - 1]
      let node: unknown = n === 0 ? this.doc.contents : undefined
      if (n > 0 && isMap(parent)) node = parent.items.find((pair) => isScalar(pair.key) && pair.key.value === last)?.key
      else if (n > 0 && isSeq(parent) && typeof last === 'number') node = parent.items[last]
      if (isNode(node) && node.range) return this.lines.linePos(node.range[0]).line
    }
    return null
  }
}

/** `sync[0].tags.regex[1]`, `registries["localhost:5000"].tls` */
function fieldName(at: Path): string {
  let s = ''
  for (const p of at) {
    if (typeof p === 'number') s += `[${p}]`
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(p)) s += s === '' ? p : `.${p}`
    else s += `[${JSON.stringify(p)}]`
  }
  return s
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return `a list of ${v.length}`
  if (typeof v === 'object') return 'a mapping'
  if (typeof v === 'string') return JSON.stringify(v)
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} ${v}`
  return typeof v
}

/** A key naming a location exactly, to find duplicates and a target equal to its source. */
export function locationKey(l: Location): string {
  return l.kind === 'store' ? `store ${l.url}` : `docker://${l.host}/${l.repository}${l.tag ? `:${l.tag}` : ''}${l.digest ? `@${l.digest}` : ''}`
}
