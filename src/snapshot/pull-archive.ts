// Pull into one tar archive instead of a directory: what `docker load`, `skopeo copy docker-archive:`
// or `oci-archive:` and `ctr image import` take, and a way to hand a snapshot on as a single file.
// Entries go out in tree order with their owners, modes, times, xattrs (as SCHILY.xattr PAX records,
// like GNU tar) and hardlinks; every chunk is verified on the way, and a file named by its digest
// (blobs/<algorithm>/<hex>, a Docker archive's <hex>.tar and <hex>.json) must hash to its name. Written beside the
// target and renamed at the end, so a failure leaves no half-written archive.
import { checkStoreFormat } from '../store/store-config.js'
import { createHash, randomBytes, type Hash } from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { pack as tarPack, type Pack } from 'tar-stream'
import { toHex } from '../format/id.js'
import { printablePath } from '../format/tree-paths.js'
import { treeSize, type Tree, type TreeEntry } from '../format/tree.js'
import { readTree } from '../store/objects.js'
import type { ReadStore } from '../store/store.js'
import { isErrno, SnapdirError, targetWriteError, UsageError } from '../util/errors.js'
import { writeRecipeBlob } from '../oci/recipe-reader.js'
import { ChunkFetcher } from './chunk-fetcher.js'
import { findEntry } from '../store/tree-file.js'
import type { PullOptions } from './pull.js'
import { convertedMembers, writeMembers, type ArchiveFormatOptions } from './archive-format.js'

const TAR_TYPES: Partial<Record<TreeEntry['type'], 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo'>> = {
  file: 'file', dir: 'directory', symlink: 'symlink', hardlink: 'link', char: 'character-device', block: 'block-device', fifo: 'fifo',
}
/** Files an image names by their digest: an OCI layout's blobs, a Docker archive's `<sha256>.tar|json`. */
const OCI_BLOB = /^blobs\/(sha256|sha512)\/([0-9a-f]+)$/
const DOCKER_BLOB = /^()([0-9a-f]{64})\.(?:tar|json)$/

/** Which names of this tree are digests to check: only an image's, so other trees' files are never judged. */
function digestNames(tree: Tree): RegExp | null {
  const top = (name: string): boolean => findEntry(tree, name)?.type === 'file'
  if (top('oci-layout')) return OCI_BLOB
  if (top('manifest.json')) return DOCKER_BLOB
  return null
}

/**
 * Writes snapshot `id` as a tar archive at `target` ('-': stdout). Sockets cannot be archived and are
 * left out. An image can be asked for as the other kind of image archive (`format`, archive-format.ts).
 */
export async function pullArchive(store: ReadStore, id: string, target: string, options: PullOptions & ArchiveFormatOptions = {}): Promise<Tree> {
  const toStdout = target === '-'
  const dest = path.resolve(target)
  if (!toStdout) await checkArchiveTarget(dest)
  await store.open()
  await checkStoreFormat(store)
  const tree = await readTree(store, id)
  options.onTree?.(treeSize(tree), tree.entries.length)
  const converted = await convertedMembers(store, id, tree, options)
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.snapdir-pull-${randomBytes(6).toString('hex')}`)
  const pack = tarPack()
  const out = toStdout ? process.stdout : fs.createWriteStream(tmp, { flags: 'wx', mode: 0o644 })
  const written = pipeline(pack, out).catch((err: unknown) => {
    throw toStdout ? err : targetWriteError(dest, err)
  })
  written.catch(() => {}) // awaited below
  try {
    // a writer that fails (a full disk) ends the pipeline and the tar side with it: the entries would
    // wait for a drain that never comes, so they race the writer's end
    const ended = written.then(() => {
      throw new SnapdirError('ERR_INTERNAL', `the archive's writer ended before its last entry`)
    })
    ended.catch(() => {}) // once the entries are done, the writer's end is awaited as `written`
    const entries = converted ? writeMembers(converted, pack, tree, options.onBytes) : writeEntries(store, tree, id, pack, options)
    entries.catch(() => {}) // if the writer ended first, what the entries fail with after is no news
    await Promise.race([entries, ended])
    pack.finalize()
    await written
    if (!toStdout) {
      await fsp.rename(tmp, dest).catch((err: unknown) => {
        throw targetWriteError(dest, err)
      })
    }
  } catch (err) {
    pack.destroy(err as Error)
    if (!toStdout) {
      // the pipeline need not settle once the tar side is destroyed: close the file ourselves (one
      // destroyed while still opening is created all the same, so wait for its close) and remove it
      const file = out as fs.WriteStream
      file.destroy()
      if (!file.closed) await new Promise<void>((resolve) => file.once('close', () => resolve()))
      await fsp.rm(tmp, { force: true })
    } else await written.catch(() => {})
    throw err
  }
  return tree
}

async function checkArchiveTarget(dest: string): Promise<void> {
  try {
    await fsp.lstat(dest)
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err
    try {
      await fsp.access(path.dirname(dest))
    } catch {
      throw new UsageError(`cannot write ${dest}: its directory does not exist`, 'ERR_TARGET')
    }
    return
  }
  throw new UsageError(`cannot write ${dest}: it exists (snapdir does not overwrite it)`, 'ERR_TARGET')
}

