import type { ChunkerParams } from '../chunk/params.js'
import { TreeEncoder } from '../format/tree.js'
import type { Store } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import { jobBytes, worthSkippingHoles, type FileJob, type FileResult, type Job } from './jobs.js'
import { packGroups } from './pack-groups.js'
import { scanDirectory, type ScannedEntry } from './scan.js'
import type { PoolRun } from './pool-run.js'
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
}

/** A snapshot built: its tree, as the encoded entries (format/tree.ts TreeEncoder), and what it took. */
export interface BuiltSnapshot {
  tree: TreeEncoder
  stats: BuildStats
}

/** A file to cut whose absolute path is made only when a batch is cut: every queued job held one. */
class ScannedFileJob implements FileJob {
  readonly size: number
  readonly sparse: boolean

  constructor(readonly index: number, private readonly file: ScannedEntry) {
    this.size = file.entry.size
    this.sparse = worthSkippingHoles(file.entry.size, file.allocated)
  }

  get source(): Buffer {
    return this.file.source
  }
}

/**
 * Cuts every file of a directory into chunks, returning the tree that names them. Given a directory,
 * it scans it too, and files that are cut on their own (not packed: see pack-groups.ts) go to the
 * workers as the scan finds them; the rest follow once the scan is done, as packing needs every path.
 * Given a scan (an image, which is checked between scanning and storing; sorted by path, as
 * scanDirectory gives it), it cuts that.
 * With a store, the caller checks the directory first (checkSourceDirectory), as chunks may be
 * written before the scan ends.
 *
 * Each entry is encoded (TreeEncoder) once it is final and then let go: for a tree of many small
 * files, the entries were most of push's memory (bench/memory.mjs).
 */
export async function buildSnapshot(source: { dir: string } | ScannedEntry[], options: BuildOptions): Promise<BuiltSnapshot> {
  const { inlineMax = 0, packMax = 0 } = options.params
  // by size alone: how a file is laid out on disk (holes) must never change its chunks, or the ID
  const packable = (size: number): boolean => size > inlineMax && size < packMax
  const tree = new TreeEncoder(options.params)
  // the files in the order they were handed out (job indexes point here), each until it is encoded
  const files: Array<ScannedEntry | null> = []
  // by job index, where the file's entry is in path order; -1 until the scan is over
  const positions: number[] = []
  const jobOf = (f: ScannedEntry, position: number): FileJob => {
    const index = files.push(f) - 1
    positions.push(position)
    return new ScannedFileJob(index, f)
  }
  let chunkRefs = 0
  const distinct = new Set<string>()
  const encode = (r: FileResult): void => {
    tree.add(files[r.index]!.entry, positions[r.index]!, r)
    files[r.index] = null
  }
  // progress counts from when the total is known, after the scan
  let early: number | null = 0
  const onBytes = options.onBytes
  const pool = options.pool ?? poolFor(options.store ?? null)
  // a file's entry is final once its chunks are known and the scan is over (which may still make
  // an entry a hardlink); until then, finished files wait here
  let finishedEarly: FileResult[] | null = []
  const onResult = (r: FileResult): void => {
    if (!files[r.index]) throw new SnapdirError('ERR_INTERNAL', `internal error: a second result for file ${r.index}`)
    for (const c of r.chunks) {
      chunkRefs += c.count
      distinct.add(c.id.toString('hex'))
    }
    // the chunks are not set on the entry (see TreeEncoder.add): encoded with it, and then let go
    if (finishedEarly) finishedEarly.push(r)
    else encode(r)
  }
  let entries = 0
  let logicalBytes = 0
  let processed
  try {
    const run = pool.start({
      params: options.params,
      store: options.store ?? null,
      onResult,
      ...(onBytes ? { onBytes: (n: number) => (early === null ? onBytes(n) : (early += n)) } : {}),
    })
    // files handed out while scanning, by job index: their positions are known once the scan is done
    const streamed = new Map<ScannedEntry, number>()
    let scanned: ScannedEntry[] | null = Array.isArray(source)
      ? source
      : await scanDirectory(source.dir, {
          onFile: (f, nlink) => {
            // a file with several names waits: the scan decides which name is the entry
            if (nlink > 1 || packable(f.entry.size) || f.entry.size <= inlineMax) return
            const job = jobOf(f, -1)
            streamed.set(f, job.index)
            run.add([job])
          },
        })
    entries = scanned.length
    logicalBytes = handOut(scanned, tree, streamed, { place: (index, position) => (positions[index] = position), jobOf, packable, run })
    scanned = null
    streamed.clear()
    for (const r of finishedEarly) encode(r)
    finishedEarly = null
    options.onScanned?.(logicalBytes, entries)
    if (onBytes && early) onBytes(early)
    early = null
    run.finish()
    processed = await run.done
  } finally {
    if (!options.pool) await pool.close()
  }
  const missing = files.find((f) => f !== null)
  if (missing) throw new SnapdirError('ERR_INTERNAL', `internal error: no chunks came back for ${missing.source.toString()}`)
  if (tree.count !== entries) throw new SnapdirError('ERR_INTERNAL', `internal error: ${tree.count} of ${entries} entries encoded`)
  return {
    tree,
    stats: {
      entries, files: files.length, logicalBytes, chunkRefs, distinctChunks: distinct.size, ...processed.stats,
    },
  }
}

/**
 * After the scan: every entry but a file's to cut is encoded now, files handed out while scanning
 * learn their positions (place), and the other files go to the run as jobs (small ones packed into
 * groups), larger ones first, so a long one does not end up alone at the tail. Returns the logical
 * bytes of the tree. A function of its own, so that nothing of the scan is held once it returns.
 */
function handOut(
  scanned: ScannedEntry[],
  tree: TreeEncoder,
  streamed: Map<ScannedEntry, number>,
  ctx: {
    place: (index: number, position: number) => void
    jobOf: (f: ScannedEntry, position: number) => FileJob
    packable: (size: number) => boolean
    run: PoolRun
  },
): number {
  const packed: FileJob[] = []
  const paths: Buffer[] = []
  const alone: FileJob[] = []
  let logicalBytes = 0
  scanned.forEach((f, i) => {
    const e = f.entry
    if (e.type === 'file') logicalBytes += e.size
    // a file given a recipe (a layer blob, given back from its expanded tree) is not cut
    if (e.type !== 'file' || e.recipe !== undefined) tree.add(e, i)
    else if (streamed.has(f)) ctx.place(streamed.get(f)!, i)
    else if (ctx.packable(e.size)) {
      packed.push(ctx.jobOf(f, i))
      paths.push(e.path)
    } else alone.push(ctx.jobOf(f, i))
  })
  const jobs: Job[] = [...packGroups(packed, paths), ...alone]
  jobs.sort((a, b) => jobBytes(b) - jobBytes(a))
  ctx.run.add(jobs)
  return logicalBytes
}
