// A directory tree's disk usage as containerd reports it for a snapshot (fs.DiskUsage): the blocks
// of every inode once (hard links count once), in bytes, and the number of inodes, the root included.
import { promises as fs } from 'node:fs'
import path from 'node:path'

export interface Usage {
  size: number
  inodes: number
}

export async function diskUsage(root: string): Promise<Usage> {
  const seen = new Set<string>()
  let size = 0
  const visit = async (p: string): Promise<void> => {
    const st = await fs.lstat(p, { bigint: true })
    const key = `${st.dev}:${st.ino}`
    if (!seen.has(key)) {
      seen.add(key)
      size += Number(st.blocks) * 512
    }
    if (!st.isDirectory()) return
    for (const name of await fs.readdir(p)) await visit(path.join(p, name))
  }
  await visit(root)
  return { size, inodes: seen.size }
}
