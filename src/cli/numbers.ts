import { UsageError } from '../util/errors.js'

/** An integer option within [min, max], or a usage error naming the flag and the range. */
export function integerOption(flag: string, value: string, min: number, max: number): number {
  const n = Number(value)
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${flag} '${value}': expected an integer from ${min} to ${max}`)
  }
  return n
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** A duration option: a number and a unit (ms, s, m, h, d; seconds without one), in milliseconds. */
export function durationOption(flag: string, value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value)
  if (m === null) throw new UsageError(`${flag} '${value}': expected a duration such as 90s, 30m, 1h or 2d (0 for none)`)
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 's']!)
}

/** Bytes for people: 1024-based units, one decimal above bytes (12.3 MiB). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let u = 0
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024
    u++
  }
  return `${n.toFixed(u === 0 ? 0 : 1)} ${units[u]}`
}
