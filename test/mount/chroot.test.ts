// A container's first moments, from the lazy view: a Debian image is pushed, its rootfs view mounted
// from the store, an overlayfs upper layer put on top, and a shell run in it with chroot. The program
// must run, see the image's files, write only to the upper layer, and need only part of the image.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { expect, it } from 'vitest'
import { snapdirOk, tempDir } from '../helpers/cli.js'
import { startMount } from '../helpers/mount.js'
import { buildDebianImage, requireTools, tool } from '../helpers/oci.js'

requireTools('umoci', 'dpkg', 'chroot')

it('runs /bin/sh from the rootfs view of a Debian image, writes landing in an overlayfs upper layer', async () => {
  const t = tempDir()
  const layout = path.join(t, 'debian')
  buildDebianImage(layout, 'stable', path.join(t, 'bundle'))
  const store = path.join(t, 'store')
  const id = (await snapdirOk(['push', '--store', store, layout])).trim()
  rmSync(layout, { recursive: true })

  const mnt = path.join(t, 'mnt')
  const [upper, work, merged] = ['upper', 'work', 'merged'].map((d) => path.join(t, d))
  for (const d of [mnt, upper!, work!, merged!]) mkdirSync(d)
  const m = await startMount(['--store', store, '--id', id, '--view', 'rootfs', '--json'], mnt)
  tool('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${path.join(mnt, 'rootfs')},upperdir=${upper},workdir=${work}`, merged!])
  let run
  try {
    run = spawnSync('chroot', [merged!, '/bin/sh', '-c', 'cat /etc/debian_version; ls /usr/bin | wc -l; echo written-inside > /tmp/out; cat /tmp/out; rm /etc/debian_version'], {
      encoding: 'utf8',
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    })
  } finally {
    spawnSync('umount', [merged!])
  }
  expect(run.stderr).toBe('')
  expect(run.status).toBe(0)
  const [version, binaries, written] = run.stdout.trim().split('\n')
  expect(version).toBe(readFileSync('/etc/debian_version', 'utf8').trim())
  expect(Number(binaries)).toBeGreaterThan(50)
  expect(written).toBe('written-inside')

  // writes went to the upper layer; the mount (read-only) still has the file the program deleted
  expect(readFileSync(path.join(upper!, 'tmp', 'out'), 'utf8')).toBe('written-inside\n')
  expect(existsSync(path.join(mnt, 'rootfs', 'etc', 'debian_version'))).toBe(true)

  const stopped = await m.stop()
  expect(stopped.status).toBe(0)
  const stats = JSON.parse(stopped.stdout) as { fetched: number; fetchedBytes: number }
  const stored = Number(tool('du', ['-sb', path.join(store, 'chunks')]).split('\t')[0])
  // the shell, libc and a few files: a small part of the image's chunks
  expect(stats.fetched).toBeGreaterThan(0)
  expect(stats.fetchedBytes).toBeLessThan(stored / 2)
})
