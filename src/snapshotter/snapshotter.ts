// The snapshots a containerd snapshotter keeps (containerd's snapshots.Snapshotter interface, with the
// semantics of its overlayfs snapshotter and its storage package): active snapshots and views are
// made on a committed parent, an active one is committed under a name, and a snapshot with children
// cannot be removed. Files live under ROOT/snapshots/ID/{fs,work}; metadata.ts keeps the rest.
//
// Order on disk, so that a kill at any moment leaves nothing a restart cannot handle: a snapshot's
// directories are made before its record is written, and removed after its record is gone; Cleanup
// removes directories no record names (what such a kill left).
//
// Lazy layers (with a store): when containerd prepares the snapshot of an image layer and names the
// snapshot it will commit (the label containerd.io/snapshot.ref, a chain ID), and the store holds a
// layer whose chain on top of the parent's is that ID, the snapshot is committed at once as a FUSE
// mount of the layer (layer-mounts.ts) and Prepare answers AlreadyExists: containerd then neither
// fetches nor unpacks that layer (the remote snapshotter protocol stargz and nydus use).
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'
import { diskUsage, type Usage } from './disk-usage.js'
import { matchesAny, parseFilter, type FieldLookup } from './filters.js'
import { Metadata, now, type SnapshotKind, type SnapshotRecord, type Timestamp } from './metadata.js'
import type { LayerMounts } from './layer-mounts.js'
import { overlayMounts, type Mount } from './overlay-mounts.js'

/** Lazy layers mounted again at once when the snapshotter opens. */
const RESTORE_JOBS = 4

/** The label with which containerd names the committed snapshot a Prepare is for. */
export const TARGET_LABEL = 'containerd.io/snapshot.ref'
/** A label naming the layer's diff_id (snapdir containerd pull sets it): checked, and saves a listing. */
export const DIFF_ID_LABEL = 'containerd.io/snapshot/snapdir.diff-id'

export interface SnapshotterOptions {
  /** lazy layers from a store; none: every layer is unpacked by containerd */
  layers?: LayerMounts
  log?: (line: string) => void
}

export interface SnapshotInfo {
  name: string
  parent: string
  kind: SnapshotKind
  labels: Record<string, string>
  created: Timestamp
  updated: Timestamp
}

const notFound = (key: string): SnapdirError => new SnapdirError('ERR_NOT_FOUND', `snapshot ${key} does not exist`, { data: { key } })
const exists = (key: string): SnapdirError => new SnapdirError('ERR_ALREADY_EXISTS', `snapshot ${key} already exists`, { data: { key } })

/** containerd's limit on a label: key and value together at most 4096 bytes. */
function checkLabels(labels: Record<string, string>): void {
  for (const [k, v] of Object.entries(labels)) {
    if (Buffer.byteLength(k) + Buffer.byteLength(v) > 4096) {
      throw new SnapdirError('ERR_INVALID_ARGUMENT', `label ${JSON.stringify(k.slice(0, 64))}: key and value exceed 4096 bytes`)
    }
  }
}

export class Snapshotter {
  /** ids of lazy layers being mounted, whose records are not written yet: Cleanup leaves them */
  private readonly pending = new Set<string>()

  private constructor(
    readonly root: string,
    private readonly meta: Metadata,
    private readonly options: SnapshotterOptions,
  ) {}

  /** the check of every lazy layer at open (restoreLayers), running behind the calls */
  private restoring: Promise<void> = Promise.resolve()

  /**
   * Opens the snapshots under `root`. Lazy layers whose mounts are gone are mounted again in the
   * background, a few at a time, so that the snapshotter serves at once even when the store is down
   * or slow (a mount that cannot come up takes seconds, up to its timeout); a call that needs one
   * meanwhile waits for that mount alone. One that cannot be mounted is logged, and the others work.
   */
  static async open(root: string, options: SnapshotterOptions = {}): Promise<Snapshotter> {
    await fs.mkdir(path.join(root, 'snapshots'), { recursive: true })
    const sn = new Snapshotter(root, await Metadata.open(root), options)
    sn.restoring = sn.restoreLayers().catch((err: Error) => options.log?.(`checking the lazy layers failed: ${err.message}`))
    return sn
  }

  /** Resolves once every lazy layer has been checked at open (mounted again, or logged as not servable). */
  restored(): Promise<void> {
    return this.restoring
  }

