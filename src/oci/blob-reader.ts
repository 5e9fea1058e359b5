// Where the document walker (document-walker.ts) reads an image from: an OCI image layout on disk
// (blob-file.ts) or the bundle tree of a pushed layout in a store (stored-blobs.ts). Both check what
// they hand out against its descriptor, and say what is wrong in the same words.
import path from 'node:path'
import type { Descriptor } from './descriptor.js'
import { formatDigest, type Digest } from './digest.js'
import { LayoutProblem, MissingBlobProblem } from './layout-problem.js'

/** A blob to read: its descriptor, and how messages name it ("layer sha256:… of manifest sha256:…"). */
export interface BlobRef {
  descriptor: Descriptor
  what: string
}

export interface BlobReader {
  /**
   * A file at the layout's top (oci-layout, index.json), whole: a LayoutProblem when it is not a
   * regular file or is larger than `maxBytes`, a MissingBlobProblem when it is not there.
   */
  readFile(name: string, maxBytes: number): Promise<Buffer>
  /**
   * The blob `ref` names, whole, once it has the descriptor's size and hashes to its digest (a
   * MissingBlobProblem when the layout does not have it). The caller bounds the size.
   */
  readBlob(ref: BlobRef): Promise<Buffer>
}

/** Where a layout keeps a blob (image-layout.md: blobs/<algorithm>/<encoded>). */
export function blobPath(digest: Digest): string {
  return path.posix.join('blobs', digest.algorithm, digest.encoded)
}

/** Blobs are the same when digest and size are: one referenced several times is read once. */
export function blobKey(d: Descriptor): string {
  return `${formatDigest(d.digest)}/${d.size}`
}

// What a reader finds wrong with a file itself, worded alike wherever the layout is. `what` names the
// file (a blob by its role and digest, a top-level file by its name), `rel` is its path in the layout.

export function missingFile(what: string, rel: string): MissingBlobProblem {
  return new MissingBlobProblem(`${what} is missing${what === rel ? '' : ` (no ${rel})`}`)
}

export function notRegularFile(what: string, rel: string): LayoutProblem {
  return new LayoutProblem(`${what} is not a regular file${what === rel ? '' : ` (${rel})`}`)
}

export function tooLarge(what: string, size: number, maxBytes: number): LayoutProblem {
  return new LayoutProblem(`${what} is ${size} bytes; snapdir reads at most ${maxBytes}`)
}

export function sizeMismatch(ref: BlobRef, actual: number): LayoutProblem {
  return new LayoutProblem(`${ref.what} has ${actual} bytes, its descriptor says ${ref.descriptor.size}`)
}

/** Throws unless `hex`, the content's hash with the digest's algorithm, is the digest. */
export function checkDigest(ref: BlobRef, hex: string): void {
  const { digest } = ref.descriptor
  if (hex === digest.encoded) return
  throw new LayoutProblem(`${ref.what} does not match its digest: its content hashes to ${formatDigest({ algorithm: digest.algorithm, encoded: hex })}`)
}
