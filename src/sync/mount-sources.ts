// Where a stored image's blobs may already be in a registry it is sent to, so that they are mounted
// from that repository (distribution-spec's cross-repository blob mount: POST ?mount=&from=) rather
// than uploaded. The store says where its images came from and what they are called: a revision's
// source (`docker://HOST/REPO:TAG` for a push from a registry) and the image names (HOST/REPO:TAG, as
// a push from a registry records by default). A repository of the same registry that the sent
// snapshot came from is asked for each of its blobs; a repository another snapshot came from is asked
// for the blobs that snapshot holds too. A registry that lacks the blob (or refuses the mount) answers
// with an upload, which is cancelled: a wrong guess costs two requests, and the blob is uploaded as
// it would have been. A handful of repositories at most are asked for one blob.
import { parseImageRef } from '../registry/reference.js'
import { listImageNames } from '../store/image-names.js'
import { readTree } from '../store/objects.js'
import { listRevisions } from '../store/revisions.js'
import type { ReadStore } from '../store/store.js'

/** At most this many repositories are asked for one blob before it is uploaded. */
const MAX_MOUNT_TRIES = 3
/** At most this many other snapshots' bundles are read to find which repositories hold which blobs. */
const MAX_OTHER_SNAPSHOTS = 32

/**
 * For each blob digest, the repositories of `registry` (host[:port] as in references) to mount it
 * from, best first: those snapshot `id` came from, then those of other snapshots holding the blob.
 */
export async function mountSources(store: ReadStore, id: string, registry: string, except: string): Promise<(digest: string) => readonly string[]> {
  const reposOf = new Map<string, string[]>()
  const note = (snapshot: string, repository: string): void => {
    if (repository === except) return
    const list = reposOf.get(snapshot) ?? []
    if (!list.includes(repository)) list.push(repository)
    reposOf.set(snapshot, list)
  }
  for (const r of await listRevisions(store, () => {})) {
    try {
      const ref = parseImageRef(r.source)
      if (ref.registry === registry) note(r.id, ref.repository)
    } catch {
      // not a registry source
    }
  }
  for (const n of await listImageNames(store, () => {})) {
    try {
      const ref = parseImageRef(`docker://${n.name}`)
      if (ref.registry === registry) note(n.id, ref.repository)
    } catch {
      // a name without a registry host
    }
  }
  const own = reposOf.get(id) ?? []
  const byDigest = new Map<string, string[]>()
  const others = [...reposOf].filter(([snapshot]) => snapshot !== id).slice(-MAX_OTHER_SNAPSHOTS)
  for (const [snapshot, repos] of others) {
    const tree = await readTree(store, snapshot).catch(() => null)
    for (const e of tree?.entries ?? []) {
      const m = /^blobs\/(sha256|sha512)\/([0-9a-f]+)$/.exec(e.path.toString())
      if (m === null) continue
      const digest = `${m[1]}:${m[2]}`
      byDigest.set(digest, [...new Set([...(byDigest.get(digest) ?? []), ...repos])])
    }
  }
  return (digest) => [...new Set([...own, ...(byDigest.get(digest) ?? [])])].slice(0, MAX_MOUNT_TRIES)
}
