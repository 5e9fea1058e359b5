import type { Chunker } from '../chunk/chunker.js'
import { hashBytes, zeroChunkId } from '../chunk/hash.js'
import { toHex } from '../format/id.js'
import { printablePath } from '../format/tree-paths.js'
import type { ChunkRef, Tree, TreeEntry } from '../format/tree.js'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'
import { readChunks } from './read-chunks.js'
import { openSource, scanDirectory, type ScannedEntry } from './scan.js'

/** Where the distinct chunks of a snapshot go: a store for push, nowhere for `id`. */
export interface ChunkSink {
  /** Takes one chunk the snapshot has not offered before; may keep it in flight (bounded) and return. */
  accept(id: string, data: Buffer): Promise<void>
  /** Waits for everything accepted; rethrows the first failure. */
  drain(): Promise<void>
}

export interface BuildStats {
  entries: number
  files: number
  logicalBytes: number
  chunkRefs: number
  distinctChunks: number
}

export interface BuildOptions {
  chunker: Chunker
  sink?: ChunkSink
  /** called with the total logical bytes once scanned, then with each chunk's bytes as it is cut */
  onScanned?: (totalBytes: number, entries: number) => void
  onBytes?: (bytes: number) => void
  /** files chunked at once: small files are latency-bound (open, read, close) */
  fileConcurrency?: number
}

/** Scans a directory and cuts every file into chunks, returning the tree that names them. */
export async function buildSnapshot(root: string, options: BuildOptions): Promise<{ tree: Tree; stats: BuildStats }> {
  const { chunker, sink } = options
  const scanned = await scanDirectory(root)
  const files = scanned.filter((s) => s.entry.type === 'file')
  const stats: BuildStats = { entries: scanned.length, files: files.length, logicalBytes: 0, chunkRefs: 0, distinctChunks: 0 }
  for (const f of files) stats.logicalBytes += f.entry.size
  options.onScanned?.(stats.logicalBytes, scanned.length)

  const seen = new Set<string>()
  const offer = async (id: string, data: () => Buffer): Promise<void> => {
    if (seen.has(id)) return
    seen.add(id)
    stats.distinctChunks++
    if (sink) await sink.accept(id, data())
  }

  const chunkFile = async (s: ScannedEntry): Promise<void> => {
    const e = s.entry
    const what = printablePath(s.source)
    const refs: ChunkRef[] = []
    const add = (id: Buffer, length: number, count: number): void => {
      const last = refs.at(-1)
      if (last && last.length === length && last.id.equals(id)) last.count += count
      else refs.push({ id, length, count })
      stats.chunkRefs += count
      options.onBytes?.(length * count)
    }
    let fh
    try {
      fh = await openSource(s.source)
    } catch (err) {
      throw new SnapdirError('ERR_SOURCE', `cannot read ${what}: ${(err as Error).message}`, { cause: err })
    }
    try {
      for await (const c of readChunks(fh, e.size, s.allocated < e.size, chunker, what)) {
        if (c.data === null) {
          const id = zeroChunkId(c.length)
          await offer(toHex(id), () => Buffer.alloc(c.length))
          add(id, c.length, c.count)
        } else {
          const id = hashBytes(c.data)
          const data = c.data
          await offer(toHex(id), () => data)
          add(id, c.length, 1)
        }
      }
    } catch (err) {
      if (err instanceof SnapdirError) throw err
      throw new SnapdirError('ERR_SOURCE', `cannot read ${what}: ${(err as Error).message}`, { cause: err })
    } finally {
      await fh.close()
    }
    e.chunks = refs
  }

  // Larger files first so the long ones do not end up alone at the tail.
  const order = [...files].sort((a, b) => b.entry.size - a.entry.size)
  await forEachLimit(order, options.fileConcurrency ?? 8, chunkFile)
  await sink?.drain()
  const entries: TreeEntry[] = scanned.map((s) => s.entry)
  return { tree: { chunker: chunker.params, entries }, stats }
}
