// Which small files are cut together. casync cuts its whole archive stream, so small files share
// chunks; snapdir keeps large files cut on their own (a file's chunks depend only on its bytes) and
// packs only files under packMax, in path order, into groups cut as one stream each. A group starts
// at an "anchor": a file whose path hashes to 0 mod GROUP_ANCHOR. Anchors depend on names alone, so
// adding or removing a file disturbs only its own group, and groups can be cut in parallel.
// Push and layer expansion both cut groups through ChunkSink.cutGroup (chunk-sink.ts), the native
// batches in C; all take each file's refs from groupRefs.
import { hashBytes } from '../chunk/hash.js'
import type { ChunkRef } from '../format/tree.js'
import type { FileJob, PackJob } from './jobs.js'

/** One group in 128 files on average: about a megabyte of small files, a dozen chunks. */
const GROUP_ANCHOR = 128
/** A bound on one group's bytes whatever the names (it is read into memory whole). */
const GROUP_MAX_BYTES = 16 * 1024 * 1024

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

/** A group's chunk, by position in the group's stream. */
export interface GroupChunk {
  id: Buffer
  start: number
  end: number
}

/** Each file's refs: the slices of the group's chunks (in stream order) its bytes fall in. */
export function groupRefs(chunks: GroupChunk[], sizes: number[]): ChunkRef[][] {
  const refsOfFiles: ChunkRef[][] = []
  let c = 0
  let start = 0
  for (const size of sizes) {
    const end = start + size
    if (size > 0) while (chunks[c]!.end <= start) c++
    // sized to fit: a tree of small files holds one such array per file, and push() would grow each to 17 slots
    let last = c
    if (size > 0) while (chunks[last]!.end < end) last++
    const refs = new Array<ChunkRef>(size > 0 ? last - c + 1 : 0)
    for (let p = start, k = 0; p < end; k++) {
      while (chunks[c]!.end <= p) c++
      const chunk = chunks[c]!
      const take = Math.min(end, chunk.end) - p
      refs[k] = { id: chunk.id, offset: p - chunk.start, length: take, count: 1 }
      p += take
    }
    refsOfFiles.push(refs)
    start = end
  }
  return refsOfFiles
}