async function writeEntries(store: ReadStore, tree: Tree, id: string, pack: Pack, options: PullOptions): Promise<void> {
  const fetcher = new ChunkFetcher(store, tree)
  const named = digestNames(tree)
  for (const e of tree.entries) {
    const type = TAR_TYPES[e.type]
    if (type === undefined) continue // a socket
    // the root is './', as GNU tar writes it (`tar -C DIR -cf - .`): its mode, owner and time go with
    // the archive, so that a push of the archive gives the snapshot's ID again (image-archive.ts)
    const name = e.path.length === 0 ? '.' : utf8(e.path, 'name', e)
    const pax: Record<string, string> = {}
    for (const [n, v] of e.xattrs) pax[`SCHILY.xattr.${utf8(n, 'xattr name', e)}`] = utf8(v, 'xattr value', e)
    // the ustar header holds whole seconds; a PAX record keeps the nanoseconds, as GNU tar --posix does
    if (e.mtimeNsec !== 0) pax.mtime = `${e.mtimeSec}.${String(e.mtimeNsec).padStart(9, '0')}`
    const header = {
      name: type === 'directory' ? `${name}/` : name,
      type,
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      mtime: new Date(e.mtimeSec * 1000 + Math.floor(e.mtimeNsec / 1e6)),
      size: type === 'file' ? e.size : 0,
      linkname: e.type === 'symlink' || e.type === 'hardlink' ? utf8(e.target!, 'link target', e) : '',
      devmajor: e.type === 'char' || e.type === 'block' ? major(e.rdev) : 0,
      devminor: e.type === 'char' || e.type === 'block' ? minor(e.rdev) : 0,
      ...(Object.keys(pax).length > 0 ? { pax } : {}),
    }
    const m = type === 'file' && named ? named.exec(name) : null
    const blob = m ? { name, algorithm: m[1] || 'sha256', hex: m[2]!, id } : null
    // an empty blob is whole once its header is out: check it before
    if (blob && e.size === 0) checkBlob(blob, createHash(blob.algorithm))
    const sink = pack.entry(header)
    const done = new Promise<void>((resolve, reject) => {
      sink.on('close', () => resolve())
      sink.on('error', reject)
    })
    done.catch(() => {}) // awaited below; if the content fails first, the entry's error must not go unhandled
    if (type === 'file') await writeContent(fetcher, e, sink, blob, options)
    sink.end(undefined)
    await done
  }
}

interface NamedBlob {
  name: string
  algorithm: string
  hex: string
  /** the snapshot's */
  id: string
}

function checkBlob(blob: NamedBlob, hash: Hash): void {
  if (hash.digest('hex') !== blob.hex) {
    throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `snapshot ${blob.id}: blob ${blob.name} does not hash to its name`, { data: { blob: blob.name } })
  }
}

/**
 * Each chunk is verified before it is written, but a blob named by its digest, and a layer blob
 * given back from its recipe, are known to be right only at their end. Their last piece is held back
 * until then: if the check fails, the archive stops short inside that entry, so that a reader of a
 * stream already sent (`pull --tar -`) sees a truncated archive, never a whole entry with wrong bytes.
 */
async function writeContent(fetcher: ChunkFetcher, e: TreeEntry, sink: NodeJS.WritableStream, blob: NamedBlob | null, options: PullOptions): Promise<void> {
  const hash = blob ? createHash(blob.algorithm) : null
  const holdLast = blob !== null || e.recipe !== undefined
  let held: Buffer | null = null
  const send = async (data: Buffer): Promise<void> => {
    if (!sink.write(data)) await new Promise((resolve) => sink.once('drain', resolve))
  }
  const put = async (data: Buffer): Promise<void> => {
    hash?.update(data)
    if (!holdLast) return send(data)
    if (held) await send(held)
    held = Buffer.from(data) // a copy: a recipe's pieces may be buffers it reuses
  }
  const finish = async (): Promise<void> => {
    if (blob) checkBlob(blob, hash!)
    if (held) await send(held)
  }
  if (e.recipe !== undefined) {
    let at = 0
    await writeRecipeBlob(fetcher.store, e.recipe, async (piece) => {
      await put(piece)
      at += piece.length
      options.onBytes?.(piece.length)
    }, { shownAs: printablePath(e.path) })
    if (at !== e.size) throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${printablePath(e.path)}: its recipe gave ${at} bytes, the tree says ${e.size}`)
    return finish()
  }
  if (e.inline) {
    await put(e.inline)
    options.onBytes?.(e.size)
    return finish()
  }
  let offset = 0
  for (const ref of e.chunks) {
    const data = await fetcher.get(toHex(ref.id))
    if (data !== null && ref.offset + ref.length > data.length) {
      throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `chunk ${toHex(ref.id)} has ${data.length} bytes, ${printablePath(e.path)} needs ${ref.offset + ref.length}`)
    }
    const slice = data === null ? Buffer.alloc(ref.length) : data.subarray(ref.offset, ref.offset + ref.length)
    for (let k = 0; k < ref.count; k++) await put(slice)
    offset += ref.length * ref.count
    options.onBytes?.(ref.length * ref.count)
  }
  if (offset !== e.size) throw new SnapdirError('ERR_TREE_MALFORMED', `${printablePath(e.path)}: chunks cover ${offset} of ${e.size} bytes`)
  return finish()
}

/** tar-stream writes names and PAX values as UTF-8: bytes that are not cannot go into the archive. */
function utf8(bytes: Buffer, what: string, e: TreeEntry): string {
  const text = bytes.toString('utf8')
  if (!Buffer.from(text, 'utf8').equals(bytes)) {
    throw new SnapdirError('ERR_TARGET', `${printablePath(e.path)}: its ${what} is not UTF-8, which snapdir cannot write into a tar archive; pull it as a directory`)
  }
  return text
}

/** Linux's encoding of st_rdev (glibc gnu_dev_major/minor). */
function major(rdev: number): number {
  return (Math.floor(rdev / 0x100) & 0xfff) | (Math.floor(rdev / 0x1_0000_0000_0000) * 0x1000)
}
function minor(rdev: number): number {
  return (rdev & 0xff) | (Math.floor(rdev / 0x1000) & 0xfff00)
}
