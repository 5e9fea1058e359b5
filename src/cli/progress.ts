import { createRequire } from 'node:module'
import type cliProgressModule from 'cli-progress'
import { formatBytes } from './numbers.js'

export interface Progress {
  start(total: number, label: string): void
  add(n: number): void
  stop(): void
}

const silent: Progress = { start() {}, add() {}, stop() {} }

/**
 * A progress bar on stderr, only when stderr is a terminal (never in pipes, logs or tests), so stdout
 * stays exactly the result.
 */
export function progressBar(unit: 'bytes' | 'items', enabled = process.stderr.isTTY === true): Progress {
  if (!enabled) return silent
  // loaded only for a terminal: every command imports this module, and most output is not one
  const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof cliProgressModule
  let value = 0
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
      format: unit === 'bytes'
        ? '{label} [{bar}] {percentage}% {done}/{all} {speed}/s eta {eta_formatted}'
        : '{label} [{bar}] {percentage}% {value}/{total} eta {eta_formatted}',
    },
    cliProgress.Presets.shades_classic,
  )
  let started = Date.now()
  const extra = (total: number) => ({
    done: formatBytes(value),
    all: formatBytes(total),
    speed: formatBytes(value / Math.max(0.001, (Date.now() - started) / 1000)),
  })
  let total = 0
  return {
    start(t, label) {
      // a bar may be started again for the next phase of a command: it counts from zero
      total = t
      value = 0
      started = Date.now()
      bar.start(Math.max(1, t), 0, { label, ...extra(t) })
    },
    add(n) {
      value += n
      bar.update(value, extra(total))
    },
    stop() {
      bar.stop()
    },
  }
}
