// The files of an image archive that snapdir writes in another form than the one pushed
// (write-docker-archive.ts, write-oci-archive.ts): each a name, a size known before its bytes (a tar
// header comes first) and its content as a stream that checks itself, so that the archive writer
// (snapshot/pull-archive.ts) only frames them and never judges an image.
import { createHash } from 'node:crypto'
import { printablePath } from '../format/tree-paths.js'
import type { TreeEntry } from '../format/tree.js'
import { toHex } from '../format/id.js'
import { getChunk } from '../store/chunks.js'
import { isObjectDamage, readRecipe } from '../store/objects.js'
import type { ReadStore } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import { regenerateBlob } from './recipe-reader.js'

export interface ArchiveMember {
  /** relative, '/'-separated; a directory's without the trailing slash */
  name: string
  type: 'file' | 'directory'
  /** a file's size, exactly what `content` gives */
  size: number
  /** a file's bytes; the stream fails (at its end at the latest) when they are not what they must be */
  content?: () => AsyncIterable<Buffer>
}

export function directoryMember(name: string): ArchiveMember {
  return { name, type: 'directory', size: 0 }
}

export function bufferMember(name: string, data: Buffer | string): ArchiveMember {
  const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data)
  return {
    name,
    type: 'file',
    size: bytes.length,
    content: async function* () {
      yield bytes
    },
  }
}

/** Chunks of a file fetched ahead of the one being read (at most 256 KiB each: 4 MiB at worst). */
const CHUNKS_AHEAD = 16

/**
 * A regular file of a stored snapshot as a stream, every chunk verified (a blob stored as a recipe
 * regenerated and checked against its digest); damage is ERR_SNAPSHOT_DAMAGED naming the file.
 */
export async function* treeFileContent(store: ReadStore, entry: TreeEntry): AsyncGenerator<Buffer> {
  const name = printablePath(entry.path)
  const damaged = (err: unknown): unknown =>
    isObjectDamage(err) ? new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${name}: ${err.code === 'ERR_OBJECT_MISSING' ? `${err.message} (missing)` : err.message}`, { cause: err }) : err
  if (entry.recipe !== undefined) {
    let recipe
    try {
      ;({ recipe } = await readRecipe(store, entry.recipe))
    } catch (err) {
      throw damaged(err)
    }
    yield* regenerateBlob({ store, recipe })
    return
  }
  if (entry.inline) {
    yield entry.inline
    return
  }
  let at = 0
  // chunks are fetched ahead, in order, while earlier ones are written: enough in flight to hide a
  // remote store's latency (a blob served to a registry client, a pull over S3), bounded in memory
  const pending: Array<Promise<Buffer>> = []
  let fetched = 0
  const fetchAhead = (): void => {
    while (pending.length < CHUNKS_AHEAD && fetched < entry.chunks.length) {
      const ref = entry.chunks[fetched++]!
      const p = getChunk(store, toHex(ref.id), { needs: ref.offset + ref.length }).then((c) => c.raw)
      p.catch(() => {}) // awaited in turn below
      pending.push(p)
    }
  }
  fetchAhead()
  for (let i = 0; i < entry.chunks.length; i++) {
    const ref = entry.chunks[i]!
    let data: Buffer
    try {
      data = await pending.shift()!
    } catch (err) {
      throw damaged(err)
    }
    fetchAhead()
    const slice = data.subarray(ref.offset, ref.offset + ref.length)
    for (let k = 0; k < ref.count; k++) yield slice
    at += ref.length * ref.count
  }
  if (at !== entry.size) throw new SnapdirError('ERR_TREE_MALFORMED', `${name}: its chunks give ${at} bytes, the tree says ${entry.size}`)
}

/** Passes a stream on, and fails at its end unless it hashed to `digest` (`algorithm:hex`) with `size` bytes. */
export async function* checked(stream: AsyncIterable<Buffer>, digest: string, size: number, what: string): AsyncGenerator<Buffer> {
  const [algorithm, hex] = digest.split(':') as [string, string]
  const hash = createHash(algorithm)
  let n = 0
  for await (const piece of stream) {
    n += piece.length
    if (n > size) throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${what} has more than its ${size} bytes`)
    hash.update(piece)
    yield piece
  }
  const got = hash.digest('hex')
  if (n !== size || got !== hex) throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${what} hashes to ${algorithm}:${got} (${n} bytes), not to ${digest} (${size} bytes)`)
}
