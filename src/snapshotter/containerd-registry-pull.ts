// `snapdir containerd pull docker://HOST/REPO:TAG`: a registry image into containerd with the snapdir
// snapshotter. The manifest (picked from an index by platform) and the config come from the registry;
// each layer the snapshotter's store holds (by its chain of diff_ids) is served lazily, and any other
// is fetched from the registry and unpacked by containerd (containerd-import.ts). An image that
// `snapdir serve` offers from the snapshotter's own store is such a registry image: all lazy.
import { descriptorPlatform, hostPlatform, platformMatches, formatPlatform, type Platform } from '../oci/platform.js'
import { RegistryClient, type RegistryClientOptions } from '../registry/client.js'
import { DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST } from '../registry/media-types.js'
import type { ImageRef } from '../registry/reference.js'
import { SnapdirError } from '../util/errors.js'
import { importImage, type ContainerdImportOptions, type ContainerdPullResult, type ImageDocuments, type ImportLayer } from './containerd-import.js'

const MAX_CONFIG = 4 << 20

export interface RegistryPullOptions extends Omit<ContainerdImportOptions, 'fetchLayer'> {
  registry?: RegistryClientOptions
  /** for a multi-platform image; this machine's when absent */
  platform?: Platform
}

interface ManifestJson {
  mediaType?: string
  config?: { digest?: unknown; size?: unknown }
  layers?: Array<{ digest?: unknown; size?: unknown; mediaType?: unknown }>
  manifests?: unknown[]
}

/** The name containerd gives an image it pulls: HOST/REPO:TAG or HOST/REPO@DIGEST. */
export function containerdImageName(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}${ref.digest !== undefined ? `@${ref.digest}` : `:${ref.tag ?? 'latest'}`}`
}

export async function containerdPullRegistry(ref: ImageRef, options: RegistryPullOptions): Promise<ContainerdPullResult> {
  const registry = new RegistryClient(ref.registry, options.registry ?? {})
  const repo = ref.repository
  const where = `${ref.toString()}`
  const documents = (async (): Promise<ImageDocuments> => {
    let manifest = await registry.getManifest(repo, ref.reference)
    if (manifest.mediaType === OCI_INDEX || manifest.mediaType === DOCKER_MANIFEST_LIST) {
      const want = options.platform ?? hostPlatform()
      const index = JSON.parse(manifest.bytes.toString('utf8')) as ManifestJson
      const picked = (index.manifests ?? []).find((d) => {
        const p = descriptorPlatform(d)
        return p !== null && platformMatches(p, want)
      }) as { digest?: unknown } | undefined
      if (typeof picked?.digest !== 'string') throw new SnapdirError('ERR_IMAGE', `${where} has no image for platform ${formatPlatform(want)}`)
      manifest = await registry.getManifest(repo, picked.digest, [OCI_MANIFEST, DOCKER_MANIFEST])
    }
    const doc = JSON.parse(manifest.bytes.toString('utf8')) as ManifestJson
    const config = doc.config
    if (typeof config?.digest !== 'string' || typeof config.size !== 'number' || !Array.isArray(doc.layers)) {
      throw new SnapdirError('ERR_IMAGE', `${where}: manifest ${manifest.digest} is not an image manifest (config and layers)`)
    }
    if (config.size > MAX_CONFIG) throw new SnapdirError('ERR_IMAGE', `${where}: config ${config.digest} is ${config.size} bytes, more than the ${MAX_CONFIG} snapdir reads`)
    const parts: Buffer[] = []
    for await (const piece of await registry.getBlob(repo, config.digest, { size: config.size })) parts.push(piece as Buffer)
    const configBytes = Buffer.concat(parts)
    const diffIds = (JSON.parse(configBytes.toString('utf8')) as { rootfs?: { diff_ids?: unknown } }).rootfs?.diff_ids
    if (!Array.isArray(diffIds) || diffIds.length !== doc.layers.length || !diffIds.every((d) => typeof d === 'string')) {
      throw new SnapdirError('ERR_IMAGE', `${where}: config ${config.digest} does not give one diff_id per layer of manifest ${manifest.digest}`)
    }
    const layers: ImportLayer[] = doc.layers.map((l, i) => {
      if (typeof l.digest !== 'string' || typeof l.size !== 'number' || typeof l.mediaType !== 'string') {
        throw new SnapdirError('ERR_IMAGE', `${where}: layer ${i} of manifest ${manifest.digest} is not a descriptor (mediaType, digest, size)`)
      }
      return { digest: l.digest, size: l.size, mediaType: l.mediaType, diffId: diffIds[i] as string }
    })
    return {
      manifest: { digest: manifest.digest, mediaType: manifest.mediaType, bytes: manifest.bytes },
      config: { digest: config.digest, bytes: configBytes },
      layers,
    }
  })()
  try {
    // the registry is read while containerd-import.ts sets up its client and lease
    return await importImage(documents, { ...options, fetchLayer: (l) => registry.getBlob(repo, l.digest, { size: l.size }) })
  } finally {
    await registry.close()
  }
}
