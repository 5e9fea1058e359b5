// What a client pushed that no manifest names yet, kept per repository on local disk: blobs from
// completed uploads, blobs mounted from another repository that has them in the store (a note of
// where they are, no copy), and manifests pushed by digest alone (skopeo pushes an index's images by digest
// before the index). None of it is in the store or visible there: a manifest pushed with a tag takes
// what it names from here into the store (manifest-push.ts), after which its blobs are dropped.
// Whatever no manifest took within `ttlMs` of its last use is removed by sweep(), and all at close().
//
//   <dir>/<repository as a key component (hashed when too long)>/<algorithm>-<hex>
import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { encodeKeyComponent } from '../format/image-name.js'
import { parseDigest } from '../oci/digest.js'
import { isErrno } from '../util/errors.js'
import { RegistryError } from './errors.js'
import type { FinishedUpload } from './upload-sessions.js'

export interface StagedManifest {
  bytes: Buffer
  mediaType: string
  digest: string
}

/** A blob staged for a repository: an uploaded file, or a mount of another repository's stored blob. */
export type StagedBlob = { size: number; file: string } | { size: number; from: string }

export interface StagedBlobsOptions {
  dir: string
  /** a blob or manifest unused this long is removed by sweep() */
  ttlMs: number
  now?: () => number
}

export class StagedBlobs {
  private readonly touched = new Map<string, number>()
  /** files a manifest push is reading: not removed until it lets go */
  private readonly pins = new Map<string, number>()
  private readonly manifests = new Map<string, StagedManifest & { touched: number }>()
  private readonly mounts = new Map<string, { from: string; size: number; touched: number }>()
  /**
   * removals under way, by key: stat() waits for one, so that a push that pinned a blob after a drop
   * or sweep had decided to remove it finds it gone, not a file about to vanish under its reader
   */
  private readonly removing = new Map<string, Promise<void>>()
  private readonly now: () => number

  constructor(private readonly options: StagedBlobsOptions) {
    if (!(options.ttlMs > 0)) throw new RangeError(`StagedBlobs: ttlMs must be positive, got ${options.ttlMs}`)
    this.now = options.now ?? Date.now
  }

  /** Makes the directory, emptied of what an earlier process left there. */
  async open(): Promise<void> {
    await fs.rm(this.options.dir, { recursive: true, force: true })
    await fs.mkdir(this.options.dir, { recursive: true })
  }

  /** Keeps a completed upload as `repository`'s blob (moved, not copied). */
  async add(repository: string, upload: FinishedUpload): Promise<void> {
    const file = this.file(repository, upload.digest)
    await fs.mkdir(path.dirname(file), { recursive: true })
    // not under a removal of the same blob still going on
    await this.removing.get(this.key(repository, upload.digest))
    // the same blob again replaces it: same bytes
    await fs.rename(upload.file, file)
    this.touched.set(file, this.now())
  }

  /** Gives `repository` the file `from` has staged for `digest` (a hard link: no copy). */
  async share(from: string, repository: string, digest: string): Promise<void> {
    const source = this.file(from, digest)
    const file = this.file(repository, digest)
    await fs.mkdir(path.dirname(file), { recursive: true })
    await this.removing.get(this.key(repository, digest))
    await fs.link(source, file).catch((err: unknown) => {
      if (!isErrno(err, 'EEXIST')) throw err
    })
    this.touched.set(file, this.now())
  }

  /** Notes that `repository` has blob `digest` through `from`'s stored copy (a cross-repository mount). */
  addMount(repository: string, digest: string, from: string, size: number): void {
    this.mounts.set(this.key(repository, digest), { from, size, touched: this.now() })
  }

  /** `repository`'s staged blob `digest`, or null. */
  async stat(repository: string, digest: string): Promise<StagedBlob | null> {
    const file = this.file(repository, digest)
    await this.removing.get(this.key(repository, digest))
    try {
      const st = await fs.stat(file)
      this.touched.set(file, this.now())
      return { file, size: st.size }
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err
    }
    const mount = this.mounts.get(this.key(repository, digest))
    if (mount === undefined) return null
    mount.touched = this.now()
    return { from: mount.from, size: mount.size }
  }