  private async restoreLayers(): Promise<void> {
    const layers = this.options.layers
    const lazy = this.meta.all().filter((r) => r.layer !== undefined)
    if (lazy.length === 0) return
    if (layers === undefined) {
      for (const r of lazy) this.options.log?.(`snapshot ${r.key} is a lazy layer, but no --store was given: it cannot be served`)
      return
    }
    let mounted = 0
    let failed = 0
    await forEachLimit(lazy, RESTORE_JOBS, async (r) => {
      try {
        if (await layers.ensure(r.layer!.chain, path.join(this.dir(r.id), 'fs'), r.id)) {
          mounted++
          this.options.log?.(`mounted lazy layer ${r.layer!.chain.at(-1)!} again for snapshot ${r.key}`)
        }
      } catch (err) {
        failed++
        this.options.log?.(`snapshot ${r.key} cannot be served now (mounted again when a call needs it): ${(err as Error).message}`)
      }
    })
    this.options.log?.(`lazy layers checked: ${lazy.length - mounted - failed} still mounted, ${mounted} mounted again, ${failed} cannot be served now`)
  }

  /**
   * Makes sure each lazy layer among the committed snapshot `top` and its parents is served before
   * mounts naming it are handed out: an overlay on the empty directory of a layer whose mount is gone
   * would show a wrong root file system, not fail. One that cannot be mounted (the store is down)
   * fails the call, Unavailable, and the next call tries again.
   */
  private async ensureLayers(top: string): Promise<void> {
    for (let p = top; p !== ''; ) {
      const parent = this.record(p)
      if (parent.layer !== undefined) {
        const layers = this.options.layers
        if (layers === undefined) {
          throw new SnapdirError('ERR_FAILED_PRECONDITION', `snapshot ${parent.key} is a lazy layer, but the snapshotter runs without --store: it cannot be served`)
        }
        try {
          if (await layers.ensure(parent.layer.chain, path.join(this.dir(parent.id), 'fs'), parent.id)) {
            this.options.log?.(`mounted lazy layer ${parent.layer.chain.at(-1)!} again for snapshot ${parent.key}`)
          }
        } catch (err) {
          throw new SnapdirError('ERR_STORE_UNREACHABLE', `snapshot ${parent.key} (layer ${parent.layer.chain.at(-1)!}) cannot be served now: ${(err as Error).message}`, { cause: err })
        }
      }
      p = parent.parent
    }
  }

  private dir(id: string): string {
    return path.join(this.root, 'snapshots', id)
  }

  private record(key: string): SnapshotRecord {
    const r = this.meta.get(key)
    if (r === undefined) throw notFound(key)
    return r
  }

  /** The fs/ of each committed parent of `r`, nearest first. */
  private parentDirs(r: SnapshotRecord): string[] {
    const out: string[] = []
    for (let p = r.parent; p !== ''; ) {
      const parent = this.record(p)
      out.push(path.join(this.dir(parent.id), 'fs'))
      p = parent.parent
    }
    return out
  }

  private mountsOf(r: SnapshotRecord): Mount[] {
    if (r.kind === 'committed') {
      throw new SnapdirError('ERR_FAILED_PRECONDITION', `snapshot ${r.key} is committed: it has no mounts (make a view of it)`)
    }
    return overlayMounts({ kind: r.kind, fs: path.join(this.dir(r.id), 'fs'), work: path.join(this.dir(r.id), 'work'), parents: this.parentDirs(r) })
  }

  prepare(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    return this.create('active', key, parent, labels)
  }

  view(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    return this.create('view', key, parent, labels)
  }

