import type { Store } from './store.js'

/**
 * Flushes a store over and over while a long write runs, so the flush that must follow it (the
 * durability barrier before a tree names the chunks) finds little left. On ext4 a syncfs writes every
 * dirty inode's table block synchronously, one after another: a few thousand new chunk files cost a
 * fifth of a second at the end of a push, and nothing when done in the background meanwhile.
 * Failures are left to the final flush, which meets them again.
 */
export class BackgroundFlush {
  private stopped = false
  private readonly loop: Promise<void>
  /** ends the pause between two flushes early */
  private endPause: (() => void) | null = null

  constructor(private readonly store: Store, private readonly pauseMs = 50) {
    this.loop = this.run()
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.store.flush()
      } catch {
        return
      }
      if (this.stopped) return
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.pauseMs)
        this.endPause = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.endPause = null
    }
  }

  /** Stops after the flush under way, if any; a pause between flushes ends at once. */
  async stop(): Promise<void> {
    this.stopped = true
    this.endPause?.()
    await this.loop
  }
}
