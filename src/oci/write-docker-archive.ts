// A stored OCI image layout written out as a Docker image archive, what `docker load` and
// `skopeo copy docker-archive:` read (pull --tar --format docker-archive): manifest.json naming, for
// each image, its config as `<sha256>.json` and its layers as `<diff_id>.tar`, the way skopeo writes
// one. A Docker archive's layers are uncompressed tars, so a compressed layer goes in decompressed and
// its name and digest are its diff_id, as `docker save` does: a layer stored as a recipe gives its
// tar directly (recipe-reader.ts regenerateTar, checked against the diff_id, without compressing it
// first); one stored raw is decompressed into a temporary file first, as a tar header needs the size
// before the bytes, and checked against its diff_id there, before anything of it is written.
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import zlib from 'node:zlib'
import type { Tree } from '../format/tree.js'
import { readRecipe } from '../store/objects.js'
import type { ReadStore } from '../store/store.js'
import { findEntry, readTreeFile } from '../store/tree-file.js'
import { SnapdirError } from '../util/errors.js'
import { bufferMember, checked, treeFileContent, type ArchiveMember } from './archive-member.js'
import { compressionOf, streamProblem, zstdDecompress } from './decompress.js'
import { MAX_DOCUMENT_BYTES } from './document-walker.js'
import { DOCKER_MANIFEST_FILE } from './image-layout.js'
import type { Platform } from './platform.js'
import { regenerateTar } from './recipe-reader.js'
import { resolveStoredImages, type StoredImage } from './stored-image.js'

export interface DockerArchiveOptions {
  /** of a multi-platform image, the one to write (default: this machine's) */
  platform?: Platform
  /** where a raw compressed layer is decompressed first (default: the system's temporary directory) */
  tmpRoot?: string
}

/**
 * A Docker reference with a tag (`name:tag`, `host:5000/a/b:tag`), what `docker load` can tag an
 * image with; a bare tag (`v1`, as umoci and skopeo name images in a layout) is not one.
 */
const REPO_TAG = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/

/** The files of the Docker archive of the OCI layout `bundle` (snapshot `id`), in the order to write them. */
export async function* dockerArchiveMembers(store: ReadStore, id: string, bundle: Tree, options: DockerArchiveOptions = {}): AsyncGenerator<ArchiveMember> {
  const images = await resolveStoredImages(store, id, bundle, options.platform)
  const manifest: Array<{ Config: string; RepoTags: string[]; Layers: string[] }> = []
  const written = new Set<string>()
  for (const { refs, image } of images) {
    const config = await readTreeFile(store, image.config, MAX_DOCUMENT_BYTES)
    const configName = `${createHash('sha256').update(config).digest('hex')}.json`
    if (!written.has(configName)) {
      written.add(configName)
      yield bufferMember(configName, config)
    }
    const layers: string[] = []
    for (const layer of image.layers) {
      const name = `${layer.diffId.slice('sha256:'.length)}.tar`
      layers.push(name)
      if (written.has(name)) continue
      written.add(name)
      yield* layerTar(store, bundle, layer, name, options.tmpRoot ?? os.tmpdir())
    }
    // containerd's full name first (docker save and ctr export write both), each name once
    const tags = [...refs].reverse().filter((r, i, all) => REPO_TAG.test(r) && all.indexOf(r) === i)
    manifest.push({ Config: configName, RepoTags: tags, Layers: layers })
  }
  yield bufferMember(DOCKER_MANIFEST_FILE, JSON.stringify(manifest))
}

/** One layer as its uncompressed tar, named `name`; the tar must hash to the layer's diff_id. */
async function* layerTar(store: ReadStore, bundle: Tree, layer: StoredImage['layers'][number], name: string, tmpRoot: string): AsyncGenerator<ArchiveMember> {
  const entry = findEntry(bundle, layer.file)
  if (entry === null || entry.type !== 'file') throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `layer ${layer.digest}: ${layer.file} is not a file of the snapshot`)
  const what = `layer ${layer.digest} (diff_id ${layer.diffId})`
  if (entry.recipe !== undefined) {
    const { recipe } = await readRecipe(store, entry.recipe)
    if (recipe.diffId !== layer.diffId) throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${what}: its recipe is of diff_id ${recipe.diffId}`)
    yield { name, type: 'file', size: recipe.tarSize, content: () => regenerateTar({ store, recipe }) }
    return
  }
  // told by its magic bytes, as push told it (decompress.ts)
  const compression = compressionOf(await firstBytes(treeFileContent(store, entry), 4))
  if (compression === 'none') {
    yield { name, type: 'file', size: entry.size, content: () => checked(treeFileContent(store, entry), layer.diffId, entry.size, what) }
    return
  }
  const dir = await fsp.mkdtemp(path.join(tmpRoot, 'snapdir-layer-'))
  try {
    const file = path.join(dir, 'layer.tar')
    const size = await decompressTo(treeFileContent(store, entry), compression, file, layer.diffId, what)
    yield { name, type: 'file', size, content: () => fs.createReadStream(file, { highWaterMark: 1024 * 1024 }) }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true })
  }
}

/** The first `n` bytes of a stream (fewer if it is shorter); the rest is not read. */
async function firstBytes(stream: AsyncGenerator<Buffer>, n: number): Promise<Buffer> {
  const parts: Buffer[] = []
  let have = 0
  for await (const piece of stream) {
    parts.push(piece)
    have += piece.length
    if (have >= n) break
  }
  return Buffer.concat(parts).subarray(0, n)
}

/** Decompresses a gzip or zstd blob into `file`; returns the tar's size once it hashed to `diffId`. */
async function decompressTo(blob: AsyncGenerator<Buffer>, compression: 'gzip' | 'zstd', file: string, diffId: string, what: string): Promise<number> {
  let size = 0
  const hash = createHash('sha256')
  const counted = async function* (input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const piece of input) {
      size += piece.length
      hash.update(piece)
      yield piece
    }
  }
  try {
    const stage = compression === 'zstd' ? zstdDecompress : zlib.createGunzip({ chunkSize: 256 * 1024 })
    await pipeline(blob, stage, counted, fs.createWriteStream(file, { flags: 'wx', mode: 0o600 }))
  } catch (err) {
    const stream = err instanceof Error ? streamProblem(err) : null
    if (stream !== null) throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${what}: ${stream}`, { cause: err })
    throw err
  }
  const got = `sha256:${hash.digest('hex')}`
  if (got !== diffId) throw new SnapdirError('ERR_SNAPSHOT_DAMAGED', `${what}: its tar hashes to ${got}, not to its diff_id`)
  return size
}
