// `snapdir containerd pull`: an image of a store into containerd without its layers (as stargz's
// `ctr-remote image rpull` does). containerd 1.6's own pull fetches every layer before it unpacks, and
// sends no label naming the snapshot it will commit, so a snapshotter cannot serve layers lazily
// behind it. This pull writes the manifest and the config into containerd's content store, labelled as
// containerd's unpacker labels them, then prepares each layer's snapshot through containerd with the
// label containerd.io/snapshot.ref (and the layer's diff_id), which the snapdir snapshotter answers by
// committing a lazy mount of the layer; last it names the image. All under a lease, so containerd's
// gc takes nothing before the image holds it. `ctr run --snapshotter snapdir NAME` then starts at once.
import { randomBytes } from 'node:crypto'
import { StoredBlobs } from '../oci/stored-blobs.js'
import { resolveStoredImage, type ImageSelection } from '../oci/stored-image.js'
import { readTree } from '../store/objects.js'
import type { ReadStore } from '../store/store.js'
import { readTreeFile } from '../store/tree-file.js'
import { SnapdirError } from '../util/errors.js'
import { chainId } from './chain-id.js'
import { ContainerdClient } from './containerd-client.js'
import { DIFF_ID_LABEL, TARGET_LABEL } from './snapshotter.js'

const MAX_DOCUMENT = 4 << 20

export interface ContainerdPullOptions extends ImageSelection {
  /** containerd's socket */
  address: string
  namespace: string
  /** the snapshotter containerd knows snapdir's as (its [proxy_plugins] name) */
  snapshotter: string
  /** the image name in containerd */
  name: string
  log?: (line: string) => void
}

export interface ContainerdPullResult {
  name: string
  manifest: string
  /** each layer's chain ID, and whether the snapshotter serves it lazily (false: it was there already) */
  layers: Array<{ diffId: string; chainId: string; lazy: boolean }>
}

export async function containerdPull(store: ReadStore, id: string, options: ContainerdPullOptions): Promise<ContainerdPullResult> {
  const bundle = await readTree(store, id)
  const image = await resolveStoredImage(store, id, bundle, options)
  if (!image.manifest.startsWith('sha256:')) {
    throw new SnapdirError('ERR_IMAGE', `snapshot ${id} is a Docker image archive, which has no manifest to give containerd: push it as an OCI layout (snapdir pull --tar --format oci-archive, then push that)`)
  }
  const blobs = new StoredBlobs(store, bundle)
  const manifestBytes = await blobs.readFile(`blobs/sha256/${image.manifest.slice('sha256:'.length)}`, MAX_DOCUMENT)
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as { mediaType?: string; config: { digest: string; mediaType: string; size: number } }
  const configBytes = await readTreeFile(store, image.config, MAX_DOCUMENT)
  const diffIds = image.layers.map((l) => l.diffId)
  const chains = diffIds.map((_, i) => chainId(diffIds.slice(0, i + 1)))
  const top = chains.at(-1)!
  const client = new ContainerdClient(options.address, options.namespace)
  const result: ContainerdPullResult = { name: options.name, manifest: image.manifest, layers: [] }
  try {
    await client.acquireLease(`snapdir-pull-${randomBytes(6).toString('hex')}`, 3600)
    try {
      // the config keeps the unpacked snapshot alive, as containerd's unpacker labels it
      await client.writeContent(manifest.config.digest, configBytes, { [`containerd.io/gc.ref.snapshot.${options.snapshotter}`]: top })
      const manifestLabels: Record<string, string> = { 'containerd.io/gc.ref.content.config': manifest.config.digest }
      image.layers.forEach((l, i) => (manifestLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest))
      await client.writeContent(image.manifest, manifestBytes, manifestLabels)
      for (const [i, diffId] of diffIds.entries()) {
        const chain = chains[i]!
        const parent = i === 0 ? '' : chains[i - 1]!
        if (await client.hasSnapshot(options.snapshotter, chain)) {
          result.layers.push({ diffId, chainId: chain, lazy: false })
          continue
        }
        const key = `extract-${randomBytes(8).toString('hex')} ${chain}`
        const labels = { [TARGET_LABEL]: chain, [DIFF_ID_LABEL]: diffId }
        const mounts = await client.prepare(options.snapshotter, key, parent, labels)
        if (mounts !== null) {
          // the snapshotter would have containerd unpack it: it is not snapdir's, or lacks the store
          await client.removeSnapshot(options.snapshotter, key).catch(() => {})
          throw new SnapdirError(
            'ERR_TARGET',
            `containerd's snapshotter "${options.snapshotter}" did not serve layer ${diffId} lazily: is it snapdir's, started with --store on the store this image is in?`,
          )
        }
        options.log?.(`layer ${i + 1}/${diffIds.length} ${diffId}: served lazily`)
        result.layers.push({ diffId, chainId: chain, lazy: true })
      }
      await client.putImage(options.name, { media_type: manifest.mediaType ?? 'application/vnd.oci.image.manifest.v1+json', digest: image.manifest, size: manifestBytes.length })
    } finally {
      await client.releaseLease()
    }
  } finally {
    client.close()
  }
  return result
}
