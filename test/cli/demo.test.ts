// `make demo` (scripts/demo.sh after setup): builds an image from this machine's Debian packages,
// pushes it, runs a command from the lazy rootfs view through overlayfs, and prints what that
// fetched against the image's size. It must succeed, say what it promises, fetch only part of the
// image, and leave nothing behind: no temporary directory, no mount.
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { expect, it } from 'vitest'
import { ROOT, tempDir } from '../helpers/cli.js'
import { requireTools } from '../helpers/oci.js'

requireTools('umoci', 'dpkg', 'chroot', 'mountpoint', '/usr/bin/python3')

it('make demo: a Debian image pushed, run lazily from the store, part of it fetched, everything cleaned up', async () => {
  const tmp = tempDir()
  const child = spawn('bash', [path.join(ROOT, 'scripts', 'demo.sh')], { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  const status = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  expect(status, stderr).toBe(0)
  expect(stdout).toMatch(/^snapshot ID: [0-9a-f]{64} /m)
  expect(stdout).toContain(`Debian ${readFileSync('/etc/debian_version', 'utf8').trim()}: `)
  const image = /^image: .*, (\d+) layers, ([\d.]+) MB of gzip layer blobs/m.exec(stdout)
  const fetched = /^fetched to run it: (\d+) chunks, ([\d.]+) MB/m.exec(stdout)
  expect(image, stdout).not.toBeNull()
  expect(fetched, stdout).not.toBeNull()
  expect(Number(image![1])).toBe(2)
  expect(Number(fetched![1])).toBeGreaterThan(0)
  // sh, libc and a few coreutils of an image that also holds Python: a small part of it
  expect(Number(fetched![2])).toBeLessThan(Number(image![2]) / 3)
  expect(readdirSync(tmp), 'its temporary directory is removed').toEqual([])
  expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(tmp)
}, 300_000)
