/**
 * Seconds spent in each phase of a long operation (push's `--json` reports them): `phase(name)` ends
 * the phase named, which began when the one before it ended (or the timer was made).
 */
export function phaseTimer(): { phases: Record<string, number>; phase: (name: string) => void } {
  const phases: Record<string, number> = {}
  let mark = performance.now()
  return {
    phases,
    phase: (name) => {
      const now = performance.now()
      phases[name] = Math.round(now - mark) / 1000
      mark = now
    },
  }
}
