import { jobBytes, type Job } from './jobs.js'

// A batch is a few dozen small jobs or one large one: few hand-overs, and no thread left idle at the end.
const BATCH_JOBS = 64
const BATCH_BYTES = 8 * 1024 * 1024

/** Jobs waiting to be cut, handed out in batches in the order they came (worker-pool.ts, native-run.ts). */
export class JobQueue {
  private readonly jobs: Job[] = []
  private head = 0

  push(jobs: Job[]): void {
    for (const j of jobs) this.jobs.push(j)
  }

  get empty(): boolean {
    return this.head === this.jobs.length
  }

  /** Up to BATCH_JOBS jobs or BATCH_BYTES, whichever comes first, with their bytes; none when empty. */
  take(): { jobs: Job[]; bytes: number } {
    const out: Job[] = []
    let bytes = 0
    while (this.head < this.jobs.length && out.length < BATCH_JOBS && (out.length === 0 || bytes < BATCH_BYTES)) {
      const j = this.jobs[this.head]!
      // the queue only grows: drop taken jobs so a long run does not keep them all
      this.jobs[this.head++] = undefined as unknown as Job
      out.push(j)
      bytes += jobBytes(j)
    }
    return { jobs: out, bytes }
  }
}
