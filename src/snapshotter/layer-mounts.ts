// Lazy layers: the committed snapshot of an image layer the store holds is a FUSE mount of that layer
// (`snapdir mount --layer`, the layer view) at the snapshot's fs/, served by a process of its own, so
// that containers keep reading it while the snapshotter restarts. A restarted snapshotter finds the
// mounts still up and leaves them; one that is gone (the machine rebooted, the process was killed) is
// mounted again. A store that is down then costs that snapshot alone: the rest still work.
//
// A new layer's mount is started by a process started ahead (the CLI's standby mode) that
// has loaded its code already and waits for the layer and the directory: what containerd's Prepare
// waits for is then the mount's store reads, not a Node start and half a CPU-second of loading.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import os from 'node:os'
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
  /**
   * keep a mount process started ahead for the next new layer: the environment with which the
   * command waits for the rest of its arguments on stdin (src/cli/standby.ts)
   */
  standbyEnv?: Record<string, string>
}

/** A `snapdir mount` started ahead, waiting on its stdin for the layer and the directory, writing to `log`. */
interface Standby {
  child: ChildProcess
  log: string
}

const STANDBY_LOG = 'standby-'
/**
 * The standby loads its code at this niceness, so that it does not take the CPU from the container
 * whose start made it necessary (it is started once the previous one is taken, as that container
 * starts); its main thread gets the usual priority back when it is taken. Only where that can be
 * undone: raising a priority needs CAP_SYS_NICE (a snapshotter runs as root).
 */
const STANDBY_NICE = 10

function setNice(pid: number | undefined, nice: number): void {
  if (pid === undefined) return
  try {
    os.setPriority(pid, nice)
  } catch {
    // gone, or not ours to change: it runs as it is
  }
}

export class LayerMounts {
  /** mounts being made, by directory: two calls that need one layer wait for one mount */
  private readonly inFlight = new Map<string, Promise<boolean>>()
  private standby: Standby | null = null
  private starting: Promise<void> | null = null
  private closed = false

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

  /**
   * Starts the standby mount process (when the options ask for one), and removes the logs of
   * standbys a snapshotter that was killed left unused. Resolves once it is started.
   */
  async open(): Promise<void> {
    if (this.options.standbyEnv === undefined) return
    await fs.mkdir(this.options.logDir, { recursive: true })
    for (const f of await fs.readdir(this.options.logDir)) {
      if (f.startsWith(STANDBY_LOG)) await fs.rm(path.join(this.options.logDir, f), { force: true })
    }
    await this.startStandby()
  }

  /** Ends the standby mount process (its stdin closes: it exits). Mounts are left up. */
  async close(): Promise<void> {
    this.closed = true
    await this.starting?.catch(() => {})
    const standby = this.standby
    this.standby = null
    if (standby !== null) {
      standby.child.stdin?.end()
      await fs.rm(standby.log, { force: true })
    }
  }

  private startStandby(): Promise<void> {
    this.starting ??= (async () => {
      if (this.closed || this.standby !== null) return
      const log = path.join(this.options.logDir, `${STANDBY_LOG}${randomBytes(6).toString('hex')}.log`)
      const handle = await fs.open(log, 'a')
      const [cmd, ...pre] = this.options.command
      let child: ChildProcess
      try {
        child = spawn(cmd, [...pre, 'mount', '--store', this.options.store, ...this.options.mountArgs], {
          detached: true,
          stdio: ['pipe', handle.fd, handle.fd],
          env: { ...process.env, ...this.options.standbyEnv },
        })
      } finally {
        await handle.close()
      }
      // neither it nor its stdin keeps the snapshotter running; when the snapshotter goes, its stdin ends and it exits
      if (process.getuid?.() === 0) setNice(child.pid, STANDBY_NICE)
      child.unref()
      const stdin = child.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null
      stdin?.unref?.()
      child.stdin?.on('error', () => {}) // it died: seen by its exit
      const standby = { child, log }
      child.once('exit', () => {
        if (this.standby !== standby) return
        this.standby = null
        fs.rm(log, { force: true }).catch(() => {})
      })
      this.standby = standby
    })().finally(() => (this.starting = null))
    return this.starting
  }

  /** The standby, renamed to write to `log`, if one is up and `log` is new (a mount again appends to its log); null otherwise. */
  private async takeStandby(log: string): Promise<ChildProcess | null> {
    if (await fs.stat(log).then(() => true, () => false)) return null
    await this.starting?.catch(() => {})
    // claimed with no await between the look and the claim: two mounts at once do not both take it
    const standby = this.standby
    if (standby === null || standby.child.exitCode !== null || standby.child.signalCode !== null) return null
    this.standby = null
    try {
      await fs.rename(standby.log, log)
    } catch (err) {
      standby.child.stdin?.end() // it exits
      throw err
    }
    return standby.child
  }

  /** Mounts the last layer of `chain` at `dir` in a process of its own; resolves once it serves. */
  async mount(chain: readonly string[], dir: string, name: string): Promise<void> {
    await fs.mkdir(this.options.logDir, { recursive: true })
    const log = path.join(this.options.logDir, `${name}.log`)
    const layerArgs = [...chain.flatMap((d) => ['--layer', d]), dir]
    let child = this.options.standbyEnv !== undefined ? await this.takeStandby(log) : null
    // the log keeps the lines of earlier mounts of this layer: only what this one writes counts
    const from = await fs.stat(log).then((st) => st.size, () => 0)
    if (child !== null) {
      setNice(child.pid, 0)
      child.stdin!.end(`${JSON.stringify(layerArgs)}\n`)
    } else {
      const handle = await fs.open(log, 'a')
      const [cmd, ...pre] = this.options.command
      const args = [...pre, 'mount', '--store', this.options.store, ...this.options.mountArgs, ...layerArgs]
      try {
        // its own session: a signal to the snapshotter's process group does not reach it
        child = spawn(cmd, args, { detached: true, stdio: ['ignore', handle.fd, handle.fd] })
      } finally {
        await handle.close()
      }
      child.unref()
    }
    const started = child
    const exited = new Promise<number | null>((resolve) => {
      if (started.exitCode !== null || started.signalCode !== null) resolve(started.exitCode)
      else started.once('exit', (code) => resolve(code))
    })
    try {
      await waitFor(log, from, 'mounted the layer view', exited, this.options.timeoutMs, `the mount of layer ${chain.at(-1)!} at ${dir}`)
    } catch (err) {
      // one that did not come up in time must not come up later, behind the caller's back (a dead
      // mount it leaves, if any, is cleared by the next attempt)
      if (started.exitCode === null && started.signalCode === null) started.kill('SIGKILL')
      throw err
    } finally {
      // the next standby starts once this mount is up: not while it competes with it for the CPU
      if (this.options.standbyEnv !== undefined) this.startStandby().catch(() => {})
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
