// Waiting on a directory's changes: the condition is looked at again whenever something in the
// directory (or below it, with `recursive`) changes, never on a timer; `ms` is only the deadline.
import { watch } from 'node:fs'

/** Resolves once `ready()` holds; fails after `ms` with `what` and `describe()` in the message. */
export async function dirState(
  dir: string,
  ready: () => boolean,
  what: string,
  ms: number,
  options: { recursive?: boolean; describe?: () => string } = {},
): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const watcher = watch(dir, { recursive: options.recursive ?? false }, () => {
      if (ready()) done()
    })
    const timer = setTimeout(() => {
      const more = options.describe ? `: ${options.describe()}` : ''
      done(new Error(`${dir} did not come to hold ${what} within ${ms} ms${more}`))
    }, ms)
    const done = (err?: Error): void => {
      clearTimeout(timer)
      watcher.close()
      if (err) reject(err)
      else resolve()
    }
    if (ready()) done()
  })
}