  private async create(kind: 'active' | 'view', key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    if (key === '') throw new SnapdirError('ERR_INVALID_ARGUMENT', 'a snapshot needs a key')
    checkLabels(labels)
    const target = labels[TARGET_LABEL]
    if (kind === 'active' && target !== undefined && this.options.layers !== undefined) await this.lazyLayer(target, parent, labels)
    // before the record: a Prepare that fails here leaves nothing behind, and can be made again
    if (parent !== '' && this.meta.get(parent) !== undefined) await this.ensureLayers(parent)
    const record = await this.meta.update(async (draft) => {
      if (draft.snapshots.some((s) => s.key === key)) throw exists(key)
      let parentRecord: SnapshotRecord | undefined
      if (parent !== '') {
        parentRecord = draft.snapshots.find((s) => s.key === parent)
        if (parentRecord === undefined) throw new SnapdirError('ERR_NOT_FOUND', `parent snapshot ${parent} does not exist`, { data: { key: parent } })
        if (parentRecord.kind !== 'committed') throw new SnapdirError('ERR_INVALID_ARGUMENT', `parent ${parent} is not a committed snapshot`)
      }
      const id = draft.next()
      const dir = this.dir(id)
      await fs.rm(dir, { recursive: true, force: true }) // a leftover of a killed call with this id
      await fs.mkdir(path.join(dir, 'fs'), { recursive: true, mode: 0o755 })
      if (kind === 'active') await fs.mkdir(path.join(dir, 'work'), { mode: 0o711 })
      if (parentRecord !== undefined && kind === 'active') {
        // the upper directory's owner is the parent's root's, as containerd's overlay snapshotter does
        const st = await fs.stat(path.join(this.dir(parentRecord.id), 'fs'))
        await fs.chown(path.join(dir, 'fs'), st.uid, st.gid)
      }
      const t = now()
      const r: SnapshotRecord = { id, kind, key, parent, labels: { ...labels }, created: t, updated: t }
      draft.snapshots.push(r)
      return r
    })
    return this.mountsOf(record)
  }

  /**
   * When the store holds the layer containerd is about to unpack as `target`: commits `target` as a
   * lazy mount of it and throws AlreadyExists, as containerd expects. Otherwise returns, and the
   * Prepare goes on as usual.
   */
  private async lazyLayer(target: string, parent: string, labels: Record<string, string>): Promise<void> {
    const layers = this.options.layers!
    if (this.meta.get(target) !== undefined) throw exists(target)
    let below: string[] = []
    if (parent !== '') {
      const p = this.meta.get(parent)
      // a parent containerd unpacked itself: its diff_ids are not known here
      if (p?.layer === undefined) return
      below = p.layer.chain
    }
    const diffId = await layers.findLayer(below, target, labels[DIFF_ID_LABEL])
    if (diffId === null) return
    const chain = [...below, diffId]
    const id = await this.meta.update((draft) => draft.next())
    this.pending.add(id)
    const dir = path.join(this.dir(id), 'fs')
    try {
      await fs.mkdir(dir, { recursive: true, mode: 0o755 })
      await layers.mount(chain, dir, id)
      await this.meta.update((draft) => {
        if (draft.snapshots.some((s) => s.key === target)) throw exists(target)
        const t = now()
        const record: SnapshotRecord = { id, kind: 'committed', key: target, parent, labels: { ...labels }, created: t, updated: t, usage: { size: 0, inodes: 0 }, layer: { chain } }
        draft.snapshots.push(record)
      })
    } catch (err) {
      await layers.unmount(dir).catch(() => {})
      await fs.rm(this.dir(id), { recursive: true, force: true }).catch(() => {})
      throw err
    } finally {
      this.pending.delete(id)
    }
    this.options.log?.(`${target}: layer ${diffId} served lazily from the store`)
    throw new SnapdirError('ERR_ALREADY_EXISTS', `snapshot ${target} already exists (layer ${diffId}, served from the store)`, { data: { key: target } })
  }

  async mounts(key: string): Promise<Mount[]> {
    const r = this.record(key)
    if (r.kind !== 'committed') await this.ensureLayers(r.parent)
    return this.mountsOf(r)
  }

  async commit(name: string, key: string, labels: Record<string, string>): Promise<void> {
    if (name === '') throw new SnapdirError('ERR_INVALID_ARGUMENT', 'a commit needs a name')
    checkLabels(labels)
    const active = this.record(key)
    if (active.kind !== 'active') throw new SnapdirError('ERR_FAILED_PRECONDITION', `snapshot ${key} is not active: only an active snapshot can be committed`)
    // measured before the record changes: the files of an active snapshot are its own until commit
    const usage = await diskUsage(path.join(this.dir(active.id), 'fs'))
    await this.meta.update((draft) => {
      if (draft.snapshots.some((s) => s.key === name)) throw exists(name)
      const r = draft.snapshots.find((s) => s.key === key)
      if (r === undefined) throw notFound(key)
      if (r.kind !== 'active') throw new SnapdirError('ERR_FAILED_PRECONDITION', `snapshot ${key} is not active: only an active snapshot can be committed`)
      const t = now()
      Object.assign(r, { kind: 'committed', key: name, labels: { ...labels }, updated: t, usage } satisfies Partial<SnapshotRecord>)
      r.created = t
    })
    // the work directory is an overlay's scratch space; a committed snapshot is only a lower
    await fs.rm(path.join(this.dir(active.id), 'work'), { recursive: true, force: true })
  }

