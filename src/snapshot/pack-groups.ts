// Which small files are cut together. casync cuts its whole archive stream, so small files share
// chunks; snapdir keeps large files cut on their own (a file's chunks depend only on its bytes) and
// packs only files under packMax, in path order, into groups cut as one stream each. A group starts
// at an "anchor": a file whose path hashes to 0 mod GROUP_ANCHOR. Anchors depend on names alone, so
// adding or removing a file disturbs only its own group, and groups can be cut in parallel.
import { hashBytes } from '../chunk/hash.js'
import type { FileJob } from './file-processor.js'

/** One group in 128 files on average: about a megabyte of small files, a dozen chunks. */
const GROUP_ANCHOR = 128
/** A bound on one group's bytes whatever the names (it is read into memory whole). */
const GROUP_MAX_BYTES = 16 * 1024 * 1024

export interface PackJob {
  /** the files of the group, in path order */
  files: FileJob[]
}

/** Groups packable files, given in path order. */
export function packGroups(files: FileJob[], paths: Buffer[]): PackJob[] {
  const groups: PackJob[] = []
  let current: FileJob[] = []
  let bytes = 0
  files.forEach((f, i) => {
    const anchor = hashBytes(paths[i]!).readUInt32LE(0) % GROUP_ANCHOR === 0
    if (current.length > 0 && (anchor || bytes + f.size > GROUP_MAX_BYTES)) {
      groups.push({ files: current })
      current = []
      bytes = 0
    }
    current.push(f)
    bytes += f.size
  })
  if (current.length > 0) groups.push({ files: current })
  return groups
}
