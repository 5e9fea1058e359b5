// Pure TypeScript FastCDC 2020, the fallback for native/fastcdc.c with identical cut points. The 64-bit
// gear hash is kept as two uint32 halves so the hot loop never touches BigInt.
import { GEAR_HEX } from './gear.js'
import type { ChunkerParams } from './params.js'

// Mask table by number of bits (0..4 unused), as in native/fastcdc.c.
const MASKS_HEX = [
  '0', '0', '0', '0', '0',
  '0000000001804110', '0000000001803110', '0000000018035100', '0000001800035300',
  '0000019000353000', '0000590003530000', '0000d90003530000', '0000d90103530000',
  '0000d90303530000', '0000d90313530000', '0000d90f03530000', '0000d90303537000',
  '0000d90703537000', '0000d90707537000', '0000d91707537000', '0000d91747537000',
  '0000d91767537000', '0000d93767537000', '0000d93777537000', '0000d93777577000',
  '0000db3777577000',
]

const M64 = (1n << 64n) - 1n

function log2Rounded(v: number): number {
  return Math.round(Math.log2(v))
}

export class JsFastCdc {
  readonly min: number
  readonly avg: number
  readonly max: number
  private readonly gearHi = new Uint32Array(256)
  private readonly gearLo = new Uint32Array(256)
  private readonly gearLsHi = new Uint32Array(256)
  private readonly gearLsLo = new Uint32Array(256)
  private readonly maskS: [number, number]
  private readonly maskL: [number, number]
  private readonly maskSLs: [number, number]
  private readonly maskLLs: [number, number]
  private hashHi = 0
  private hashLo = 0
  /** length and hash of a chunk cut from a run of at least `max` zeros */
  readonly zeroLength: number
  readonly zeroHash: bigint

  constructor(p: ChunkerParams) {
    this.min = p.min
    this.avg = p.avg
    this.max = p.max
    const bits = log2Rounded(p.avg)
    const split = (v: bigint): [number, number] => [Number((v >> 32n) & 0xffffffffn), Number(v & 0xffffffffn)]
    const maskS = BigInt('0x' + MASKS_HEX[bits + p.level]!)
    const maskL = BigInt('0x' + MASKS_HEX[bits - p.level]!)
    this.maskS = split(maskS)
    this.maskL = split(maskL)
    this.maskSLs = split((maskS << 1n) & M64)
    this.maskLLs = split((maskL << 1n) & M64)
    for (let i = 0; i < 256; i++) {
      const g = BigInt('0x' + GEAR_HEX[i]!) ^ p.seed
      const gls = ((BigInt('0x' + GEAR_HEX[i]!) << 1n) ^ (p.seed << 1n)) & M64
      ;[this.gearHi[i], this.gearLo[i]] = split(g)
      ;[this.gearLsHi[i], this.gearLsLo[i]] = split(gls)
    }
    const zero = this.cut(new Uint8Array(p.max), 0, p.max)
    this.zeroLength = zero
    this.zeroHash = this.lastHash()
  }

  /** The gear hash at the last cut, as the reference reports it. */
  lastHash(): bigint {
    return (BigInt(this.hashHi) << 32n) | BigInt(this.hashLo)
  }

  /** Length of the chunk starting at `start`, given `len` bytes of input from there. */
  cut(src: Uint8Array, start: number, len: number): number {
    let remaining = len
    if (remaining <= this.min) {
      this.hashHi = this.hashLo = 0
      return remaining
    }
    let center = this.avg
    if (remaining > this.max) remaining = this.max
    else if (remaining < center) center = remaining
    let index = this.min >>> 1
    let hi = 0
    let lo = 0
    const { gearHi, gearLo, gearLsHi, gearLsLo } = this
    let [mHi, mLo] = this.maskS
    let [mlsHi, mlsLo] = this.maskSLs
    let limit = center >>> 1
    for (let phase = 0; phase < 2; phase++) {
      for (; index < limit; index++) {
        const a = start + index * 2
        // hash = (hash << 2) + gear_ls[src[a]]
        let b = src[a]!
        hi = ((hi << 2) | (lo >>> 30)) >>> 0
        lo = (lo << 2) >>> 0
        let sum = lo + gearLsLo[b]!
        hi = (hi + gearLsHi[b]! + (sum > 0xffffffff ? 1 : 0)) >>> 0
        lo = sum >>> 0
        if ((hi & mlsHi) === 0 && (lo & mlsLo) === 0) return this.done(hi, lo, a - start)
        // hash += gear[src[a + 1]]
        b = src[a + 1]!
        sum = lo + gearLo[b]!
        hi = (hi + gearHi[b]! + (sum > 0xffffffff ? 1 : 0)) >>> 0
        lo = sum >>> 0
        if ((hi & mHi) === 0 && (lo & mLo) === 0) return this.done(hi, lo, a + 1 - start)
      }
      ;[mHi, mLo] = this.maskL
      ;[mlsHi, mlsLo] = this.maskLLs
      limit = remaining >>> 1
    }
    return this.done(hi, lo, remaining)
  }

  private done(hi: number, lo: number, length: number): number {
    this.hashHi = hi
    this.hashLo = lo
    return length
  }
}
