// A stored image sent into a registry (pull docker://…, sync from a store to a registry) by
// send-image.ts, its blobs mounted from repositories of that registry the store's records name
// (mount-sources.ts), read straight out of the store: the layout's documents from its bundle tree, its layers streamed from their chunks or
// regenerated from their recipes and hashed as they go, nothing written to disk. Its digests are the
// pushed layout's, byte for byte.
import { readTree } from '../store/objects.js'
import { checkStoreFormat } from '../store/store-config.js'
import type { ReadStore } from '../store/store.js'
import { imageError } from '../oci/layout-problem.js'
import { StoredBlobs } from '../oci/stored-blobs.js'
import { storedImageEntry } from '../oci/stored-image.js'
import { planTransfer, type TransferOptions } from '../oci/transfer-plan.js'
import { mountSources } from './mount-sources.js'
import { sendImage, type ImageDestination, type SendOptions, type SendSummary } from './send-image.js'
import { SnapdirError } from '../util/errors.js'

export interface RegistryTarget {
  repository: string
  tag?: string
  /** the digest the image must have (`docker://…@sha256:…`) */
  digest?: string
}

export interface SendStoredImageOptions extends SendOptions, TransferOptions {
  /** which image of the layout (a ref name or a manifest digest); by default its only one, else the one listed under the tag */
  image?: string
}

export interface StoredImageSummary extends SendSummary {
  /** the image sent is an index cut down to the platforms asked for, so its digest is not the pushed one */
  rewritten: boolean
}

/**
 * Sends the image of snapshot `id` into `target` of `to`: under its tag, or by its digest alone
 * (`latest` when the target names neither, as docker does).
 */
export async function sendStoredImage(store: ReadStore, id: string, to: ImageDestination, target: RegistryTarget, options: SendStoredImageOptions = {}): Promise<StoredImageSummary> {
  const shown = `snapshot ${id.slice(0, 16)}…`
  await store.open()
  await checkStoreFormat(store)
  const bundle = await readTree(store, id)
  const top = await storedImageEntry(store, id, bundle, { ...(options.image !== undefined ? { image: options.image } : {}), ...(target.tag !== undefined ? { tag: target.tag } : {}) })
  const plan = await planTransfer(new StoredBlobs(store, bundle), top, options).catch((err: unknown) => {
    throw imageError(err, 'ERR_IMAGE', shown, { id })
  })
  const digest = plan.manifests.at(-1)!.digest
  if (target.digest !== undefined && target.digest !== digest) {
    throw new SnapdirError('ERR_IMAGE', `${shown}: its image has digest ${digest}, not ${target.digest}; name a tag, or that digest`)
  }
  const reference = target.tag ?? target.digest ?? 'latest'
  // blobs another repository of that registry holds, as the store's records say, are mounted from it
  const mountFrom = options.mountFrom ?? (to.registry !== undefined ? await mountSources(store, id, to.registry, target.repository) : undefined)
  return { ...(await sendImage(plan, to, target.repository, reference, { ...options, ...(mountFrom ? { mountFrom } : {}) })), rewritten: plan.rewritten }
}
