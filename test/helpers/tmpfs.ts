// A small tmpfs for tests that need a real full disk or a real mount point (the tests run as root).
// Every tmpfs a test mounts is unmounted after it, lazily if something still holds it.
import { spawnSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { afterEach } from 'vitest'

const mounted: string[] = []
afterEach(() => {
  while (mounted.length) unmount(mounted.pop()!)
})

function unmount(dir: string): void {
  if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir])
}

/** Mounts a tmpfs of `size` (e.g. '2m') at dir (made if missing); unmounted after the test. */
export function mountTmpfs(dir: string, size: string): string {
  mkdirSync(dir, { recursive: true })
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`mount -t tmpfs at ${dir} failed (the test needs root): ${r.stderr}`)
  mounted.push(dir)
  return dir
}
