// Which compressor wrote a gzip or zstd layer, found by trying: the layer's tar, regenerated out of the
// store as a pull would (recipe-reader.ts), goes through every compressor the blob's header allows
// (gzip: compress/compressor.ts candidatesFor; zstd: compress/zstd.ts zstdCandidates) side by side, and
// each candidate's output is compared with the blob as it streams; a candidate is dropped at its first
// differing byte, and one that gives the whole blob, hashing to its digest, is the blob's compressor.
// Most candidates differ within their first block, so the search costs about one compression of the
// layer.
import { createHash, type Hash } from 'node:crypto'
import fsp from 'node:fs/promises'
import os from 'node:os'
import type { Recipe, RecipeCompression } from '../format/recipe.js'
import type { Tree } from '../format/tree.js'
import type { ReadStore } from '../store/store.js'
import { candidatesFor, type DeflateParams } from './compress/compressor.js'
import { isGzipHeaderProblem, parseGzipHeader } from './compress/gzip-member.js'
import { zstdCandidates } from './compress/zstd.js'
import { SnapdirError } from '../util/errors.js'
import type { GoFlateRestart } from './compress/go-flate.js'
import { blobCompressor, regenerateBlob, regenerateTar, type BlobCompressor } from './recipe-reader.js'

export interface CompressorSearch {
  store: ReadStore
  /** the layer's recipe with its digest and size, compression not known yet */
  recipe: Recipe
  tree: Tree
  /** the blob's file */
  blob: string
  signal?: AbortSignal
}

/** The compression that regenerates the blob exactly, or why none does. */
export type CompressorFound = { compression: RecipeCompression } | { reason: string }

interface Candidate {
  compression: RecipeCompression
  /** how the reason names it: "go level 6" */
  label: string
  compressor: BlobCompressor
  /** blob bytes matched so far */
  at: number
  hash: Hash
  /** why it was dropped */
  lost: string | null
}

/** Bytes of the blob's head its header is read from. */
export const HEADER_READ = 64 * 1024
/** Tar bytes per encoder call in the search: small, so that a candidate is dropped before it encodes much past its first difference. */
const SEARCH_WRITE = 64 * 1024

export async function findGzipCompressor(options: CompressorSearch): Promise<CompressorFound> {
  const found = compressorCandidates('gzip', await readHead(options))
  return 'reason' in found ? found : search(options, found.shown, found.list)
}

/** The same search for a zstd layer: the candidates its frame header allows (compress/zstd.ts zstdCandidates). */
export async function findZstdCompressor(options: CompressorSearch): Promise<CompressorFound> {
  const found = compressorCandidates('zstd', await readHead(options))
  return 'reason' in found ? found : search(options, found.shown, found.list)
}

/** A compression to try, and how a reason names it ("go level 6"). */
export interface CandidateCompression {
  compression: RecipeCompression
  label: string
}

/**
 * The compressors the blob's header (its first bytes: the whole gzip header, or the zstd frame header)
 * allows, with how a reason names the header; or why there is none.
 */
export function compressorCandidates(kind: 'gzip' | 'zstd', head: Buffer): { shown: string; list: CandidateCompression[] } | { reason: string } {
  if (kind === 'zstd') {
    const found = zstdCandidates(head)
    if ('problem' in found) return { reason: found.problem }
    return { shown: 'zstd frame header', list: found.candidates.map((p) => ({ compression: { kind: 'zstd' as const, ...p }, label: `${p.family} zstd level ${p.level}` })) }
  }
  const header = parseGzipHeader(head)
  if (isGzipHeaderProblem(header)) return { reason: `gzip header: ${header.problem}` }
  const shown = `gzip header XFL ${header.xfl}, OS ${header.os}${header.headerCrc ? ', FHCRC' : ''}`
  const params = candidatesFor(header)
  if (params.length === 0) return { reason: `no compressor snapdir has writes this ${shown}` }
  return { shown, list: params.map((p) => ({ compression: gzipOf(header.headerBytes, p), label: `${p.family} level ${p.level}` })) }
}

async function readHead(options: CompressorSearch): Promise<Buffer> {
  const fh = await fsp.open(options.blob, 'r')
  try {
    const head = Buffer.alloc(Math.min(HEADER_READ, options.recipe.size))
    const { bytesRead } = await fh.read(head, 0, head.length, 0)
    return head.subarray(0, bytesRead)
  } finally {
    await fh.close()
  }
}

