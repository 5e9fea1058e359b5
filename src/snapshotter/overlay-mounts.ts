// The mounts a snapshot is used through, as containerd's overlayfs snapshotter
// (snapshots/overlay/overlay.go) returns them, so that containerd, runc and ctr treat ours alike:
//
//   no parent               bind of its fs/, rw (active) or ro (view)
//   active with parents     overlay: upperdir its fs/, workdir its work/, lowerdir the parents' fs/,
//                           nearest first
//   view of one parent      bind of the parent's fs/, ro
//   view of several         overlay of the parents' fs/ as lowerdirs only (read-only by construction)
//
// index=off is added where the kernel's overlay has the index feature (as containerd does), so that
// lower directories can be shared by several overlays.
import { existsSync } from 'node:fs'

export interface Mount {
  type: string
  source: string
  target: string
  options: string[]
}

export interface MountPaths {
  kind: 'active' | 'view'
  /** its own fs/ (upper directory) and work/ */
  fs: string
  work: string
  /** the fs/ of each committed parent, nearest first */
  parents: string[]
}

const indexOff = existsSync('/sys/module/overlay/parameters/index')

export function overlayMounts(s: MountPaths): Mount[] {
  if (s.parents.length === 0) {
    return [{ type: 'bind', source: s.fs, target: '', options: [s.kind === 'active' ? 'rw' : 'ro', 'rbind'] }]
  }
  const options = indexOff ? ['index=off'] : []
  if (s.kind === 'active') {
    options.push(`workdir=${s.work}`, `upperdir=${s.fs}`)
  } else if (s.parents.length === 1) {
    return [{ type: 'bind', source: s.parents[0]!, target: '', options: ['ro', 'rbind'] }]
  }
  options.push(`lowerdir=${s.parents.join(':')}`)
  return [{ type: 'overlay', source: 'overlay', target: '', options }]
}
