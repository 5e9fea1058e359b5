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
      await new Promise((resolve) => setTimeout(resolve, this.pauseMs))
    }
  }

  /** Stops after the flush under way, if any. */
  async stop(): Promise<void> {
    this.stopped = true
    await this.loop
  }
}
