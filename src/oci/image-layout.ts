// Telling an image on disk by its top-level files: an OCI image layout by its `oci-layout` marker
// (https://github.com/opencontainers/image-spec/blob/v1.1.0/image-layout.md), a Docker image archive
// (docker-archive.ts) by its manifest.json. Only lstat here: push of a plain directory loads nothing else.
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { isErrno, sourceError } from '../util/errors.js'

export const LAYOUT_MARKER = 'oci-layout'
export const INDEX_FILE = 'index.json'
export const DOCKER_MANIFEST_FILE = 'manifest.json'

/**
 * A directory is an image layout when it has an `oci-layout` file at its top. That file is what the
 * spec makes the marker; from there on the rest must be right, so a half-written layout is reported
 * rather than pushed as an ordinary directory.
 */
export function isImageLayout(dir: string): Promise<boolean> {
  return hasTopFile(dir, LAYOUT_MARKER)
}

/** A directory is a Docker archive when it has manifest.json and is not an OCI layout (which wins). */
export async function isDockerArchive(dir: string): Promise<boolean> {
  return !(await isImageLayout(dir)) && (await hasTopFile(dir, DOCKER_MANIFEST_FILE))
}

/** Whether `name` at the top of `dir` is a regular file (not a symlink to one). */
async function hasTopFile(dir: string, name: string): Promise<boolean> {
  try {
    return (await fs.lstat(path.join(dir, name))).isFile()
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false
    throw sourceError(path.join(dir, name), err)
  }
}
