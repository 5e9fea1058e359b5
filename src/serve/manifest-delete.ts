// DELETE /v2/<name>/manifests/<reference> (distribution-spec "Deleting tags", "Deleting manifests"):
// a tag goes; a digest takes every tag of the repository that names it. The tags are the store's image
// names, removed as `snapdir rm --image` removes them (store/remove-revisions.ts): a snapshot its last
// tag leaves goes with it, its objects to a later gc. A manifest staged by digest alone goes too.
import { removeRevisions } from '../store/remove-revisions.js'
import { listImageTags, type ImageNameRecord } from '../store/image-names.js'
import { isSweepStore, type Store } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import { RegistryError } from './errors.js'
import type { RepositoryImages } from './repository-images.js'
import type { StagedBlobs } from './staged-blobs.js'

/** Removes what `reference` (a tag or a digest) names in `repository`; returns the tags removed. */
export async function deleteManifest(
  store: Store,
  images: RepositoryImages,
  staged: StagedBlobs,
  repository: string,
  reference: string,
  kind: 'tag' | 'digest',
): Promise<ImageNameRecord[]> {
  if (!isSweepStore(store)) throw new RegistryError('UNSUPPORTED', { message: `${store.url} cannot delete` })
  const tags = await listImageTags(store, repository, () => {})
  let doomed: ImageNameRecord[]
  let stagedToo = false
  if (kind === 'tag') {
    doomed = tags.filter((r) => r.tag === reference)
  } else {
    stagedToo = staged.manifest(repository, reference) !== null
    doomed = []
    for (const r of tags) {
      // a record that does not say its digest (written by push --image of a layout) is asked of its image
      const digest = r.digest ?? (await images.image(r).then((i) => i.digest, () => null))
      if (digest === reference) doomed.push(r)
    }
  }
  if (doomed.length === 0 && !stagedToo) {
    throw new RegistryError('MANIFEST_UNKNOWN', { message: `${repository} has no ${kind} ${reference}`, detail: { name: repository, [kind]: reference } })
  }
  if (stagedToo) await staged.drop(repository, [reference])
  if (doomed.length > 0) {
    await removeRevisions(store, [], { images: doomed, onSkip: () => {} }).catch((err: unknown) => {
      // another request removed one of them meanwhile
      if (err instanceof SnapdirError && err.code === 'ERR_BAD_ID') throw new RegistryError('MANIFEST_UNKNOWN', { message: err.message, detail: { name: repository, [kind]: reference } })
      throw err
    })
  }
  return doomed
}
