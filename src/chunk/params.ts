import { SnapdirError } from '../util/errors.js'

/** FastCDC 2020 parameters; recorded in every store's config and every tree so IDs stay reproducible. */
export interface ChunkerParams {
  readonly min: number
  readonly avg: number
  readonly max: number
  /** normalization level 0..3 (FastCDC paper §3.5); 1 is the reference default */
  readonly level: number
  /** XORed into the gear table (fastcdc crate's seed); 0 for the published table */
  readonly seed: bigint
  /** files up to this size live inside the tree instead of as chunks (0: never); format 1 trees only, format 2 stores say 0 */
  readonly inlineMax?: number
  /** files larger than inlineMax and smaller than this are packed with their neighbours (0: never) */
  readonly packMax?: number
}

/**
 * 16/64/256 KiB: see bench/ for the dedup vs object count vs read amplification trade-off.
 * Files under 64 KiB are cut as one stream with their neighbours (ingest/pack-groups.ts), as casync
 * cuts a whole archive, so they share chunks instead of each taking one. Nothing is inlined
 * (inlineMax 0): format 2 trees are metadata only, so the smallest files are packed too (format 1
 * trees inlined files of at most 4 KiB: over half the files of a Debian root but 3% of its bytes, and
 * every edit rewrote them all).
 */
export const DEFAULT_CHUNKER: ChunkerParams = Object.freeze({
  min: 16 * 1024,
  avg: 64 * 1024,
  max: 256 * 1024,
  level: 1,
  seed: 0n,
  inlineMax: 0,
  packMax: 64 * 1024,
})

export function validateChunkerParams(p: ChunkerParams): ChunkerParams {
  const bad = (what: string): never => {
    throw new SnapdirError('ERR_STORE_CONFIG', `invalid chunker parameters: ${what}`, { data: { ...p } })
  }
  if (!Number.isInteger(p.min) || p.min < 64 || p.min > 1048576) bad(`min ${p.min} must be within 64..1048576`)
  if (!Number.isInteger(p.avg) || p.avg < 256 || p.avg > 4194304) bad(`avg ${p.avg} must be within 256..4194304`)
  if (!Number.isInteger(p.max) || p.max < 1024 || p.max > 16777216) bad(`max ${p.max} must be within 1024..16777216`)
  if (!(p.min <= p.avg && p.avg <= p.max)) bad('sizes must satisfy min <= avg <= max')
  if (!Number.isInteger(p.level) || p.level < 0 || p.level > 3) bad(`level ${p.level} must be 0..3`)
  if (p.seed < 0n || p.seed >= 1n << 64n) bad('seed must be an unsigned 64-bit integer')
  const inline = p.inlineMax ?? 0
  if (!Number.isInteger(inline) || inline < 0 || inline > p.min) bad(`inlineMax ${inline} must be within 0..min`)
  const pack = p.packMax ?? 0
  if (!Number.isInteger(pack) || pack < 0 || pack > p.max) bad(`packMax ${pack} must be within 0..max`)
  return p
}
