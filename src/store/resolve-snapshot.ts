// Which snapshot a user means: a full ID, a unique prefix of one (at least 8 hex digits, as git takes
// abbreviated object names), or an image name and tag the store records (image-names.ts). Every
// command that takes a snapshot resolves it here, so each spelling means the same everywhere.
import { SnapdirError, UsageError } from '../util/errors.js'
import { isId } from '../format/id.js'
import { formatImageName, parseImageName, type ImageName } from '../format/image-name.js'
import { readImageName } from './image-names.js'
import { objectDirectory } from './objects.js'
import type { SkippedRecord } from './revisions.js'
import type { ReadStore } from './store.js'

/** A snapshot as the user named it: `id` is 64 hex digits, or a prefix of 8 to 63. */
export type SnapshotRef = { id: string } | { image: ImageName }

/** The shortest prefix taken: 8 hex digits (4 bytes) leave a collision unlikely below ~10,000 snapshots. */
export const ID_PREFIX_MIN = 8

/** A snapshot ID or a prefix of one, as given to --id (usage error otherwise: exit 2, nothing read). */
export function parseSnapshotId(s: string): SnapshotRef {
  const id = s.trim().toLowerCase()
  if (!/^[0-9a-f]+$/.test(id) || id.length > 64) {
    throw new UsageError(`malformed snapshot ID '${s}': expected 64 hex digits (as printed by 'snapdir push'), or a unique prefix of at least ${ID_PREFIX_MIN}`, 'ERR_BAD_ID')
  }
  if (id.length < ID_PREFIX_MIN) {
    throw new UsageError(`snapshot ID prefix '${s}' is too short: give at least ${ID_PREFIX_MIN} hex digits`, 'ERR_BAD_ID')
  }
  return { id }
}

/**
 * Where a command takes either: hex digits alone are an ID or a prefix, anything else NAME[:TAG]
 * (a name of hex digits alone needs its tag: `cafe1234:latest`).
 */
export function parseSnapshotRef(s: string): SnapshotRef {
  return /^[0-9a-fA-F]+$/.test(s.trim()) ? parseSnapshotId(s) : { image: parseImageName(s) }
}

/**
 * The full ID `ref` names in `store` (opened here). A full ID is taken as it is, without a request
 * (what the command does with it says whether the store has it). A prefix is looked up among the
 * store's trees (one listing of trees/<first two digits>/): none, or more than one, is ERR_BAD_ID
 * (exit 2) naming the store, and the candidates. A name the store does not record is ERR_BAD_ID too.
 */
export async function resolveSnapshot(store: ReadStore, ref: SnapshotRef, options: { onSkip?: SkippedRecord } = {}): Promise<string> {
  if ('id' in ref && isId(ref.id)) return ref.id
  if ('image' in ref) {
    // the name is read beside the open, not after it (one store round trip less before a mount is
    // up); when the open fails, its error is the one that says why
    const [opened, read] = await Promise.allSettled([store.open(), readImageName(store, ref.image, options.onSkip)])
    if (opened.status === 'rejected') throw opened.reason
    if (read.status === 'rejected') throw read.reason
    const record = read.value
    if (record === null) {
      throw new SnapdirError('ERR_BAD_ID', `no image ${formatImageName(ref.image)} in ${store.url} (snapdir revisions lists the names it records)`, {
        data: { image: formatImageName(ref.image), store: store.url },
      })
    }
    return record.id
  }
  await store.open()
  const prefix = ref.id
  const dir = `${objectDirectory('tree')}/${prefix.slice(0, 2)}/`
  const found: string[] = []
  for await (const key of store.list(dir)) {
    const id = key.slice(dir.length)
    if (isId(id) && id.startsWith(prefix)) found.push(id)
  }
  found.sort()
  if (found.length === 1) return found[0]!
  if (found.length === 0) {
    throw new SnapdirError('ERR_BAD_ID', `no snapshot with ID prefix ${prefix} in ${store.url} (snapdir revisions lists them)`, { data: { prefix, store: store.url } })
  }
  throw new SnapdirError('ERR_BAD_ID', `snapshot ID prefix ${prefix} is ambiguous in ${store.url}: it begins ${found.join(', ')}; give more digits`, {
    data: { prefix, candidates: found, store: store.url },
  })
}
