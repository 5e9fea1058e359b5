import { UsageError } from '../util/errors.js'

/** An integer option within [min, max], or a usage error naming the flag and the range. */
export function integerOption(flag: string, value: string, min: number, max: number): number {
  const n = Number(value)
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${flag} '${value}': expected an integer from ${min} to ${max}`)
  }
  return n
}
