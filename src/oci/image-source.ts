// What push snapshots, from what the user names: a directory as it is; an OCI image layout, checked
// and, with --platform, narrowed to those platforms; a Docker image archive, checked; and any of these
// as one tar file (image-archive.ts), unpacked first. Images come back with the layers to expand and
// scanned whole, so that nothing is stored from an image that is not right.
// Only detection loads here: the image modules load for images, so a plain directory's push starts sooner.
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { checkSourceDirectory, scanDirectory, type ScannedEntry } from '../ingest/scan.js'
import { isErrno, UsageError } from '../util/errors.js'
import { isDockerArchive, isImageLayout } from './image-layout.js'
import type { LayoutLayer } from './layout-layers.js'
import type { Platform } from './platform.js'

export interface PushSource {
  /** the directory to snapshot: the one given, or a temporary one the archive or selection went to */
  dir: string
  kind: 'directory' | 'oci-layout' | 'docker-archive'
  /** how messages about the image name it: "OCI image layout SRC", "Docker image archive SRC", … */
  shownAs: string
  /** the name a revision gets by default: the directory's, or the archive file's without its extensions */
  name: string
  /** an image's layers to expand, each distinct blob once; null for a plain directory */
  layers: LayoutLayer[] | null
  /** an image, scanned whole before anything is stored; null: scan while cutting (buildSnapshot) */
  scanned: ScannedEntry[] | null
  /** removes the temporary directories opening made, if any */
  remove(): Promise<void>
}

export interface OpenSourceOptions {
  /** for an image: keep only these platforms of its multi-platform indexes (select-platforms.ts) */
  platforms?: Platform[]
  /** after each step that took time: 'unpack', 'image-check' */
  onPhase?: (name: string) => void
}

/**
 * Opens `source` for push. Whatever is wrong with it (not a directory or archive, an image that fails
 * its check) throws before anything is stored, and leaves no temporary directory behind.
 */
export async function openSource(source: string, options: OpenSourceOptions = {}): Promise<PushSource> {
  const cleanups: Array<() => Promise<void>> = []
  const remove = async (): Promise<void> => {
    for (let cleanup = cleanups.pop(); cleanup; cleanup = cleanups.pop()) await cleanup()
  }
  try {
    let dir = source
    const archive = await isArchiveFile(source)
    if (archive) {
      const { unpackArchive } = await import('./image-archive.js')
      const unpacked = await unpackArchive(source)
      cleanups.push(() => unpacked.remove())
      dir = unpacked.dir
      options.onPhase?.('unpack')
    }
    const name = archive ? archiveName(source) : path.basename(path.resolve(source))
    // a DIR that cannot be listed fails here, before the store is created or touched
    checkSourceDirectory(dir)
    const plain: PushSource = { dir, kind: 'directory', shownAs: source, name, layers: null, scanned: null, remove }
    if (await isImageLayout(dir)) {
      const { checkImageLayout } = await import('./check-layout.js')
      const { layoutLayers } = await import('./layout-layers.js')
      const checkedAs = archive ? `archive ${source}` : source
      await checkImageLayout(dir, { shownAs: checkedAs })
      if (options.platforms) {
        // only some platforms: a new layout with just those, pushed instead
        const { selectPlatforms } = await import('./select-platforms.js')
        const selected = await selectPlatforms(dir, options.platforms, source)
        cleanups.push(() => selected.remove())
        dir = selected.dir
      }
      const scanned = await scanDirectory(dir)
      const layers = await layoutLayers(dir, checkedAs)
      options.onPhase?.('image-check')
      return { ...plain, dir, kind: 'oci-layout', shownAs: `OCI image ${archive ? 'archive' : 'layout'} ${source}`, layers, scanned }
    }
    if (options.platforms) {
      throw new UsageError(`--platform picks platforms of a multi-platform image; ${source} is not an OCI image layout or archive of one`)
    }
    if (await isDockerArchive(dir)) {
      const { dockerArchiveLayers } = await import('./docker-archive.js')
      const scanned = await scanDirectory(dir)
      const layers = await dockerArchiveLayers(dir, source)
      options.onPhase?.('image-check')
      return { ...plain, kind: 'docker-archive', shownAs: `Docker image archive ${source}`, layers, scanned }
    }
    return plain
  } catch (err) {
    await remove()
    throw err
  }
}

/** A regular file given where a directory could be: an archive to unpack. */
async function isArchiveFile(source: string): Promise<boolean> {
  try {
    return (await fs.stat(source)).isFile()
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false
    throw err
  }
}

/** The name a revision gets by default: the file name without its archive extensions. */
function archiveName(file: string): string {
  return path.basename(file).replace(/(\.tar)?(\.gz|\.tgz|\.zst|\.zstd)?$/i, '').replace(/\.tgz$/i, '') || path.basename(file)
}
