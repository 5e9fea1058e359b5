// The compressor search of compressor-match.ts for a blob that streams by once (from a registry) and
// is not kept: while the layer is expanded, the blob's bytes are held as they arrive, the tar that
// comes out of the decompressor goes through every candidate the blob's header allows, and each
// candidate's output is compared with the held bytes; a candidate is dropped at its first differing
// byte, and bytes every live candidate has passed are let go. The blob leads its own tar through the
// decompressor and a candidate's output trails its input, so what is held stays within about one
// encoder's lag (a few MiB), not the blob.
//
// Matched byte for byte over the whole blob, whose digest the caller checks as it streams, a candidate
// gives the blob; the caller then regenerates it out of the store, as the search from a file does.
//
// An output a candidate gives before the blob's bytes at its position have arrived waits beside that
// candidate and is compared when they come: feeding the blob never waits on the tar, so the stages
// of one pipeline cannot block each other.
import os from 'node:os'
import type { RecipeCompression } from '../format/recipe.js'
import { compressorCandidates, HEADER_READ, searchCompressor, type CompressorFound } from './compressor-match.js'
import type { GoFlateRestart } from './compress/go-flate.js'
import type { BlobCompressor } from './recipe-reader.js'

interface Candidate {
  compression: RecipeCompression
  label: string
  compressor: BlobCompressor
  /** blob bytes matched so far */
  at: number
  /** outputs not compared yet (the blob's bytes for them had not arrived) */
  waiting: Buffer[]
  lost: string | null
}

export interface StreamedFound {
  found: CompressorFound
  /** Go's restart points the candidate that matched noted (see compressor-match.ts withRestarts) */
  restarts: GoFlateRestart[]
}

export class StreamedCompressorMatch {
  /** the blob's bytes from `heldFrom` on, as arrived */
  private held: Buffer[] = []
  private heldFrom = 0
  private arrived = 0
  private head: Buffer[] = []
  private candidates: Candidate[] | null = null
  private shown = ''
  private reason: string | null = null
  private readonly ahead = Math.max(2, os.availableParallelism())

  constructor(private readonly kind: 'gzip' | 'zstd', private readonly size: number) {}

  /** The blob's next bytes, as they arrive (before the decompressor sees them). */
  blob(piece: Buffer): void {
    if (this.candidates === null && this.reason === null && this.arrived < HEADER_READ) this.head.push(Buffer.from(piece))
    this.arrived += piece.length
    if (this.reason !== null || (this.candidates !== null && this.alive().length === 0)) return
    this.held.push(Buffer.from(piece))
    if (this.candidates !== null) for (const c of this.alive()) this.compare(c)
    this.trim()
  }

  /** The tar's next bytes, as the decompressor gives them; resolves once the candidates took them. */
  async tar(piece: Buffer): Promise<void> {
    if (this.candidates === null && this.reason === null) this.start()
    const live = this.alive()
    if (live.length === 0) return
    for (const c of live) c.compressor.write(piece)
    for (const c of live) {
      const depth = this.alive().length > 1 ? 0 : this.ahead
      while (c.lost === null && c.compressor.inFlight > depth) {
        const out = await this.taken(c, c.compressor.take())
        if (out.length > 0) c.waiting.push(out)
        this.compare(c)
      }
    }
    this.trim()
  }

  /** After the whole blob arrived and the whole tar was fed: the compression that gives the blob, or why none does. */
  async end(): Promise<StreamedFound> {
    if (this.candidates === null && this.reason === null) this.start()
    if (this.reason !== null) return { found: { reason: this.reason }, restarts: [] }
    const candidates = this.candidates!
    for (const c of this.alive()) {
      const rest = await this.taken(c, c.compressor.end())
      c.waiting.push(...(Array.isArray(rest) ? rest : [rest]))
      this.compare(c)
      if (c.lost === null && c.waiting.length > 0) c.lost = `runs past the blob's end (${this.size} bytes)`
      if (c.lost === null && c.at !== this.size) c.lost = `ends at byte ${c.at}, the blob has ${this.size}`
    }
    this.held = []
    const won = candidates.find((c) => c.lost === null)
    if (won) return { found: { compression: won.compression }, restarts: won.compressor.restarts?.() ?? [] }
    const tried = candidates.map((c) => `${c.label} ${c.lost ?? ''}`.trim()).join('; ')
    return { found: { reason: `none of the compressors this ${this.shown} allows regenerates it (${tried})` }, restarts: [] }
  }

  private start(): void {
    const found = compressorCandidates(this.kind, Buffer.concat(this.head))
    this.head = []
    if ('reason' in found) {
      this.reason = found.reason
      this.held = []
      return
    }
    this.shown = found.shown
    this.candidates = found.list.map((c) => ({ ...c, compressor: searchCompressor(c.compression), at: 0, waiting: [], lost: null }))
  }

  private alive(): Candidate[] {
    return (this.candidates ?? []).filter((c) => c.lost === null)
  }

  /** An encoder that fails drops its candidate, as a differing byte would. */
  private async taken<T extends Buffer | Buffer[]>(c: Candidate, p: Promise<T>): Promise<T | Buffer> {
    try {
      return await p
    } catch (err) {
      c.lost = `fails to encode: ${(err as Error).message}`
      return Buffer.alloc(0)
    }
  }

  /** Compares the candidate's waiting outputs with the blob as far as it has arrived. */
  private compare(c: Candidate): void {
    while (c.lost === null && c.waiting.length > 0) {
      const out = c.waiting[0]!
      if (out.length === 0) {
        c.waiting.shift()
        continue
      }
      const have = Math.min(out.length, this.arrived - c.at)
      if (have <= 0) {
        if (this.arrived >= this.size) c.lost = `runs past the blob's end (${this.size} bytes)`
        return
      }
      const there = this.slice(c.at, have)
      for (let k = 0; k < have; k++) {
        if (there[k] !== out[k]) {
          c.lost = `differs at byte ${c.at + k}`
          return
        }
      }
      c.at += have
      if (have === out.length) c.waiting.shift()
      else c.waiting[0] = out.subarray(have)
    }
  }

  /** `length` held bytes from blob offset `at` (all arrived). */
  private slice(at: number, length: number): Buffer {
    const parts: Buffer[] = []
    let pos = this.heldFrom
    for (const b of this.held) {
      const end = pos + b.length
      if (end > at && pos < at + length) parts.push(b.subarray(Math.max(0, at - pos), Math.min(b.length, at + length - pos)))
      pos = end
      if (pos >= at + length) break
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
  }

  /** Lets go of the bytes every live candidate has passed (all of them once none is left). */
  private trim(): void {
    if (this.candidates === null) return
    const live = this.alive()
    const keepFrom = live.length === 0 ? this.arrived : Math.min(...live.map((c) => c.at))
    while (this.held.length > 0 && this.heldFrom + this.held[0]!.length <= keepFrom) this.heldFrom += this.held.shift()!.length
  }
}
