// pull --tar --format: an image snapshot written as the kind of archive asked for, whichever kind was
// pushed. The same kind is the snapshot as it is (pull-archive.ts, byte for byte); the other kind is
// made by oci/write-docker-archive.ts or oci/write-oci-archive.ts, and framed here. Its files get
// the snapshot root's time, so the same snapshot always gives the same archive.
import type { Pack } from 'tar-stream'
import type { Tree } from '../format/tree.js'
import type { ArchiveMember } from '../oci/archive-member.js'
import { DOCKER_MANIFEST_FILE, LAYOUT_MARKER } from '../oci/image-layout.js'
import type { Platform } from '../oci/platform.js'
import type { ReadStore } from '../store/store.js'
import { findEntry } from '../store/tree-file.js'
import { UsageError } from '../util/errors.js'

export const ARCHIVE_FORMATS = ['oci-archive', 'docker-archive'] as const
export type ArchiveFormat = (typeof ARCHIVE_FORMATS)[number]

export interface ArchiveFormatOptions {
  /** the kind of image archive to write; default: the snapshot as it is */
  format?: ArchiveFormat
  /** for docker-archive from a multi-platform image: which platform (default: this machine's) */
  platform?: Platform
}

/** What kind of image the snapshot is at its top (an OCI layout wins, as on push), or null. */
export function imageFormatOf(tree: Tree): ArchiveFormat | null {
  const top = (name: string): boolean => findEntry(tree, name)?.type === 'file'
  if (top(LAYOUT_MARKER)) return 'oci-archive'
  if (top(DOCKER_MANIFEST_FILE)) return 'docker-archive'
  return null
}

/**
 * The files to write instead of the snapshot's own, or null when the snapshot is to be written as it
 * is (no format asked, or the one it has). A format asked of a snapshot that is no image is bad usage.
 */
export async function convertedMembers(store: ReadStore, id: string, tree: Tree, options: ArchiveFormatOptions): Promise<AsyncGenerator<ArchiveMember> | null> {
  if (options.format === undefined) return null
  const have = imageFormatOf(tree)
  if (have === null) throw new UsageError(`snapshot ${id} is not an image (neither an OCI layout nor a Docker archive at its top): --format ${options.format} needs one`)
  if (have === options.format) return null
  if (options.format === 'docker-archive') {
    const { dockerArchiveMembers } = await import('../oci/write-docker-archive.js')
    return dockerArchiveMembers(store, id, tree, options.platform ? { platform: options.platform } : {})
  }
  const { ociArchiveMembers } = await import('../oci/write-oci-archive.js')
  return ociArchiveMembers(store, id, tree)
}

/** Writes the members into the tar, each as it comes; `onBytes` as their content goes out. */
export async function writeMembers(members: AsyncGenerator<ArchiveMember>, pack: Pack, tree: Tree, onBytes?: (n: number) => void): Promise<void> {
  const root = tree.entries.find((e) => e.path.length === 0)
  const mtime = new Date(root ? root.mtimeSec * 1000 : 0)
  for await (const m of members) {
    const header = { name: m.type === 'directory' ? `${m.name}/` : m.name, type: m.type, mode: m.type === 'directory' ? 0o755 : 0o644, uid: 0, gid: 0, mtime, size: m.type === 'file' ? m.size : 0 }
    const sink = pack.entry(header)
    const done = new Promise<void>((resolve, reject) => {
      sink.on('close', () => resolve())
      sink.on('error', reject)
    })
    done.catch(() => {}) // awaited below; if the content fails first, the entry's error must not go unhandled
    if (m.content) {
      const send = async (data: Buffer): Promise<void> => {
        if (!sink.write(data)) await new Promise<void>((resolve) => sink.once('drain', () => resolve()))
        onBytes?.(data.length)
      }
      // a member's content is known to be right only once its stream ended (its digest checked): the
      // last piece is held back until then, so a reader of an archive already sent (`pull --tar -`)
      // sees it stop short inside that entry, never a whole entry with wrong bytes (as pull-archive.ts)
      let held: Buffer | null = null
      for await (const piece of m.content()) {
        if (held) await send(held)
        held = Buffer.from(piece) // a copy: a recipe's pieces may be buffers it reuses
      }
      if (held) await send(held)
    }
    sink.end(undefined)
    await done
  }
}