  addManifest(repository: string, manifest: StagedManifest): void {
    this.manifests.set(this.key(repository, manifest.digest), { ...manifest, touched: this.now() })
  }

  manifest(repository: string, digest: string): StagedManifest | null {
    const m = this.manifests.get(this.key(repository, digest))
    if (m === undefined) return null
    m.touched = this.now()
    return { bytes: m.bytes, mediaType: m.mediaType, digest: m.digest }
  }

  /** Holds `digests` of `repository` against removal until the returned function is called. */
  pin(repository: string, digests: Iterable<string>): () => void {
    const keys = [...new Set(digests)].map((d) => this.key(repository, d))
    for (const k of keys) this.pins.set(k, (this.pins.get(k) ?? 0) + 1)
    return () => {
      for (const k of keys) {
        const n = (this.pins.get(k) ?? 1) - 1
        if (n === 0) this.pins.delete(k)
        else this.pins.set(k, n)
      }
    }
  }

  /** Drops what a manifest took into the store, unless another push holds it. */
  async drop(repository: string, digests: Iterable<string>): Promise<void> {
    for (const d of new Set(digests)) {
      const key = this.key(repository, d)
      if (this.pins.has(key)) continue
      this.manifests.delete(key)
      this.mounts.delete(key)
      const file = this.file(repository, d)
      this.touched.delete(file)
      await this.remove(key, file)
    }
  }

  /** Removes blobs and manifests unused for longer than ttlMs that no push holds; returns how many. */
  async sweep(): Promise<number> {
    const before = this.now() - this.options.ttlMs
    let removed = 0
    for (const kept of [this.manifests, this.mounts]) {
      for (const [key, m] of kept) {
        if (m.touched < before && !this.pins.has(key)) {
          kept.delete(key)
          removed++
        }
      }
    }
    let repos: string[]
    try {
      repos = await fs.readdir(this.options.dir)
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return removed
      throw err
    }
    for (const repo of repos) {
      const dir = path.join(this.options.dir, repo)
      for (const name of await fs.readdir(dir).catch(() => [])) {
        const file = path.join(dir, name)
        if (this.pins.has(`${repo}/${name}`)) continue
        // a file this process has not seen used (it cannot be: open() empties the directory) counts from its mtime
        const used = this.touched.get(file) ?? (await fs.stat(file).then((s) => s.mtimeMs, () => this.now()))
        if (used >= before || this.pins.has(`${repo}/${name}`)) continue
        this.touched.delete(file)
        await this.remove(`${repo}/${name}`, file)
        removed++
      }
      await fs.rmdir(dir).catch(() => {}) // only when empty
    }
    return removed
  }

  async close(): Promise<void> {
    this.manifests.clear()
    this.mounts.clear()
    this.touched.clear()
    await fs.rm(this.options.dir, { recursive: true, force: true })
  }

  /** Removes a staged file, noted under `key` while it goes (see `removing`). */
  private async remove(key: string, file: string): Promise<void> {
    const removed = fs.rm(file, { force: true })
    const noted = removed.then(() => {}, () => {})
    this.removing.set(key, noted)
    try {
      await removed
    } finally {
      if (this.removing.get(key) === noted) this.removing.delete(key)
    }
  }

  private key(repository: string, digest: string): string {
    // a digest is a safe file name once parsed: algorithm and lowercase hex
    const d = parseDigest(digest)
    if (typeof d === 'string') throw new RegistryError('DIGEST_INVALID', { message: `digest ${JSON.stringify(digest)} ${d}` })
    return `${repositoryDir(repository)}/${d.algorithm}-${d.encoded}`
  }

  private file(repository: string, digest: string): string {
    return path.join(this.options.dir, this.key(repository, digest))
  }
}

/** A repository's directory name: spelled as a store key component, or its hash when that is too long for a file name. */
function repositoryDir(repository: string): string {
  const spelled = encodeKeyComponent(repository)
  return spelled.length <= 200 ? spelled : `sha256-${createHash('sha256').update(repository).digest('hex')}`
}