  async remove(key: string): Promise<void> {
    const removed = await this.meta.update((draft) => {
      const at = draft.snapshots.findIndex((s) => s.key === key)
      if (at < 0) throw notFound(key)
      const r = draft.snapshots[at]!
      if (r.kind === 'committed' && draft.snapshots.some((s) => s.parent === key)) {
        throw new SnapdirError('ERR_FAILED_PRECONDITION', `snapshot ${key} has children: remove them first`)
      }
      draft.snapshots.splice(at, 1)
      return r
    })
    if (removed.layer !== undefined) {
      const dir = path.join(this.dir(removed.id), 'fs')
      // a mount of it under way (the check at open, another call) is done before it is undone
      await this.options.layers?.settled(dir)
      await this.options.layers?.unmount(dir)
    }
    await fs.rm(this.dir(removed.id), { recursive: true, force: true })
  }

  stat(key: string): SnapshotInfo {
    return infoOf(this.record(key))
  }

  /**
   * Updates the mutable fields, the labels: `paths` empty or "labels" replaces them all, "labels.KEY"
   * sets or (absent from `info`) removes one. Other fields cannot change (InvalidArgument).
   */
  async update(info: { name: string; labels: Record<string, string> }, paths: string[]): Promise<SnapshotInfo> {
    checkLabels(info.labels)
    for (const p of paths) {
      if (p !== 'labels' && !p.startsWith('labels.')) throw new SnapdirError('ERR_INVALID_ARGUMENT', `cannot update field ${JSON.stringify(p)} of snapshot ${info.name}: only labels change`)
    }
    const updated = await this.meta.update((draft) => {
      const r = draft.snapshots.find((s) => s.key === info.name)
      if (r === undefined) throw notFound(info.name)
      if (paths.length === 0 || paths.includes('labels')) r.labels = { ...info.labels }
      else {
        for (const p of paths) {
          const k = p.slice('labels.'.length)
          const v = info.labels[k]
          if (v === undefined) delete r.labels[k]
          else r.labels[k] = v
        }
      }
      r.updated = now()
      return r
    })
    return infoOf(updated)
  }

  list(filters: string[]): SnapshotInfo[] {
    const parsed = filters.filter((f) => f.trim() !== '').map(parseFilter)
    return this.meta
      .all()
      .filter((r) => matchesAny(parsed, lookupIn(r)))
      .map(infoOf)
  }

  async usage(key: string): Promise<Usage> {
    const r = this.record(key)
    if (r.kind === 'committed') return r.usage ?? { size: 0, inodes: 0 }
    if (r.kind === 'view') return { size: 0, inodes: 0 }
    return diskUsage(path.join(this.dir(r.id), 'fs'))
  }

  /** Removes the directories no snapshot record names (left by a call killed halfway). */
  async cleanup(): Promise<string[]> {
    // under the metadata queue: no create is between making its directory and writing its record
    return this.meta.update(async (draft) => {
      const known = new Set(draft.snapshots.map((s) => s.id))
      const removed: string[] = []
      for (const name of await fs.readdir(path.join(this.root, 'snapshots'))) {
        if (known.has(name) || this.pending.has(name)) continue
        // a lazy layer mounted by a call that was killed before its record was written
        await this.options.layers?.unmount(path.join(this.dir(name), 'fs'))
        await fs.rm(this.dir(name), { recursive: true, force: true })
        removed.push(name)
      }
      return removed
    })
  }
}

function infoOf(r: SnapshotRecord): SnapshotInfo {
  return { name: r.key, parent: r.parent, kind: r.kind, labels: { ...r.labels }, created: r.created, updated: r.updated }
}

/** The fields containerd's snapshot filters name, present as containerd's adaptor has them (metadata/adaptors.go): name, parent and kind always, labels.KEY when set. */
function lookupIn(r: SnapshotRecord): FieldLookup {
  return (p) => {
    const [field, ...rest] = p
    switch (field) {
      case 'name':
        return rest.length === 0 ? { value: r.key, present: true } : { value: '', present: false }
      case 'parent':
        return rest.length === 0 ? { value: r.parent, present: true } : { value: '', present: false }
      case 'kind':
        return rest.length === 0 ? { value: r.kind, present: true } : { value: '', present: false }
      case 'labels': {
        const v = r.labels[rest.join('.')]
        return v === undefined ? { value: '', present: false } : { value: v, present: true }
      }
      default:
        return { value: '', present: false }
    }
  }
}
