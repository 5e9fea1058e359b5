// The media types an image layout may name, by the role a descriptor plays. OCI image-spec v1.1
// (https://github.com/opencontainers/image-spec/blob/v1.1.0/media-types.md) and the Docker image
// manifest v2 schema 2 types that skopeo (--preserve-digests) and containerd keep inside OCI layouts
// (https://distribution.github.io/distribution/spec/manifest-v2-2/). A type outside its role's list
// is refused: snapdir does not guess how to read what it does not know.
import type { Compression } from './decompress.js'

export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'

/** Documents that list further manifests (multi-platform images). */
export const INDEX_TYPES: ReadonlySet<string> = new Set([OCI_INDEX, DOCKER_MANIFEST_LIST])

/** Documents that name one image's config and layers. */
export const MANIFEST_TYPES: ReadonlySet<string> = new Set([OCI_MANIFEST, DOCKER_MANIFEST])

export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json'

/** Image configs, which list the layers' rootfs.diff_ids (image-config.ts). */
export const IMAGE_CONFIG_TYPES: ReadonlySet<string> = new Set([OCI_CONFIG, DOCKER_CONFIG])

export const CONFIG_TYPES: ReadonlySet<string> = new Set([
  ...IMAGE_CONFIG_TYPES,
  // image-spec v1.1: artifacts without a config point at the two-byte `{}` blob
  'application/vnd.oci.empty.v1+json',
])

export const LAYER_TYPES: ReadonlySet<string> = new Set([
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd',
  // deprecated in v1.1 but still written by older tools and readable by every runtime
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.diff.tar.zstd',
  'application/vnd.docker.image.rootfs.foreign.diff.tar',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.oci.empty.v1+json',
])

/**
 * Layers that a registry may not redistribute: a layout may leave them out when the descriptor says
 * where to fetch them (`urls`), as `skopeo copy` does for Windows base layers.
 */
export function isForeignLayer(mediaType: string): boolean {
  return mediaType.includes('.nondistributable.') || mediaType.includes('.foreign.')
}

/** Media types of tar layers are the OCI ones and Docker's schema 2 ones. */
const LAYER_TYPE_PREFIXES = ['application/vnd.oci.image.layer.', 'application/vnd.docker.image.rootfs.']

/** How a layer of this media type is compressed, or null when it is not a tar layer at all. */
export function layerCompression(mediaType: string): Compression | null {
  if (!LAYER_TYPE_PREFIXES.some((p) => mediaType.startsWith(p))) return null
  if (/[+.]gzip$/.test(mediaType)) return 'gzip'
  if (/[+.]zstd$/.test(mediaType)) return 'zstd'
  if (mediaType.endsWith('.tar')) return 'none'
  return null
}
