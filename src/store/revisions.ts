// The revisions log, the only mutable part of a store: one small JSON object per push under
// refs/revisions/, named so that names sort by time. One object per revision (rather than one
// appended file) keeps concurrent pushes from racing, on a disk and on S3 alike.
import type { ImageLayer } from './layer-refs.js'
import { randomBytes } from 'node:crypto'
import type { ReadStore, Store } from './store.js'
import { readRefRecord, warnOnStderr, type SkippedRecord } from './ref-record.js'

const PREFIX = 'refs/revisions/'

export interface Revision {
  created_at: string
  id: string
  previous_id: string | null
  name: string
  size: number
  source: string
  /**
   * For the push of an OCI image layout: its layers (each distinct digest once), with the expanded
   * tree of each (oci/image-layers.ts). Absent in other revisions and in those of older versions.
   */
  image?: { layers: ImageLayer[] }
}

export type { SkippedRecord }
/** Told about each record listRevisions skips. */
export type SkippedRevision = SkippedRecord

/**
 * The revisions, oldest first. A record that is not a revision (not JSON, or without the fields every
 * revision has) is skipped and reported through `onSkip`: one stray or truncated file must not make
 * the whole store unlistable, unpushable and unsyncable.
 */
export async function listRevisions(store: ReadStore, onSkip: SkippedRevision = warnOnStderr): Promise<Revision[]> {
  return (await listRevisionRecords(store, onSkip)).map((r) => r.revision)
}

/** A revision and the key of its record (what rm and gc delete). */
export interface RevisionRecord {
  key: string
  revision: Revision
}

/** listRevisions, with each record's key. */
export async function listRevisionRecords(store: ReadStore, onSkip: SkippedRevision = warnOnStderr): Promise<RevisionRecord[]> {
  const keys: string[] = []
  for await (const key of store.list(PREFIX)) keys.push(key)
  keys.sort()
  const out: RevisionRecord[] = []
  for (const key of keys) {
    const value = await readRefRecord(store, key, revisionProblem, onSkip)
    if (value !== null) out.push({ key, revision: value as Revision })
  }
  return out
}

/** Why `value` is not a revision record, or null when it is one. */
function revisionProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object'
  const r = value as Record<string, unknown>
  for (const field of ['id', 'name', 'created_at'] as const) {
    if (typeof r[field] !== 'string') return `no string field "${field}"`
  }
  if (!/^[0-9a-f]{64}$/.test(r.id as string)) return `"id" is not a snapshot ID`
  if (r.previous_id !== null && r.previous_id !== undefined && typeof r.previous_id !== 'string') return '"previous_id" is not a string'
  if (r.image !== undefined) {
    const layers = typeof r.image === 'object' && r.image !== null ? (r.image as { layers?: unknown }).layers : undefined
    if (!Array.isArray(layers)) return '"image" has no list of layers'
    const isLayer = (l: unknown) =>
      typeof l === 'object' && l !== null && ['digest', 'diffId', 'tree'].every((f) => typeof (l as Record<string, unknown>)[f] === 'string')
    if (!layers.every(isLayer)) return 'a layer in "image" lacks digest, diffId or tree'
  }
  return null
}

/** Records a revision; previous_id is the latest earlier revision of the same name. */
export async function addRevision(store: Store, rev: Omit<Revision, 'previous_id' | 'created_at'>, now = new Date()): Promise<Revision> {
  const earlier = (await listRevisions(store)).filter((r) => r.name === rev.name)
  const record: Revision = {
    created_at: now.toISOString(),
    id: rev.id,
    previous_id: earlier.at(-1)?.id ?? null,
    name: rev.name,
    size: rev.size,
    source: rev.source,
    ...(rev.image ? { image: rev.image } : {}),
  }
  const stamp = now.toISOString().replace(/[-:.]/g, '')
  await store.put(`${PREFIX}${stamp}-${rev.id.slice(0, 16)}-${randomBytes(4).toString('hex')}.json`, Buffer.from(JSON.stringify(record) + '\n'))
  return record
}
