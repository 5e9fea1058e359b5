// Lazy layers: the committed snapshot of an image layer the store holds is a FUSE mount of that layer
// (`snapdir mount --layer`, the layer view) at the snapshot's fs/, served by a process of its own, so
// that containers keep reading it while the snapshotter restarts. A restarted snapshotter finds the
// mounts still up and leaves them; one that is gone (the machine rebooted, the process was killed) is
// mounted again. A store that is down then costs that snapshot alone: the rest still work.
import { spawn } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { watch } from 'node:fs/promises'
import path from 'node:path'
import { layerRefKey, LAYER_REFS } from '../store/layer-refs.js'
import type { ReadStore } from '../store/store.js'
import { FSTYPE, unmount } from '../mount/unmount.js'
import { mountAt } from '../mount/mountinfo.js'
import { SnapdirError } from '../util/errors.js'
import { chainId } from './chain-id.js'

export interface LayerMountOptions {
  /** the store URL and the mount options each layer's `snapdir mount` gets (--s3-endpoint, --cache-dir, --timeout, …) */
  store: string
  mountArgs: string[]
  /** how to start snapdir: node and the CLI's entry */
  command: [string, ...string[]]
  /** where each mount process writes its log */
  logDir: string
  /** how long a mount may take to come up */
  timeoutMs: number
}

export class LayerMounts {
  /** mounts being made, by directory: two calls that need one layer wait for one mount */
  private readonly inFlight = new Map<string, Promise<boolean>>()

  constructor(
    private readonly store: ReadStore,
    private readonly options: LayerMountOptions,
  ) {}

  /**
   * The diff_id of the layer whose chain, on top of `below` (diff_ids, bottom first), is `target`,
   * among the layers the store holds; null when it holds none (the layer is unpacked as usual).
   * `hint` is a diff_id containerd or our pull named in a label: checked, then used without a listing.
   */
  async findLayer(below: readonly string[], target: string, hint?: string): Promise<string | null> {
    const fits = (d: string): boolean => chainId([...below, d]) === target
    if (hint !== undefined) {
      if (!fits(hint)) return null
      return (await this.store.has(layerRefKey(hint))) ? hint : null
    }
    for await (const key of this.store.list(LAYER_REFS)) {
      const d = `sha256:${key.slice(LAYER_REFS.length)}`
      if (fits(d)) return d
    }
    return null
  }

  /** Whether `dir` is a snapdir mount that answers. */
  async isMounted(dir: string): Promise<boolean> {
    const info = await mountAt(dir).catch(() => null)
    if (info?.fstype !== FSTYPE) return false
    try {
      await fs.readdir(dir)
      return true
    } catch {
      return false
    }
  }

  /** Mounts the last layer of `chain` at `dir` in a process of its own; resolves once it serves. */
  async mount(chain: readonly string[], dir: string, name: string): Promise<void> {
    await fs.mkdir(this.options.logDir, { recursive: true })
    const log = path.join(this.options.logDir, `${name}.log`)
    const handle = await fs.open(log, 'a')
    // the log keeps the lines of earlier mounts of this layer: only what this one writes counts
    const from = (await handle.stat()).size
    const [cmd, ...pre] = this.options.command
    const args = [...pre, 'mount', '--store', this.options.store, ...this.options.mountArgs, ...chain.flatMap((d) => ['--layer', d]), dir]
    let child
    try {
      // its own session: a signal to the snapshotter's process group does not reach it
      child = spawn(cmd, args, { detached: true, stdio: ['ignore', handle.fd, handle.fd] })
    } finally {
      await handle.close()
    }
    child.unref()
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    try {
      await waitFor(log, from, 'mounted the layer view', exited, this.options.timeoutMs, `the mount of layer ${chain.at(-1)!} at ${dir}`)
    } catch (err) {
      // one that did not come up in time must not come up later, behind the caller's back (a dead
      // mount it leaves, if any, is cleared by the next attempt)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      throw err
    }
  }

  /**
   * Makes sure the last layer of `chain` is served at `dir`: a mount that answers is left alone; one
   * whose process is gone is cleared and mounted again. Rejects (the store is down, say) naming the
   * layer, and the next call tries again. Resolves true when it mounted the layer anew.
   */
  ensure(chain: readonly string[], dir: string, name: string): Promise<boolean> {
    let pending = this.inFlight.get(dir)
    if (pending === undefined) {
      pending = (async () => {
        if (await this.isMounted(dir)) return false
        await this.unmount(dir) // a dead FUSE mount (its process killed) is still in the way
        await this.mount(chain, dir, name)
        return true
      })().finally(() => this.inFlight.delete(dir))
      this.inFlight.set(dir, pending)
    }
    return pending
  }

  /** Resolves once no mount of `dir` is under way (whether it came up or not). */
  async settled(dir: string): Promise<void> {
    await this.inFlight.get(dir)?.catch(() => {})
  }

  /** Unmounts `dir` if a snapdir mount is there (its process then exits). */
  async unmount(dir: string): Promise<void> {
    const info = await mountAt(dir).catch(() => null)
    if (info?.fstype === FSTYPE) await unmount(dir, { lazy: true })
  }
}

/** Resolves once `file` holds `needle` past byte `from`; rejects when the process exits first or `ms` pass. */
async function waitFor(file: string, from: number, needle: string, exited: Promise<number | null>, ms: number, what: string): Promise<void> {
  const ac = new AbortController()
  const text = async () => (await fs.readFile(file).catch(() => Buffer.alloc(0))).subarray(from).toString('utf8')
  const found = (async () => {
    // watching before the first look: a line written between the two is not missed
    const changes = watch(file, { signal: ac.signal })[Symbol.asyncIterator]()
    // each next() is handled even when not awaited: the abort below rejects the one pending then
    // (when the line was there at the first look), and that must not be an unhandled rejection
    const nextChange = () => {
      const p = changes.next()
      p.catch(() => {})
      return p
    }
    let next = nextChange()
    try {
      if ((await text()).includes(needle)) return true
      for (;;) {
        if ((await next).done === true) return false
        if ((await text()).includes(needle)) return true
        next = nextChange()
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err
    }
    return false
  })()
  let timer: NodeJS.Timeout | undefined
  try {
    const outcome = await Promise.race([
      found.then((ok) => (ok ? 'ok' : 'aborted')),
      exited.then((code) => `exit ${code}`),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms))),
    ])
    if (outcome === 'ok') return
    const tail = (await text()).trim().split('\n').slice(-3).join('; ')
    throw new SnapdirError('ERR_STORE_UNREACHABLE', `${what} did not come up (${outcome === 'timeout' ? `not within ${ms} ms` : outcome}): ${tail}`)
  } finally {
    clearTimeout(timer)
    ac.abort()
    await found.catch(() => {})
  }
}
