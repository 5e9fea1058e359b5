// What the write routes keep between requests, on local disk under the state directory: uploads in
// progress (upload-sessions.ts) and what was pushed that no manifest names yet (staged-blobs.ts).
// Nothing there is in the store. A timer removes uploads left idle and staged blobs left unused;
// close() removes them all (serve's shutdown), and open() what an earlier process left.
//
//   <state-dir>/uploads/<uuid>                       an upload in progress
//   <state-dir>/staged/<repository>/<alg>-<hex>      a completed upload
import path from 'node:path'
import { promises as fs } from 'node:fs'
import { Semaphore } from '../util/concurrency.js'
import { StagedBlobs } from './staged-blobs.js'
import { UploadSessions } from './upload-sessions.js'

export interface WriteSideOptions {
  /** the state directory; this server's alone while it runs */
  stateDir: string
  /** an upload no request touched for this long is removed (default 15 minutes) */
  uploadIdleMs?: number
  /** a completed upload no manifest took within this long of its last use is removed (default 1 hour) */
  stagedTtlMs?: number
  /** remove the state directory itself at close (one made for this run) */
  removeDir?: boolean
  /** how many pushed images are stored at once (each expands its layers) */
  ingestConcurrency?: number
}

export const DEFAULT_UPLOAD_IDLE_MS = 15 * 60_000
export const DEFAULT_STAGED_TTL_MS = 60 * 60_000

export class WriteSide {
  readonly uploads: UploadSessions
  readonly staged: StagedBlobs
  readonly ingest: Semaphore
  private timer: NodeJS.Timeout | null = null
  private sweeping: Promise<void> = Promise.resolve()

  constructor(private readonly options: WriteSideOptions) {
    const idleMs = options.uploadIdleMs ?? DEFAULT_UPLOAD_IDLE_MS
    const ttlMs = options.stagedTtlMs ?? DEFAULT_STAGED_TTL_MS
    this.uploads = new UploadSessions({ dir: path.join(options.stateDir, 'uploads'), idleMs })
    this.staged = new StagedBlobs({ dir: path.join(options.stateDir, 'staged'), ttlMs })
    this.ingest = new Semaphore(options.ingestConcurrency ?? 2)
  }

  get stateDir(): string {
    return this.options.stateDir
  }

  async open(): Promise<void> {
    await fs.mkdir(this.options.stateDir, { recursive: true })
    await this.uploads.open()
    await this.staged.open()
    // often enough that nothing outlives its limit by more than a quarter of it
    const every = Math.max(50, Math.min(this.options.uploadIdleMs ?? DEFAULT_UPLOAD_IDLE_MS, this.options.stagedTtlMs ?? DEFAULT_STAGED_TTL_MS) / 4)
    this.timer = setInterval(() => void this.sweep(), every)
    this.timer.unref()
  }

  /** One sweep of both (never two at once); what it removes is only ever local files. */
  sweep(): Promise<void> {
    this.sweeping = this.sweeping.then(async () => {
      await this.uploads.sweep()
      await this.staged.sweep()
    }).catch(() => {})
    return this.sweeping
  }

  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    await this.sweeping
    await this.uploads.close()
    await this.staged.close()
    if (this.options.removeDir) await fs.rm(this.options.stateDir, { recursive: true, force: true })
  }
}
