// The manifest media types the registry client reads and writes: OCI image-spec v1.1 manifests and
// indexes, and Docker's schema 2 manifests and manifest lists
// (https://distribution.github.io/distribution/spec/manifest-v2-2/). Docker schema 1 (signed JWS
// manifests, long deprecated) and anything else are refused, not guessed at. (oci/media-types.ts holds
// the same names for layouts; registry/ sits below oci/ and cannot import it.)

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'

export const MANIFEST_MEDIA_TYPES: readonly string[] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST]

/** The largest manifest read or written, as containerd and the distribution spec's guidance set it. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024

/** A Content-Type without its parameters, lowercased: `application/json; charset=utf-8` -> `application/json`. */
export function bareMediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase()
}
