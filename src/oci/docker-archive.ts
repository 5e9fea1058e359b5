// The Docker image archive (docker save before Docker 25, `skopeo copy … docker-archive:`), once
// unpacked: manifest.json lists each image as {Config, RepoTags, Layers}, paths of a config JSON file
// and of one uncompressed tar per layer. There are no descriptors, so no digests to check up front:
// the config is checked against its file name when that is a digest (as docker and skopeo name it),
// and each layer against the diff_id its config gives it, while it is expanded (image-layers.ts).
import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { isErrno } from '../util/errors.js'
import { tooLarge } from './blob-reader.js'
import { isObject, quote } from './descriptor.js'
import { parseDigest, type Digest } from './digest.js'
import { MAX_DOCUMENT_BYTES } from './document-walker.js'
import { configDiffIds } from './image-config.js'
import { DOCKER_MANIFEST_FILE } from './image-layout.js'
import type { LayoutLayer } from './layout-layers.js'
import { fail, imageError, parseJson } from './layout-problem.js'

const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar'

export interface DockerArchiveImage {
  config: string
  repoTags: string[]
  layers: string[]
}

/** Reads a file of the archive by its path in it, whole, at most `maxBytes`. */
export type ArchiveFileReader = (rel: string, maxBytes: number) => Promise<Buffer>

/** Parses manifest.json as the format defines it; a LayoutProblem says what is wrong. */
export function parseDockerManifest(data: Buffer): DockerArchiveImage[] {
  const doc = parseJson(data, DOCKER_MANIFEST_FILE)
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

/**
 * The diff_ids an image's config gives its layers, bottom first. A config named by its digest (as
 * docker and skopeo name it) must have that digest.
 */
export async function dockerDiffIds(read: ArchiveFileReader, image: DockerArchiveImage): Promise<string[]> {
  const config = await read(image.config, MAX_DOCUMENT_BYTES)
  const named = /(?:^|\/)([0-9a-f]{64})(?:\.json)?$/.exec(image.config)?.[1]
  if (named !== undefined && createHash('sha256').update(config).digest('hex') !== named) {
    fail(`config ${image.config} does not match the digest its name gives`)
  }
  const diffIds = configDiffIds(parseJson(config, `config ${image.config}`), image.layers.length)
  return typeof diffIds === 'string' ? fail(`config ${image.config} ${diffIds}`) : diffIds
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
  const read: ArchiveFileReader = async (rel, maxBytes) => {
    const size = await regularSize(dir, rel)
    if (size > maxBytes) throw tooLarge(rel, size, maxBytes)
    return fs.readFile(await inside(dir, rel))
  }
  try {
    const byFile = new Map<string, LayoutLayer>()
    for (const [i, image] of parseDockerManifest(await read(DOCKER_MANIFEST_FILE, MAX_DOCUMENT_BYTES)).entries()) {
      const diffIds = await dockerDiffIds(read, image)
      for (const [position, file] of image.layers.entries()) {
        const diffId = diffIds[position]!
        const size = await regularSize(dir, file)
        // an uncompressed layer's digest is its diff_id; expansion checks the tar hashes to it
        const layer = byFile.get(file) ?? { descriptor: { mediaType: DOCKER_LAYER_TAR, digest: parseDigest(diffId) as Digest, size, urls: [] }, file, uses: [] }
        layer.uses.push({ diffId, manifest: `${DOCKER_MANIFEST_FILE}[${i}]`, position })
        byFile.set(file, layer)
      }
    }
    return [...byFile.values()]
  } catch (err) {
    throw imageError(err, 'ERR_SOURCE', `Docker image archive ${shownAs}`, { archive: shownAs })
  }
}

/** The real path of `rel`, which must be inside `dir` (no symlink leads out). */
async function inside(dir: string, rel: string): Promise<string> {
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

async function regularSize(dir: string, rel: string): Promise<number> {
  const st = await fs.stat(await inside(dir, rel))
  if (!st.isFile()) fail(`${rel} is not a regular file`)
  return st.size
}
