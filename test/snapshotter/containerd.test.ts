// `snapdir snapshotter` behind Debian's containerd (1.6) and runc, each started by the test on its own
// root, state and socket: an image imported with --snapshotter snapdir is unpacked into our overlayfs
// snapshots, a container runs on them and sees the top layer's files and none that it deleted, a
// snapshotter killed and started again serves the same snapshots, and removing the image removes
// its snapshots and their directories.
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { requireTools, tool } from '../helpers/oci.js'
import { tempDir } from '../helpers/cli.js'
import { startContainerd, startSnapshotter, type Containerd, type SnapshotterProcess } from '../helpers/snapshotter.js'

const HELLO_C = `#include <stdio.h>
int main(int argc, char **argv) {
  FILE *f = fopen(argc > 1 ? argv[1] : "/etc/msg", "r");
  if (!f) { perror("open"); return 1; }
  char b[256]; size_t n = fread(b, 1, sizeof b - 1, f); b[n] = 0;
  printf("%s", b);
  return 0;
}
`

/** A two-layer OCI image archive: a static program and two files, then one file changed and one deleted. */
function buildImage(dir: string): string {
  writeFileSync(path.join(dir, 'hello.c'), HELLO_C)
  tool('gcc', ['-static', '-O2', '-o', path.join(dir, 'hello'), path.join(dir, 'hello.c')])
  const layout = path.join(dir, 'layout')
  const bundle = path.join(dir, 'bundle')
  const rootfs = path.join(bundle, 'rootfs')
  tool('umoci', ['init', '--layout', layout])
  tool('umoci', ['new', '--image', `${layout}:v1`])
  tool('umoci', ['unpack', '--image', `${layout}:v1`, bundle])
  mkdirSync(path.join(rootfs, 'bin'))
  mkdirSync(path.join(rootfs, 'etc'))
  tool('cp', [path.join(dir, 'hello'), path.join(rootfs, 'bin', 'hello')])
  writeFileSync(path.join(rootfs, 'etc', 'msg'), 'hello from layer 1\n')
  writeFileSync(path.join(rootfs, 'etc', 'doomed'), 'deleted in layer 2\n')
  tool('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:v1`, bundle])
  writeFileSync(path.join(rootfs, 'etc', 'msg'), 'layer 2 says hi\n')
  rmSync(path.join(rootfs, 'etc', 'doomed'))
  tool('umoci', ['repack', '--image', `${layout}:v1`, bundle])
  tool('umoci', ['config', '--image', `${layout}:v1`, '--config.cmd', '/bin/hello'])
  const archive = path.join(dir, 'hello.tar')
  tool('tar', ['-C', layout, '-cf', archive, '.'])
  return archive
}

let dir: string
let sn: SnapshotterProcess
let ctd: Containerd

beforeAll(async () => {
  requireTools('containerd', 'ctr', 'runc', 'umoci', 'gcc')
  dir = tempDir()
  sn = await startSnapshotter(path.join(dir, 'sn'))
  ctd = await startContainerd(path.join(dir, 'containerd'), sn.address)
}, 120_000)

afterAll(async () => {
  await ctd?.stop()
  await sn?.stop()
})

/** Resolves once `ok` holds, trying again as each try ends (30 s at most): containerd's redial. */
async function answering(ok: () => boolean): Promise<void> {
  const until = Date.now() + 30_000
  while (!ok()) {
    if (Date.now() > until) throw new Error('containerd did not reach the snapshotter again within 30 s')
    await new Promise((resolve) => setImmediate(resolve))
  }
}

const snapshots = () =>
  ctd
    .ctr(['snapshots', '--snapshotter', 'snapdir', 'ls'])
    .trim()
    .split('\n')
    .slice(1)
    .filter((l) => l.trim() !== '')

describe('containerd with snapdir as its snapshotter', () => {
  test('import unpacks into our snapshots; a container runs on them; a restart of the snapshotter keeps them; rm removes them', async () => {
    const archive = buildImage(dir)
    ctd.ctr(['images', 'import', '--snapshotter', 'snapdir', '--base-name', 'test/hello', archive])
    // one committed snapshot per layer, the second on the first
    const listed = snapshots()
    expect(listed).toHaveLength(2)
    expect(listed.every((l) => /Committed\s*$/.test(l))).toBe(true)
    expect(listed.some((l) => /^sha256:\S+\s+sha256:\S+\s+Committed/.test(l))).toBe(true)

    const run = (id: string, ...args: string[]) => ctd.ctrStatus(['run', '--rm', '--snapshotter', 'snapdir', 'test/hello:v1', id, ...args])
    const first = run('c1')
    expect(first.stderr).toBe('')
    expect(first.stdout).toBe('layer 2 says hi\n')
    const deleted = run('c2', '/bin/hello', '/etc/doomed')
    expect(deleted.status).not.toBe(0)
    expect(deleted.stdout + deleted.stderr).toMatch(/No such file/)

    // killed and started again: the same snapshots, and containers still start on them
    await sn.kill()
    sn = await startSnapshotter(path.join(dir, 'sn'))
    // containerd's connection to the old socket failed; it dials again on its own backoff
    await answering(() => ctd.ctrStatus(['snapshots', '--snapshotter', 'snapdir', 'ls']).status === 0)
    expect(snapshots()).toEqual(listed)
    expect(run('c3').stdout).toBe('layer 2 says hi\n')

    // the containers' active snapshots are gone with them; the image's go with the image
    ctd.ctr(['images', 'rm', '--sync', 'test/hello:v1'])
    expect(snapshots()).toEqual([])
    const left = readdirSync(path.join(sn.root, 'snapshots'))
    expect(left).toEqual([])
    expect(existsSync(path.join(sn.root, 'metadata.json'))).toBe(true)
  }, 240_000)
})
