// `snapdir containerd pull --store URL --id ID`: an image of a store into containerd without its
// layers (as stargz's `ctr-remote image rpull` does). containerd 1.6's own pull fetches every layer
// before it unpacks, and sends no label naming the snapshot it will commit, so a snapshotter cannot
// serve layers lazily behind it. This pull reads the manifest and the config from the store and hands
// them to containerd-import.ts, which has the snapdir snapshotter serve each layer from its store;
// `ctr run --snapshotter snapdir NAME` then starts at once. A layer the snapshotter's store lacks (it
// runs on another store) is streamed from this store (regenerated from its recipe, verified) and
// unpacked by containerd. The documents are read while containerd-import.ts sets up its client.
import { Readable } from 'node:stream'
import { printablePath } from '../format/tree-paths.js'
import { treeFileContent } from '../oci/archive-member.js'
import { StoredBlobs } from '../oci/stored-blobs.js'
import { resolveStoredImage, type ImageSelection } from '../oci/stored-image.js'
import { readTree } from '../store/objects.js'
import type { ReadStore } from '../store/store.js'
import { readTreeFile } from '../store/tree-file.js'
import { SnapdirError } from '../util/errors.js'
import { importImage, type ContainerdImportOptions, type ContainerdPullResult, type ImageDocuments } from './containerd-import.js'

const MAX_DOCUMENT = 4 << 20

export type ContainerdPullOptions = ImageSelection & Omit<ContainerdImportOptions, 'fetchLayer'>
export type { ContainerdPullResult }

export async function containerdPull(store: ReadStore, id: string, options: ContainerdPullOptions): Promise<ContainerdPullResult> {
  const reading = readStoredImage(store, id, options)
  // a layer's blob is asked for only after the documents are in
  const fetchLayer = async (layer: { digest: string }): Promise<Readable> => (await reading).layerBlob(layer.digest)
  return importImage(
    reading.then((r) => r.documents),
    { ...options, fetchLayer },
  )
}

/** The image's documents as containerd takes them, and the blob of each of its layers. */
async function readStoredImage(store: ReadStore, id: string, select: ImageSelection): Promise<{ documents: ImageDocuments; layerBlob: (digest: string) => Readable }> {
  const bundle = await readTree(store, id)
  const image = await resolveStoredImage(store, id, bundle, select)
  if (!image.manifest.startsWith('sha256:')) {
    throw new SnapdirError('ERR_IMAGE', `snapshot ${id} is a Docker image archive, which has no manifest to give containerd: push it as an OCI layout (snapdir pull --tar --format oci-archive, then push that)`)
  }
  const blobs = new StoredBlobs(store, bundle)
  const [manifestBytes, configBytes] = await Promise.all([blobs.readFile(`blobs/sha256/${image.manifest.slice('sha256:'.length)}`, MAX_DOCUMENT), readTreeFile(store, image.config, MAX_DOCUMENT)])
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as { mediaType?: string; config: { digest: string }; layers: Array<{ mediaType: string }> }
  const files = new Map(image.layers.map((l) => [l.digest, l.file]))
  return {
    documents: {
      manifest: { digest: image.manifest, mediaType: manifest.mediaType ?? 'application/vnd.oci.image.manifest.v1+json', bytes: manifestBytes },
      config: { digest: manifest.config.digest, bytes: configBytes },
      layers: image.layers.map((l, i) => ({ digest: l.digest, size: l.size, diffId: l.diffId, mediaType: manifest.layers[i]?.mediaType ?? '' })),
    },
    layerBlob: (digest) => {
      const file = files.get(digest)
      const entry = bundle.entries.find((e) => e.type === 'file' && printablePath(e.path) === file)
      if (entry === undefined) throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `snapshot ${id}: layer ${digest} has no file ${String(file)} in the bundle`)
      return Readable.from(treeFileContent(store, entry))
    },
  }
}
