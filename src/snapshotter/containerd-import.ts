// An image into containerd as `snapdir containerd pull` puts it there, whatever it came from (a store,
// a registry): its manifest and config into containerd's content store, labelled as containerd's
// unpacker labels them; then each layer's snapshot, bottom first, prepared through containerd with the
// label containerd.io/snapshot.ref (and the layer's diff_id), which the snapdir snapshotter answers by
// committing a lazy mount of the layer when its store holds it; last the image's name. All under a
// lease, so containerd's gc takes nothing before the image holds it. The documents and the layers'
// snapshots go in side by side: nothing between them depends on the order under the lease.
//
// A layer the snapshotter does not serve lazily is unpacked as containerd's own unpacker does it
// (containerd 1.6 unpacker.go): its blob fetched into the content store, applied onto the prepared
// snapshot's mounts by containerd's diff service (which checks what it applied against the diff_id
// here), and the snapshot committed under its chain ID; on any failure the prepared snapshot goes.
import { randomBytes } from 'node:crypto'
import type { Readable } from 'node:stream'
import { SnapdirError } from '../util/errors.js'
import { chainId } from './chain-id.js'
import type { ContainerdClient } from './containerd-client.js'
import { DIFF_ID_LABEL, TARGET_LABEL } from './snapshotter.js'

export interface ImportLayer {
  digest: string
  mediaType: string
  size: number
  diffId: string
}

export interface ImageDocuments {
  manifest: { digest: string; mediaType: string; bytes: Buffer }
  config: { digest: string; bytes: Buffer }
  /** bottom first, as the manifest lists them, each with its diff_id from the config */
  layers: ImportLayer[]
}

export interface ContainerdImportOptions {
  /** containerd's socket */
  address: string
  namespace: string
  /** the snapshotter containerd knows snapdir's as (its [proxy_plugins] name) */
  snapshotter: string
  /** the image name in containerd */
  name: string
  /** the blob of a layer the snapshotter does not serve lazily, for containerd to unpack */
  fetchLayer: (layer: ImportLayer) => Promise<Readable>
  log?: (line: string) => void
}

export interface ContainerdPullResult {
  name: string
  manifest: string
  /** each layer's chain ID, and how it got there: served lazily, unpacked (applied), or neither (there already) */
  layers: Array<{ diffId: string; chainId: string; lazy: boolean; applied: boolean }>
}

/**
 * Imports the image whose documents `documents` is reading: the client's set-up and the lease are
 * done meanwhile. Once they are in, the snapshots (the first Prepare starts a lazy layer's mount, what
 * takes longest) and the content store's documents are done side by side; the name comes last.
 */
export async function importImage(documents: Promise<ImageDocuments>, options: ContainerdImportOptions): Promise<ContainerdPullResult> {
  documents.catch(() => {}) // awaited below, after the lease
  // the reads' first requests go out before the CPU-bound set-up of the client holds the thread: gRPC
  // and containerd's protos, loaded here rather than at start, take a tenth of a second and more
  await new Promise((resolve) => setImmediate(resolve))
  const { ContainerdClient } = await import('./containerd-client.js')
  const client = new ContainerdClient(options.address, options.namespace)
  try {
    await client.acquireLease(`snapdir-pull-${randomBytes(6).toString('hex')}`, 3600)
    try {
      const image = await documents
      const chains = image.layers.map((_, i) => chainId(image.layers.slice(0, i + 1).map((l) => l.diffId)))
      const [layers] = await allOrFirstError([importLayers(client, image.layers, chains, options), writeDocuments(client, image, chains.at(-1)!, options.snapshotter)])
      await client.putImage(options.name, { media_type: image.manifest.mediaType, digest: image.manifest.digest, size: image.manifest.bytes.length })
      return { name: options.name, manifest: image.manifest.digest, layers }
    } finally {
      await client.releaseLease()
    }
  } finally {
    client.close()
  }
}

/** The config and the manifest into the content store, labelled as containerd's unpacker labels them. */
async function writeDocuments(client: ContainerdClient, image: ImageDocuments, top: string, snapshotter: string): Promise<void> {
  const manifestLabels: Record<string, string> = { 'containerd.io/gc.ref.content.config': image.config.digest }
  image.layers.forEach((l, i) => (manifestLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest))
  await Promise.all([
    // the config keeps the unpacked snapshot alive, as containerd's unpacker labels it
    client.writeContent(image.config.digest, image.config.bytes, { [`containerd.io/gc.ref.snapshot.${snapshotter}`]: top }),
    client.writeContent(image.manifest.digest, image.manifest.bytes, manifestLabels),
  ])
}

/** Each layer's snapshot, bottom first (each is the parent of the next). */
async function importLayers(client: ContainerdClient, layers: ImportLayer[], chains: string[], options: ContainerdImportOptions): Promise<ContainerdPullResult['layers']> {
  const out: ContainerdPullResult['layers'] = []
  for (const [i, layer] of layers.entries()) {
    const chain = chains[i]!
    const parent = i === 0 ? '' : chains[i - 1]!
    const at = `layer ${i + 1}/${layers.length} ${layer.diffId}`
    if (await client.hasSnapshot(options.snapshotter, chain)) {
      out.push({ diffId: layer.diffId, chainId: chain, lazy: false, applied: false })
      continue
    }
    const key = `extract-${randomBytes(8).toString('hex')} ${chain}`
    const labels = { [TARGET_LABEL]: chain, [DIFF_ID_LABEL]: layer.diffId }
    const mounts = await client.prepare(options.snapshotter, key, parent, labels)
    if (mounts === null) {
      options.log?.(`${at}: served lazily`)
      out.push({ diffId: layer.diffId, chainId: chain, lazy: true, applied: false })
      continue
    }
    try {
      await client.writeBlob(layer.digest, layer.size, () => options.fetchLayer(layer), { 'containerd.io/uncompressed': layer.diffId })
      const applied = await client.applyDiff({ media_type: layer.mediaType, digest: layer.digest, size: layer.size }, mounts)
      if (applied.digest !== layer.diffId) {
        throw new SnapdirError('ERR_IMAGE', `layer ${layer.digest} unpacks to ${applied.digest}, but the image's config gives its diff_id as ${layer.diffId}`)
      }
      await client.commitSnapshot(options.snapshotter, chain, key, labels)
    } catch (err) {
      await client.removeSnapshot(options.snapshotter, key).catch(() => {})
      throw err
    }
    options.log?.(`${at}: unpacked by containerd (not in the snapshotter's store)`)
    out.push({ diffId: layer.diffId, chainId: chain, lazy: false, applied: true })
  }
  return out
}

/** Both results once both are done, or the first failure once neither is still running (the lease is released only then). */
async function allOrFirstError<A, B>(work: [Promise<A>, Promise<B>]): Promise<[A, B]> {
  const [a, b] = await Promise.allSettled(work)
  if (a.status === 'rejected') throw a.reason
  if (b.status === 'rejected') throw b.reason
  return [a.value, b.value]
}
