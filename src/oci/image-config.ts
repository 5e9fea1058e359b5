// The one field of an image config that snapdir reads: rootfs.diff_ids, the digest of each layer's
// uncompressed tar, bottom first (image-spec config.md#properties). Expansion checks each layer
// against it and the store names expanded layers by it (store/layer-refs.ts), for OCI layouts and
// Docker archives alike.
import { isObject, quote } from './descriptor.js'
import { parseDigest } from './digest.js'

/**
 * The config's diff_ids, one sha256 digest for each of `layers` layers, or why it has not: a
 * sentence to follow the config's name ("lists 1 rootfs.diff_ids for 2 layers").
 */
export function configDiffIds(config: unknown, layers: number): string[] | string {
  const rootfs = isObject(config) ? config.rootfs : undefined
  const diffIds = isObject(rootfs) && Array.isArray(rootfs.diff_ids) ? (rootfs.diff_ids as unknown[]) : null
  if (diffIds === null || diffIds.length !== layers) return `lists ${diffIds === null ? 'no' : diffIds.length} rootfs.diff_ids for ${layers} layers`
  for (const [i, diffId] of diffIds.entries()) {
    const digest = typeof diffId === 'string' ? parseDigest(diffId) : null
    if (digest === null || typeof digest === 'string' || digest.algorithm !== 'sha256') return `has rootfs.diff_ids[${i}] ${quote(diffId)}, which is not a sha256 digest`
  }
  return diffIds as string[]
}