/** Runs the candidates side by side over the tar regenerated out of the store, against the blob. */
async function search(options: CompressorSearch, shown: string, list: CandidateCompression[]): Promise<CompressorFound> {
  const { recipe } = options
  const fh = await fsp.open(options.blob, 'r')
  try {
    const candidates: Candidate[] = list.map((c) => ({
      ...c,
      compressor: searchCompressor(c.compression),
      at: 0,
      hash: createHash('sha256'),
      lost: null,
    }))
    const compare = async (c: Candidate, out: Buffer[]): Promise<void> => {
      for (const piece of out) {
        if (c.lost !== null || piece.length === 0) return
        const there = Buffer.allocUnsafe(piece.length)
        const { bytesRead } = await fh.read(there, 0, piece.length, c.at)
        const same = bytesRead === piece.length && there.equals(piece)
        if (!same) {
          let k = 0
          while (k < bytesRead && there[k] === piece[k]) k++
          c.lost = k >= bytesRead ? `runs past the blob's end (${recipe.size} bytes)` : `differs at byte ${c.at + k}`
          return
        }
        c.hash.update(piece)
        c.at += piece.length
      }
    }
    const alive = (): Candidate[] => candidates.filter((c) => c.lost === null)
    // The candidates encode side by side on the libuv pool, each compared as soon as a write of it is
    // done while others are left (most differ in their first block: none should encode far past it),
    // then the last one a few writes ahead of its comparison.
    const ahead = Math.max(2, os.availableParallelism())
    for await (const tar of regenerateTar({ store: options.store, recipe, tree: options.tree, ...(options.signal ? { signal: options.signal } : {}) })) {
      for (const c of alive()) c.compressor.write(tar)
      for (const c of alive()) {
        const depth = alive().length > 1 ? 0 : ahead
        while (c.lost === null && c.compressor.inFlight > depth) await compare(c, [await c.compressor.take()])
      }
      // the rest of the tar need not be read once every candidate is out
      if (alive().length === 0) break
    }
    for (const c of alive()) {
      await compare(c, await c.compressor.end())
      if (c.lost === null && c.at !== recipe.size) c.lost = `ends at byte ${c.at}, the blob has ${recipe.size}`
      if (c.lost === null && `sha256:${c.hash.digest('hex')}` !== recipe.digest) c.lost = 'does not hash to the digest'
      if (c.lost === null) return { compression: await withRestarts(options, c.compression, c.compressor.restarts?.() ?? []) }
    }
    const tried = candidates.map((c) => `${c.label} ${c.lost ?? ''}`.trim()).join('; ')
    return { reason: `none of the compressors this ${shown} allows regenerates it (${tried})` }
  } finally {
    await fh.close()
  }
}

/**
 * A candidate's compressor as the search runs it: small writes, and Go's restart points noted. Whatever
 * the split of the tar into pieces, it gives the same bytes and points (EncoderPipe cuts fixed writes).
 */
export function searchCompressor(compression: RecipeCompression): BlobCompressor {
  return blobCompressor(compression, undefined, { recordRestarts: true, writeSize: SEARCH_WRITE })
}

/**
 * Tar bytes between the restart points a recipe keeps: segments this long cost about 3% more CPU than
 * one stream, and a 170 MB layer still splits into some 40 for the cores (docs/go-flate.md).
 */
export const RESTART_SPACING = 4 << 20

/**
 * The compression with restart points every RESTART_SPACING bytes of tar, once the blob regenerated
 * through them (segments encoded apart and joined) hashed to its digest; without them otherwise, as
 * found: a recipe never names a way to the blob that was not checked.
 */
export async function withRestarts(options: Omit<CompressorSearch, 'blob'>, found: RecipeCompression, noted: GoFlateRestart[]): Promise<RecipeCompression> {
  const restarts: GoFlateRestart[] = []
  let last = 0
  for (const r of noted) {
    if (r.input - last >= RESTART_SPACING && r.input < options.recipe.tarSize) {
      restarts.push(r)
      last = r.input
    }
  }
  if (restarts.length === 0 || found.kind !== 'gzip') return found
  const segmented: RecipeCompression = { ...found, restarts }
  try {
    const recipe = { ...options.recipe, compression: segmented }
    for await (const piece of regenerateBlob({ store: options.store, recipe, tree: options.tree, ...(options.signal ? { signal: options.signal } : {}) })) void piece
  } catch (err) {
    if (options.signal?.aborted || !(err instanceof SnapdirError) || err.code !== 'ERR_SNAPSHOT_DAMAGED') throw err
    return found
  }
  return segmented
}

function gzipOf(header: Buffer, p: DeflateParams): RecipeCompression {
  return { kind: 'gzip', header, family: p.family, level: p.level, blockSize: p.blockSize ?? 0 }
}
