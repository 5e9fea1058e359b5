// A stored Docker image archive written out as an OCI image layout in one tar, what
// `skopeo copy oci-archive:`, `ctr image import` and `docker load` (Docker 25+) read
// (pull --tar --format oci-archive; https://github.com/opencontainers/image-spec/blob/v1.1.0/image-layout.md).
// A Docker archive's layers are uncompressed tars, so each becomes an uncompressed OCI layer whose
// digest is its diff_id, checked as it is written; its config goes in as it is, under its sha256; the
// manifest and index.json are new, so their digests are snapdir's. Each RepoTag becomes an entry of
// index.json named as containerd and Docker name them: `io.containerd.image.name` the whole reference,
// `org.opencontainers.image.ref.name` its tag (what `oci-archive:FILE:TAG` picks).
import { createHash } from 'node:crypto'
import type { Tree } from '../format/tree.js'
import type { ReadStore } from '../store/store.js'
import { findEntry, readTreeFile } from '../store/tree-file.js'
import { SnapdirError } from '../util/errors.js'
import { bufferMember, checked, directoryMember, treeFileContent, type ArchiveMember } from './archive-member.js'
import { MAX_DOCUMENT_BYTES } from './document-walker.js'
import { INDEX_FILE, LAYOUT_MARKER } from './image-layout.js'
import { OCI_CONFIG, OCI_INDEX, OCI_MANIFEST } from './media-types.js'
import { resolveStoredImages } from './stored-image.js'

const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar'

interface OciDescriptor {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
}

/** The files of the OCI archive of the Docker archive `bundle` (snapshot `id`), in the order to write them. */
export async function* ociArchiveMembers(store: ReadStore, id: string, bundle: Tree): AsyncGenerator<ArchiveMember> {
  const images = await resolveStoredImages(store, id, bundle)
  yield bufferMember(LAYOUT_MARKER, JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  yield directoryMember('blobs')
  yield directoryMember('blobs/sha256')
  const written = new Set<string>()
  const blob = (digest: string): string => `blobs/sha256/${digest.slice('sha256:'.length)}`
  function* json(doc: unknown, mediaType: string): Generator<ArchiveMember, OciDescriptor> {
    const data = Buffer.from(JSON.stringify(doc))
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`
    if (!written.has(digest)) {
      written.add(digest)
      yield bufferMember(blob(digest), data)
    }
    return { mediaType, digest, size: data.length }
  }
  const index: OciDescriptor[] = []
  for (const { refs, image } of images) {
    const configData = await readTreeFile(store, image.config, MAX_DOCUMENT_BYTES)
    const config: OciDescriptor = { mediaType: OCI_CONFIG, digest: `sha256:${createHash('sha256').update(configData).digest('hex')}`, size: configData.length }
    if (!written.has(config.digest)) {
      written.add(config.digest)
      yield bufferMember(blob(config.digest), configData)
    }
    const layers: OciDescriptor[] = []
    for (const layer of image.layers) {
      const entry = findEntry(bundle, layer.file)
      if (entry === null || entry.type !== 'file') throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `layer ${layer.file} is not a file of the snapshot`)
      // an uncompressed layer's digest is its diff_id
      layers.push({ mediaType: OCI_LAYER_TAR, digest: layer.diffId, size: entry.size })
      if (written.has(layer.diffId)) continue
      written.add(layer.diffId)
      const what = `layer ${layer.file} (diff_id ${layer.diffId})`
      yield { name: blob(layer.diffId), type: 'file', size: entry.size, content: () => checked(treeFileContent(store, entry), layer.diffId, entry.size, what) }
    }
    const manifest = yield* json({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers }, OCI_MANIFEST)
    if (refs.length === 0) index.push(manifest)
    for (const ref of refs) {
      const tag = /:([^:/]+)$/.exec(ref)?.[1]
      index.push({ ...manifest, annotations: { 'io.containerd.image.name': ref, ...(tag !== undefined ? { 'org.opencontainers.image.ref.name': tag } : {}) } })
    }
  }
  yield bufferMember(INDEX_FILE, JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: index }))
}
