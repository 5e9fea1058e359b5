// The open/close protocol every store shares, written once (hypercore's ready-resource, stargz's
// idempotent Close): concurrent opens share one attempt, a failed attempt is not remembered, close()
// runs once and waits for an open under way.
import { SnapdirError } from '../util/errors.js'
import type { OpenOptions } from './store.js'

export abstract class StoreLifecycle {
  abstract readonly url: string
  private opening: { done: Promise<void>; create: boolean } | null = null
  private closeCall: Promise<void> | null = null

  /** The backend's part of open(): check the store is there (ERR_STORE_NOT_FOUND), or make it. */
  protected abstract openStore(create: boolean): Promise<void>

  abstract list(prefix: string): AsyncIterable<string>

  /**
   * Set by a backend's openStore when this open made the store: a directory or bucket that was not
   * there, or an empty one it is about to fill. Only such a store is ever removed by discardIfCreated.
   */
  protected createdHere = false

  /** The backend's part of discardIfCreated(): remove what its openStore made and all that is in it. */
  protected async removeCreated(): Promise<void> {}

  /**
   * For a command that failed (push, sync): if its open made this store and nothing was committed to it
   * since (no refs: a revision or a layer ref is written last, after all it names), the store is
   * removed, so that the failure leaves nothing that was not there. An existing store is never touched.
   * A second writer that began on the new store at the same moment and has not committed yet would
   * lose its objects too: its commit fails (it names objects that are gone) rather than going wrong.
   */
  async discardIfCreated(): Promise<boolean> {
    if (!this.createdHere || this.closing) return false
    for await (const ref of this.list('refs/')) if (ref) return false
    await this.removeCreated()
    this.createdHere = false
    return true
  }

  /** The backend's part of close(): release connections and handles. Runs at most once. */
  protected async closeStore(): Promise<void> {}

  open(options: OpenOptions = {}): Promise<void> {
    if (this.closeCall) return Promise.reject(new SnapdirError('ERR_STORE_CLOSED', `store ${this.url} is closed`, { data: { store: this.url } }))
    const create = options.create === true
    const attempt = this.opening ?? this.begin(create)
    if (!create || attempt.create) return attempt.done
    // an open without create is under way or done: a store that is there needs no creating, and one
    // that is not is created by a new attempt (the failed one was forgotten before this runs)
    return attempt.done.catch((err: unknown) => {
      if (err instanceof SnapdirError && err.code === 'ERR_STORE_NOT_FOUND') return this.open(options)
      throw err
    })
  }

  /** close() was called: no new work should start. */
  protected get closing(): boolean {
    return this.closeCall !== null
  }

  close(): Promise<void> {
    return (this.closeCall ??= (async () => {
      await this.opening?.done.catch(() => {})
      await this.closeStore()
    })())
  }

  private begin(create: boolean): { done: Promise<void>; create: boolean } {
    const attempt = {
      create,
      done: this.openStore(create).catch((err: unknown) => {
        if (this.opening === attempt) this.opening = null
        throw err
      }),
    }
    this.opening = attempt
    return attempt
  }
}
