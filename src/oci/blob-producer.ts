// Which producer family wrote a layer blob, for the recipe hit rate per producer that `stats` reports.
// A blob stored as a recipe names its compressor exactly (format/recipe.ts). A blob kept raw matched
// no compressor snapdir has, so only its first bytes say who likely wrote it: a gzip header with OS
// 255 ("unknown") and MTIME 0 is what Go's compress/gzip writes (Docker, BuildKit, containerd, crane),
// with MTIME 0x886E0900 (Go's zero time) what klauspost pgzip writes (containers/image, umoci); GNU
// gzip, pigz and zlib say OS 3 (Unix) or another MTIME. A zstd frame header that klauspost's encoder
// writes (compress/zstd.ts zstdCandidates) counts as klauspost's; any other (the zstd CLI leaves the
// checksum out) as another zstd.
import type { RecipeCompression } from '../format/recipe.js'
import { GO_ZERO_MTIME } from './compress/compressor.js'
import { isGzipHeaderProblem, parseGzipHeader } from './compress/gzip-member.js'
import { PGZIP_ZERO_MTIME } from './compress/pgzip.js'
import { zstdCandidates } from './compress/zstd.js'
import { compressionOf } from './decompress.js'

/** The producer families, in the order stats lists them. */
export const PRODUCERS = {
  'go-gzip': 'Go compress/gzip',
  pgzip: 'klauspost pgzip',
  'gzip-other': 'other gzip',
  'klauspost-zstd': 'klauspost zstd',
  'zstd-other': 'other zstd',
  tar: 'uncompressed tar',
} as const

export type Producer = keyof typeof PRODUCERS

/** gzip's OS field for "unknown", which Go's compress/gzip and pgzip write */
const GZIP_OS_UNKNOWN = 255

/** The family a recipe's compressor belongs to. */
export function recipeProducer(c: RecipeCompression): Producer {
  if (c.kind === 'none') return 'tar'
  if (c.kind === 'zstd') return c.family === 'klauspost' ? 'klauspost-zstd' : 'zstd-other'
  return c.family === 'go' ? 'go-gzip' : c.family === 'pgzip' ? 'pgzip' : 'gzip-other'
}

/** The family a blob's first bytes (its gzip header or zstd frame header; a few hundred bytes do) point at. */
export function headProducer(head: Buffer): Producer {
  switch (compressionOf(head)) {
    case 'none':
      return 'tar'
    case 'zstd':
      return 'candidates' in zstdCandidates(head) && !pastOneBlock(head) ? 'klauspost-zstd' : 'zstd-other'
    case 'gzip': {
      const header = parseGzipHeader(head)
      if (isGzipHeaderProblem(header) || header.os !== GZIP_OS_UNKNOWN || header.headerCrc) return 'gzip-other'
      if (header.mtime === GO_ZERO_MTIME) return 'go-gzip'
      if (header.mtime === PGZIP_ZERO_MTIME) return 'pgzip'
      return 'gzip-other'
    }
  }
}

/** FHD bits (RFC 8878 3.1.1.1.1) */
const FHD_SINGLE_SEGMENT = 0x20
/** Frame_Content_Size field bytes by FHD's top two bits, in a single-segment frame */
const FCS_BYTES = [1, 2, 4, 8]
/** klauspost's largest block (SpeedDefault): it writes a single-segment frame only for less */
const KLAUSPOST_MAX_BLOCK = 128 << 10

/**
 * A single-segment frame saying it holds at least one block of content: klauspost writes those only
 * for less (the zstd command writes them for any size it knows). The dictionary ID field is absent
 * (zstdCandidates refused one).
 */
function pastOneBlock(head: Buffer): boolean {
  const fhd = head[4]!
  if (!(fhd & FHD_SINGLE_SEGMENT)) return false
  const bytes = FCS_BYTES[fhd >> 6]!
  if (head.length < 5 + bytes) return false
  const size = bytes === 1 ? head[5]! : bytes === 2 ? head.readUInt16LE(5) + 256 : bytes === 4 ? head.readUInt32LE(5) : Number(head.readBigUInt64LE(5))
  return size >= KLAUSPOST_MAX_BLOCK
}
