// The revisions log, the only mutable part of a store: one small JSON object per push under
// refs/revisions/, named so that names sort by time. One object per revision (rather than one
// appended file) keeps concurrent pushes from racing, on a disk and on S3 alike.
import type { ImageLayer } from './layer-refs.js'
import { randomBytes } from 'node:crypto'
import { SnapdirError } from '../util/errors.js'
import type { Store } from './store.js'

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

export async function listRevisions(store: Store): Promise<Revision[]> {
  const keys: string[] = []
  for await (const key of store.list(PREFIX)) keys.push(key)
  keys.sort()
  const out: Revision[] = []
  for (const key of keys) {
    const raw = await store.get(key)
    try {
      out.push(JSON.parse(raw.toString('utf8')) as Revision)
    } catch {
      throw new SnapdirError('ERR_STORE_IO', `store ${store.url}: revision ${key} is not JSON`)
    }
  }
  return out
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
