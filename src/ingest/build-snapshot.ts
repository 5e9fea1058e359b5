import type { ChunkerParams } from '../chunk/params.js'
import type { Tree, TreeEncoder, TreeEntry } from '../format/tree.js'
import type { Store } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import { jobBytes, worthSkippingHoles, type FileJob, type FileResult, type Job } from './jobs.js'
import { packGroups } from './pack-groups.js'
import { scanDirectory, type ScannedEntry } from './scan.js'
import { poolFor, type WorkerPool } from './worker-pool.js'

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
  /** worker threads to cut with, started early by the caller, who closes them; default: a pool made (and closed) here */
  pool?: WorkerPool
  /** given, each entry is encoded into it once final, while other files are still being cut */
  encoder?: TreeEncoder
}

/**
 * Cuts every file of a directory into chunks, returning the tree that names them. Given a directory,
 * it scans it too, and files that are cut on their own (not packed: see pack-groups.ts) go to the
 * workers as the scan finds them; the rest follow once the scan is done, as packing needs every path.
 * Given a scan (an image, which is checked between scanning and storing), it cuts that.
 * With a store, the caller checks the directory first (checkSourceDirectory), as chunks may be
 * written before the scan ends.
 */
export async function buildSnapshot(source: { dir: string } | ScannedEntry[], options: BuildOptions): Promise<{ tree: Tree; stats: BuildStats }> {
  const { inlineMax = 0, packMax = 0 } = options.params
  // by size alone: how a file is laid out on disk (holes) must never change its chunks, or the ID
  const packable = (size: number): boolean => size > inlineMax && size < packMax
  // the files in the order they were handed out: job indexes point here
  const files: ScannedEntry[] = []
  const jobOf = (f: ScannedEntry): FileJob => {
    const index = files.push(f) - 1
    return { index, source: f.source, size: f.entry.size, sparse: worthSkippingHoles(f.entry.size, f.allocated) }
  }
  // progress counts from when the total is known, after the scan
  let early: number | null = 0
  const onBytes = options.onBytes
  const pool = options.pool ?? poolFor(options.store ?? null)
  const { encoder } = options
  // a file's entry is final once its chunks are known and the scan is over (which may still make
  // an entry a hardlink); until then, finished files wait here
  let finishedEarly: TreeEntry[] | null = []
  const onResult = (r: FileResult): void => {
    const { entry } = files[r.index]!
    entry.chunks = r.chunks
    if (r.inline) entry.inline = r.inline
    if (!encoder) return
    if (finishedEarly) finishedEarly.push(entry)
    else encoder.add(entry)
  }
  let processed
  try {
    const run = pool.start({
      params: options.params,
      store: options.store ?? null,
      onResult,
      ...(onBytes ? { onBytes: (n: number) => (early === null ? onBytes(n) : (early += n)) } : {}),
    })
    const streamed = new Set<ScannedEntry>()
    const scanned = Array.isArray(source)
      ? source
      : await scanDirectory(source.dir, {
          onFile: (f, nlink) => {
            // a file with several names waits: the scan decides which name is the entry
            if (nlink > 1 || packable(f.entry.size) || f.entry.size <= inlineMax) return
            streamed.add(f)
            run.add([jobOf(f)])
          },
        })
    if (encoder) {
      for (const f of scanned) if (f.entry.type !== 'file' || f.entry.recipe !== undefined) encoder.add(f.entry)
      for (const e of finishedEarly) encoder.add(e)
    }
    finishedEarly = null
    // a file given a recipe (a layer blob, given back from its expanded tree) is not cut
    const rest = scanned.filter((f) => f.entry.type === 'file' && f.entry.recipe === undefined && !streamed.has(f))
    const packed = rest.filter((f) => packable(f.entry.size))
    const jobs: Job[] = [
      ...packGroups(packed.map(jobOf), packed.map((f) => f.entry.path)),
      ...rest.filter((f) => !packable(f.entry.size)).map(jobOf),
    ]
    // Larger jobs first, so a long one does not end up alone at the tail.
    jobs.sort((a, b) => jobBytes(b) - jobBytes(a))
    const logicalBytes = scanned.reduce((a, f) => a + (f.entry.type === 'file' ? f.entry.size : 0), 0)
    options.onScanned?.(logicalBytes, scanned.length)
    if (onBytes && early) onBytes(early)
    early = null
    run.add(jobs)
    run.finish()
    processed = { scanned, logicalBytes, ...(await run.done) }
  } finally {
    if (!options.pool) await pool.close()
  }
  const { scanned, logicalBytes, results, stats } = processed
  const distinct = new Set<string>()
  let chunkRefs = 0
  files.forEach((f, i) => {
    if (!results[i]) throw new SnapdirError('ERR_INTERNAL', `internal error: no chunks came back for ${f.source.toString()}`)
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
