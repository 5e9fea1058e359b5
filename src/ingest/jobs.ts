// What the ingest engine cuts (a file on its own, or a pack group of small files) and what it hands
// back for each file. The worker pool, the native batches and the file processor all speak these.
import type { ChunkRef } from '../format/tree.js'

/** One regular file to cut: where it is and what the scan saw. */
export interface FileJob {
  index: number
  /** absolute path, raw bytes */
  readonly source: Buffer
  size: number
  /** holes worth skipping (see worthSkippingHoles): walk data extents, never read the holes */
  sparse: boolean
}

/** A group of small files cut as one stream (pack-groups.ts). */
export interface PackJob {
  /** the files of the group, in path order */
  files: FileJob[]
}

/** What a worker is handed: one file cut on its own, or a group of small files cut together. */
export type Job = FileJob | PackJob

/**
 * A job as plain data, for a worker thread: a structured clone copies own fields only, and push's
 * jobs make their source path when asked for (a getter), not when queued.
 */
export function plainJob(job: Job): Job {
  const file = (f: FileJob): FileJob => ({ index: f.index, source: f.source, size: f.size, sparse: f.sparse })
  return 'files' in job ? { files: job.files.map(file) } : file(job)
}

export function jobBytes(job: Job): number {
  return 'files' in job ? job.files.reduce((a, f) => a + f.size, 0) : job.size
}

export interface FileResult {
  index: number
  chunks: ChunkRef[]
  /** the whole content of a file small enough to live in the tree */
  inline?: Buffer
}

/**
 * Below this many bytes of holes a file is read straight through, holes as zeros: that costs less than
 * walking its extents, and lets the native batches (native-run.ts) take it. Binaries unpacked by dpkg
 * often have a few KiB of holes; an image file or a preallocated database has gigabytes.
 */
const SKIP_HOLES_FROM = 1024 * 1024

/** Whether a file's holes are worth skipping rather than reading; the chunks come out the same either way. */
export function worthSkippingHoles(size: number, allocated: number): boolean {
  return size - allocated >= SKIP_HOLES_FROM
}
