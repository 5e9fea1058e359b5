// What is mounted where, from /proc/self/mountinfo (see proc(5)).
import fs from 'node:fs/promises'

export interface MountInfo {
  mountpoint: string
  fstype: string
  source: string
  /** major:minor of the mounted file system; for FUSE the minor is the connection number */
  dev: string
}

/** mountinfo escapes space, tab, newline and backslash as \ooo */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

export async function listMounts(): Promise<MountInfo[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8')
  const mounts: MountInfo[] = []
  for (const line of text.split('\n')) {
    if (!line) continue
    const [left, right] = line.split(' - ')
    const f = left!.split(' ')
    const r = right!.split(' ')
    mounts.push({ mountpoint: unescape(f[4]!), dev: f[2]!, fstype: r[0]!, source: unescape(r[1]!) })
  }
  return mounts
}

/** The topmost mount exactly at `dir` (an absolute, resolved path), or null. */
export async function mountAt(dir: string): Promise<MountInfo | null> {
  const at = (await listMounts()).filter((m) => m.mountpoint === dir)
  return at.at(-1) ?? null
}
