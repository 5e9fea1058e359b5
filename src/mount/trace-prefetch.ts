// Fetching the chunks of a stored access trace ahead (mount/trace.ts), in the trace's order. It starts
// as soon as the trace is read, while the mount is still loading its tree: over a slow link the mount
// is up only after several store round trips, and the trace's chunks (megabytes, against the tree's
// few hundred kilobytes) can be on their way meanwhile instead of after. The tree comes first: until
// the mount is up only `loadingJobs` chunk fetches are in flight, so that the tree's requests do not
// queue behind a window of chunks on the link; then `jobs`.
import type { ChunkReader } from './chunk-reader.js'

export interface TracePrefetchOptions {
  /** fetches in flight once the mount is up */
  jobs: number
  /** fetches in flight while the mount's tree is still loading (at most `jobs`) */
  loadingJobs: number
  /** bytes of chunks it loads at most (Infinity: no cap); checked before each fetch is started */
  budgetBytes: number
}

export class TracePrefetch {
  /** chunks it loaded before any read asked for them */
  prefetched = 0
  /** resolves once it has nothing more to fetch (or was stopped) and its fetches have ended */
  readonly done: Promise<void>
  private ids: string[] | null = null
  private next = 0
  private running = 0
  private jobs: number
  private budget: number
  private stopped = false
  private wanted: ((id: string) => boolean) | null = null
  private finish!: () => void

  constructor(
    private readonly reader: ChunkReader,
    chunks: Promise<string[] | null>,
    private readonly options: TracePrefetchOptions,
  ) {
    this.jobs = Math.min(options.loadingJobs, options.jobs)
    this.budget = options.budgetBytes
    this.done = new Promise((resolve) => (this.finish = resolve))
    // a trace that cannot be read is no trace
    chunks.then(
      (ids) => {
        this.ids = ids ?? []
        this.pump()
      },
      () => {
        this.ids = []
        this.pump()
      },
    )
  }

  /**
   * The mount is up: from now on `jobs` fetches are in flight, and chunks its tree does not have (a
   * trace of another tree, or damaged) are skipped.
   */
  mounted(has: (id: string) => boolean): void {
    this.wanted = has
    this.jobs = this.options.jobs
    this.pump()
  }

  /** Starts no more fetches; `done` resolves once those under way end. */
  stop(): void {
    this.stopped = true
    this.pump()
  }

  private pump(): void {
    const ids = this.ids
    while (ids !== null && !this.stopped && this.running < this.jobs && this.next < ids.length && this.budget > 0) {
      const id = ids[this.next++]!
      if (this.wanted && !this.wanted(id)) continue
      this.running++
      void this.reader.fetchAhead(id).then((size) => {
        if (size > 0) this.prefetched++
        this.budget -= size
        this.running--
        this.pump()
      })
    }
    if (this.running > 0) return
    // stopped before the trace was read: done at once, whenever that read ends
    if (this.stopped || (ids !== null && (this.next >= ids.length || this.budget <= 0))) this.finish()
  }
}
