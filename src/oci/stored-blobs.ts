// The blobs of a pushed image layout, read out of its bundle tree in a store without pulling it: each
// file through store/tree-file.ts (every chunk verified), each blob then checked against its
// descriptor as on disk (blob-file.ts), so a stored layout is read by the same walk and the same rules.
import { createHash } from 'node:crypto'
import type { Tree, TreeEntry } from '../format/tree.js'
import type { ReadStore } from '../store/store.js'
import { findEntry, readTreeFile } from '../store/tree-file.js'
import { checked, treeFileContent } from './archive-member.js'
import { blobPath, checkDigest, missingFile, notRegularFile, sizeMismatch, tooLarge, type BlobReader, type BlobRef } from './blob-reader.js'
import { formatDigest } from './digest.js'

export class StoredBlobs implements BlobReader {
  constructor(
    private readonly store: ReadStore,
    private readonly bundle: Tree,
  ) {}

  /** Any file of the bundle by its path (a Docker archive's too), whole. */
  async readFile(name: string, maxBytes: number): Promise<Buffer> {
    const entry = this.file(name, name)
    if (entry.size > maxBytes) throw tooLarge(name, entry.size, maxBytes)
    return readTreeFile(this.store, entry, maxBytes)
  }

  async readBlob(ref: BlobRef): Promise<Buffer> {
    const { descriptor } = ref
    const entry = this.blobEntry(ref)
    if (entry.size !== descriptor.size) throw sizeMismatch(ref, entry.size)
    const data = await readTreeFile(this.store, entry, descriptor.size)
    checkDigest(ref, createHash(descriptor.digest.algorithm).update(data).digest('hex'))
    return data
  }

  /**
   * The blob `ref` names as a stream, every chunk verified (a layer stored as a recipe regenerated),
   * failing at its end at the latest unless it has the descriptor's size and digest: a layer is never
   * held whole.
   */
  blobContent(ref: BlobRef): AsyncIterable<Buffer> {
    const { descriptor } = ref
    const entry = this.blobEntry(ref)
    if (entry.size !== descriptor.size) throw sizeMismatch(ref, entry.size)
    return checked(treeFileContent(this.store, entry), formatDigest(descriptor.digest), descriptor.size, ref.what)
  }

  /** The bundle's entry for the blob `ref` names (a view serves a config as it is stored). */
  blobEntry(ref: BlobRef): TreeEntry {
    const rel = blobPath(ref.descriptor.digest)
    return this.file(rel, ref.what)
  }

  private file(rel: string, what: string): TreeEntry {
    const entry = findEntry(this.bundle, rel)
    if (entry === null) throw missingFile(what, rel)
    if (entry.type !== 'file') throw notRegularFile(what, rel)
    return entry
  }
}
