// The compressors snapdir can reproduce byte for byte, behind one interface: a layer recipe names its
// family and parameters (DeflateParams), and regeneration feeds the layer's tar through the encoder they
// select and wraps the raw DEFLATE bytes in the recorded gzip header (gzip-member.ts). Each family lives
// in its own module (go-flate.ts, pgzip.ts).
import { SnapdirError } from '../../util/errors.js'
import type { DeflateEncoder } from './deflate-encoder.js'
import { createGoFlateEncoder } from './go-flate.js'
import type { GzipHeader } from './gzip-member.js'
import { createPgzipEncoder, pgzipCandidates } from './pgzip.js'

export type { DeflateEncoder } from './deflate-encoder.js'

/**
 * A compressor and its parameters. `go`: Go's compress/flate (Go 1.8 to 1.26 write the same bytes),
 * as compress/gzip drives it in Docker, BuildKit, containerd and crane; level -2 (HuffmanOnly), 0..9,
 * -1 being 6. `pgzip`: klauspost pgzip 1.2.5 on compress 1.15.12 (containers/image, umoci), cutting its
 * input into blocks of `blockSize` bytes; level -2..9, -1 being 5.
 */
export interface DeflateParams {
  family: 'go' | 'pgzip'
  level: number
  /** pgzip's block size (bytes of input per block) */
  blockSize?: number
}

export function createDeflateEncoder(p: DeflateParams): DeflateEncoder {
  switch (p.family) {
    case 'go':
      return createGoFlateEncoder(p.level)
    case 'pgzip':
      if (p.blockSize === undefined) throw new SnapdirError('ERR_INTERNAL', 'deflate params: the pgzip family needs a blockSize')
      return createPgzipEncoder({ level: p.level, blockSize: p.blockSize })
  }
  throw new SnapdirError('ERR_INTERNAL', `unknown compressor family ${String((p as { family: unknown }).family)}`)
}

/** Go's compress/gzip writes XFL from the level: 2 for 9, 4 for 1, 0 for every other level. */
const GO_XFL_BEST = 2
const GO_XFL_FASTEST = 4
/** Go levels that say XFL 0, most used first: the default (6, what dockerd, BuildKit and containerd use), then the rest. */
const GO_XFL0_LEVELS = [6, 5, 4, 7, 8, 3, 2, 0, -2]
/** MTIME Go's compress/gzip writes for a zero ModTime; pgzip writes its own (PGZIP_ZERO_MTIME) */
export const GO_ZERO_MTIME = 0

/**
 * The compressors that could have written a member with this header, the likeliest first. Go never sets
 * FHCRC; name, comment, extra and MTIME are recorded in the header bytes, so they do not rule Go out,
 * but the MTIME each writes by default tells which family to try first.
 */
export function candidatesFor(header: GzipHeader): DeflateParams[] {
  const go: DeflateParams[] = []
  if (!header.headerCrc) {
    if (header.xfl === GO_XFL_FASTEST) go.push({ family: 'go', level: 1 })
    else if (header.xfl === GO_XFL_BEST) go.push({ family: 'go', level: 9 })
    else if (header.xfl === 0) for (const level of GO_XFL0_LEVELS) go.push({ family: 'go', level })
  }
  const pgzip = pgzipCandidates(header).map((c): DeflateParams => ({ family: 'pgzip', level: c.level, blockSize: c.blockSize }))
  return header.mtime === GO_ZERO_MTIME ? [...go, ...pgzip] : [...pgzip, ...go]
}
