// The Docker image archive (docker save before Docker 25, `skopeo copy … docker-archive:`), once
// unpacked: manifest.json lists each image as {Config, RepoTags, Layers}, paths of a config JSON file
// and of one uncompressed tar per layer. There are no descriptors, so no digests to check up front:
// the config is checked against its file name when that is a digest (as docker and skopeo name it),
// and each layer against the diff_id its config gives it, while it is expanded (image-layers.ts).
import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { isErrno, SnapdirError } from '../util/errors.js'
import { isObject, quote } from './descriptor.js'
import { parseDigest } from './digest.js'
import { LAYOUT_MARKER, MAX_DOCUMENT_BYTES } from './image-layout.js'
import type { LayoutLayer } from './image-layers.js'

export const DOCKER_MANIFEST_FILE = 'manifest.json'
const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar'

export interface DockerArchiveImage {
  config: string
  repoTags: string[]
  layers: string[]
}

/** A directory is a Docker archive when it has manifest.json and is not an OCI layout (which wins). */
export async function isDockerArchive(dir: string): Promise<boolean> {
  const isFile = async (name: string): Promise<boolean> => {
    try {
      return (await fs.lstat(path.join(dir, name))).isFile()
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false
      throw err
    }
  }
  return !(await isFile(LAYOUT_MARKER)) && (await isFile(DOCKER_MANIFEST_FILE))
}

/** Parses manifest.json as the format defines it; `fail` says what is wrong in one line. */
export function parseDockerManifest(data: Buffer, fail: (why: string) => never): DockerArchiveImage[] {
  let doc: unknown
  try {
    doc = JSON.parse(data.toString('utf8'))
  } catch (err) {
    return fail(`${DOCKER_MANIFEST_FILE} is not valid JSON: ${(err as Error).message}`)
  }
  if (!Array.isArray(doc) || doc.length === 0) return fail(`${DOCKER_MANIFEST_FILE} is not a list of images`)
  return doc.map((item: unknown, i) => {
    const at = `${DOCKER_MANIFEST_FILE}[${i}]`
    if (!isObject(item)) return fail(`${at} is not an object`)
    const { Config, RepoTags, Layers } = item
    if (typeof Config !== 'string' || !isSafePath(Config)) return fail(`${at}.Config ${quote(Config)} is not a relative path in the archive`)
    if (!Array.isArray(Layers) || !Layers.every((l) => typeof l === 'string' && isSafePath(l))) return fail(`${at}.Layers is not a list of relative paths in the archive`)
    const tags = Array.isArray(RepoTags) ? RepoTags.filter((t): t is string => typeof t === 'string') : []
    return { config: Config, repoTags: tags, layers: Layers as string[] }
  })
}

function isSafePath(p: string): boolean {
  return p.length > 0 && !p.startsWith('/') && !p.includes('\0') && p.split('/').every((c) => c !== '..')
}

/**
 * Checks the archive at `dir` and returns its layers as image-layers.ts expands them: every file
 * manifest.json names is a regular file inside the archive, each config parses and gives one diff_id
 * per layer, and a config named by its digest has that digest.
 */
export async function dockerArchiveLayers(dir: string, shownAs: string): Promise<LayoutLayer[]> {
  const fail = (why: string): never => {
    throw new SnapdirError('ERR_SOURCE', `Docker image archive ${shownAs}: ${why}`, { data: { archive: shownAs } })
  }
  const images = parseDockerManifest(await readInside(dir, DOCKER_MANIFEST_FILE, fail), fail)
  const byFile = new Map<string, LayoutLayer>()
  for (const [i, image] of images.entries()) {
    const config = await readInside(dir, image.config, fail)
    const named = /(?:^|\/)([0-9a-f]{64})(?:\.json)?$/.exec(image.config)?.[1]
    if (named !== undefined && createHash('sha256').update(config).digest('hex') !== named) {
      fail(`config ${image.config} does not match the digest its name gives`)
    }
    let doc: unknown
    try {
      doc = JSON.parse(config.toString('utf8'))
    } catch (err) {
      return fail(`config ${image.config} is not valid JSON: ${(err as Error).message}`)
    }
    const rootfs = isObject(doc) ? doc.rootfs : undefined
    const diffIds = isObject(rootfs) && Array.isArray(rootfs.diff_ids) ? (rootfs.diff_ids as unknown[]) : []
    if (diffIds.length !== image.layers.length) fail(`config ${image.config} lists ${diffIds.length} diff_ids for the ${image.layers.length} layers of ${DOCKER_MANIFEST_FILE}[${i}]`)
    for (const [position, file] of image.layers.entries()) {
      const diffId = diffIds[position]
      const digest = typeof diffId === 'string' ? parseDigest(diffId) : 'is not a string'
      if (typeof digest === 'string' || digest.algorithm !== 'sha256') return fail(`config ${image.config}: diff_ids[${position}] ${quote(diffId)} is not a sha256 digest`)
      const size = await regularSize(dir, file, fail)
      // an uncompressed layer's digest is its diff_id; expansion checks the tar hashes to it
      const layer = byFile.get(file) ?? { descriptor: { mediaType: DOCKER_LAYER_TAR, digest, size, urls: [] }, file, uses: [] }
      layer.uses.push({ diffId: diffId as string, manifest: `${DOCKER_MANIFEST_FILE}[${i}]`, position })
      byFile.set(file, layer)
    }
  }
  return [...byFile.values()]
}

/** The real path of `rel`, which must be a regular file inside `dir` (no symlink leads out). */
async function inside(dir: string, rel: string, fail: (why: string) => never): Promise<string> {
  let real: string
  try {
    real = await fs.realpath(path.join(dir, rel))
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return fail(`${rel}, named by ${DOCKER_MANIFEST_FILE}, is missing`)
    throw err
  }
  const root = await fs.realpath(dir)
  if (!real.startsWith(root + path.sep)) return fail(`${rel} leads outside the archive`)
  return real
}

async function regularSize(dir: string, rel: string, fail: (why: string) => never): Promise<number> {
  const st = await fs.stat(await inside(dir, rel, fail))
  if (!st.isFile()) fail(`${rel} is not a regular file`)
  return st.size
}

async function readInside(dir: string, rel: string, fail: (why: string) => never): Promise<Buffer> {
  if ((await regularSize(dir, rel, fail)) > MAX_DOCUMENT_BYTES) fail(`${rel} is larger than ${MAX_DOCUMENT_BYTES} bytes`)
  return fs.readFile(await inside(dir, rel, fail))
}
