// The snapshotter's durable metadata: every snapshot's key, kind, parent, labels, times and, once
// committed, its usage, in one JSON file under --root that each change rewrites whole and atomically
// (a temporary file, fsync, rename, fsync of the directory), so that a snapshotter killed at any
// moment restarts with the state of its last completed call. A few thousand snapshots make a file of
// a few MB: the same order of cost as containerd's bolt database, without a native dependency.
//
// Changes are serialised (one at a time, each reading the state the last one left); reads see the
// last completed change.
import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { SnapdirError, isErrno } from '../util/errors.js'

export type SnapshotKind = 'view' | 'active' | 'committed'

export interface Timestamp {
  seconds: number
  nanos: number
}

export interface SnapshotRecord {
  /** the directory under snapshots/ that holds its files; never reused */
  id: string
  kind: SnapshotKind
  /** the key of an active snapshot or view, the name of a committed one */
  key: string
  /** the name of the committed snapshot it is made on; '' for none */
  parent: string
  labels: Record<string, string>
  created: Timestamp
  updated: Timestamp
  /** committed: its size and inodes, measured at commit */
  usage?: { size: number; inodes: number }
  /** a lazy layer: fs/ is a FUSE mount of the last of these diff_ids (bottom first) from the store */
  layer?: { chain: string[] }
}

interface MetadataFile {
  version: 1
  next: number
  snapshots: SnapshotRecord[]
}

const FILE = 'metadata.json'

export function now(): Timestamp {
  const ms = Date.now()
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 }
}

export class Metadata {
  private state: MetadataFile
  private queue: Promise<unknown> = Promise.resolve()

  private constructor(
    readonly root: string,
    state: MetadataFile,
  ) {
    this.state = state
  }

  static async open(root: string): Promise<Metadata> {
    const file = path.join(root, FILE)
    let state: MetadataFile
    try {
      state = parse(await fs.readFile(file, 'utf8'), file)
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err
      state = { version: 1, next: 1, snapshots: [] }
    }
    return new Metadata(root, state)
  }

  get(key: string): SnapshotRecord | undefined {
    return this.state.snapshots.find((s) => s.key === key)
  }

  all(): readonly SnapshotRecord[] {
    return this.state.snapshots
  }

  /**
   * Runs `change` on a copy of the state, one change at a time; what it returns is written before the
   * promise resolves. A change that throws leaves the state as it was.
   */
  async update<T>(change: (draft: { next: () => string; snapshots: SnapshotRecord[] }) => T | Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      const draft: MetadataFile = structuredClone(this.state)
      const result = await change({
        next: () => String(draft.next++),
        snapshots: draft.snapshots,
      })
      await this.write(draft)
      this.state = draft
      return result
    })
    this.queue = run.catch(() => {})
    return run
  }

  private async write(state: MetadataFile): Promise<void> {
    const file = path.join(this.root, FILE)
    const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`
    const handle = await fs.open(tmp, 'w')
    try {
      await handle.writeFile(JSON.stringify(state))
      await handle.sync()
    } finally {
      await handle.close()
    }
    await fs.rename(tmp, file)
    const dir = await fs.open(this.root, 'r')
    try {
      await dir.sync()
    } finally {
      await dir.close()
    }
  }
}

function parse(text: string, file: string): MetadataFile {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new SnapdirError('ERR_INVALID_ARGUMENT', `snapshotter metadata ${file} is not JSON: ${(err as Error).message}`, { cause: err })
  }
  const v = value as Partial<MetadataFile>
  if (v.version !== 1 || typeof v.next !== 'number' || !Array.isArray(v.snapshots)) {
    throw new SnapdirError('ERR_INVALID_ARGUMENT', `snapshotter metadata ${file} is not version 1 metadata`)
  }
  return v as MetadataFile
}
