import type { ChunkerParams } from '../chunk/params.js'
import type { Tree, TreeEntry } from '../format/tree.js'
import type { Store } from '../store/store.js'
import { jobBytes, type FileJob, type Job } from './file-processor.js'
import { packGroups } from './pack-groups.js'
import type { ScannedEntry } from './scan.js'
import { WorkerPool } from './worker-pool.js'

export interface BuildStats {
  entries: number
  files: number
  logicalBytes: number
  chunkRefs: number
  distinctChunks: number
  chunksWritten: number
  bytesWritten: number
}

export interface BuildOptions {
  params: ChunkerParams
  /** where new chunks go; without one, only the tree (and so the ID) is computed */
  store?: Store
  /** called with the total logical bytes once scanned, then with bytes as files are cut */
  onScanned?: (totalBytes: number, entries: number) => void
  onBytes?: (bytes: number) => void
  /** worker threads to cut with, started early by the caller; default: a pool of one per core */
  pool?: WorkerPool
}

/**
 * Cuts every file of a scanned directory into chunks, returning the tree that names them. Scanning is
 * the caller's first step (scanDirectory), so a bad source fails before anything is written.
 */
export async function buildSnapshot(scanned: ScannedEntry[], options: BuildOptions): Promise<{ tree: Tree; stats: BuildStats }> {
  const files = scanned.filter((s) => s.entry.type === 'file')
  const logicalBytes = files.reduce((a, f) => a + f.entry.size, 0)
  options.onScanned?.(logicalBytes, scanned.length)

  const fileJobs: FileJob[] = files.map((f, index) => ({ index, source: f.source, size: f.entry.size, sparse: f.allocated < f.entry.size }))
  const { inlineMax = 0, packMax = 0 } = options.params
  // by size alone: how a file is laid out on disk (holes) must never change its chunks, or the ID
  const packable = (j: FileJob): boolean => j.size > inlineMax && j.size < packMax
  const packed = fileJobs.filter(packable)
  const jobs: Job[] = [
    ...packGroups(packed, packed.map((j) => files[j.index]!.entry.path)),
    ...fileJobs.filter((j) => !packable(j)),
  ]
  // Larger jobs first, so a long one does not end up alone at the tail.
  jobs.sort((a, b) => jobBytes(b) - jobBytes(a))
  const pool = options.pool ?? new WorkerPool()
  let processed
  try {
    processed = await pool.run(jobs, files.length, {
      params: options.params,
      store: options.store ?? null,
      ...(options.onBytes ? { onBytes: options.onBytes } : {}),
    })
  } finally {
    if (!options.pool) await pool.close()
  }
  const { results, stats } = processed
  const distinct = new Set<string>()
  let chunkRefs = 0
  files.forEach((f, i) => {
    const r = results[i]!
    f.entry.chunks = r.chunks
    if (r.inline) f.entry.inline = r.inline
    for (const c of f.entry.chunks) {
      chunkRefs += c.count
      distinct.add(c.id.toString('hex'))
    }
  })
  const entries: TreeEntry[] = scanned.map((s) => s.entry)
  return {
    tree: { chunker: options.params, entries },
    stats: { entries: scanned.length, files: files.length, logicalBytes, chunkRefs, distinctChunks: distinct.size, ...stats },
  }
}
