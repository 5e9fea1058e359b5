// --id and --image, the two ways a command is told which snapshot: parsed here (usage errors before
// any store is touched), resolved against the store by store/resolve-snapshot.ts.
import { parseImageName } from '../format/image-name.js'
import { parseSnapshotId, type SnapshotRef } from '../store/resolve-snapshot.js'
import { UsageError } from '../util/errors.js'

export const ID_HELP = 'snapshot ID: 64 hex digits as push printed it, or a unique prefix of at least 8'
export const IMAGE_HELP = 'instead of --id: an image name and tag the store records (NAME[:TAG], the tag default latest)'

/** The snapshot a command's --id or --image names (exactly one of them). */
export function snapshotRefOf(opts: { id?: string; image?: string }): SnapshotRef {
  if (opts.id !== undefined && opts.image !== undefined) throw new UsageError('give --id or --image, not both')
  if (opts.image !== undefined) return { image: parseImageName(opts.image) }
  if (opts.id !== undefined) return parseSnapshotId(opts.id)
  throw new UsageError("required option '--id <id>' (or '--image <name:tag>') not specified")
}

/** Collects a repeatable option's values. */
export const repeatable = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value]
