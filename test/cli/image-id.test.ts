// snapdir id of an image layout: the ID push prints, with --platform as push has it, computed on a
// scratch store whose chunks stay on disk (push reads them back to check each layer's recipe), so its
// memory is push's own and nothing is left behind. The memory is judged against push's on the same
// layout (peak RSS from python's getrusage of the finished child), not against a fixed figure.
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, readdirSync } from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { SNAPDIR, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { LayoutBuilder, OCI, sha256 } from '../helpers/oci.js'

/** A tar of these regular files, written by python's tarfile (no snapdir code). */
function tarOf(files: Array<{ name: string; data: Buffer }>): Buffer {
  const script = [
    'import io, json, sys, tarfile',
    'spec = json.loads(sys.argv[1]); blob = sys.stdin.buffer.read(); at = 0',
    'b = io.BytesIO()',
    'with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:',
    '    for name, size in spec:',
    '        ti = tarfile.TarInfo(name); ti.size = size; ti.mtime = 1700000000; ti.mode = 0o644',
    '        t.addfile(ti, io.BytesIO(blob[at:at + size])); at += size',
    'sys.stdout.buffer.write(b.getvalue())',
  ].join('\n')
  const r = spawnSync('python3', ['-c', script, JSON.stringify(files.map((f) => [f.name, f.data.length]))], { input: Buffer.concat(files.map((f) => f.data)), maxBuffer: 1 << 30 })
  if (r.status !== 0) throw new Error(r.stderr.toString())
  return r.stdout
}

/** An index of three platforms, each image one gzip layer of its own plus a shared one. */
function multiPlatformLayout(dir: string): void {
  const b = new LayoutBuilder(dir)
  const sharedTar = tarOf([{ name: 'usr/lib/shared', data: Buffer.from('shared by every platform\n'.repeat(20000)) }])
  const shared = b.blob(zlib.gzipSync(sharedTar), OCI.layerGzip)
  const entries = (['amd64', 'arm64', 's390x'] as const).map((arch) => {
    const tar = tarOf([{ name: 'arch', data: Buffer.from(`${arch}\n`) }, { name: 'usr/bin/tool', data: Buffer.from(`${arch} tool\n`.repeat(30000)) }])
    const layer = b.blob(zlib.gzipSync(tar), OCI.layerGzip)
    const config = b.blob({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [sharedTar, tar].map((t) => `sha256:${sha256(t)}`) } }, OCI.config)
    return { ...b.manifest({ config, layers: [shared, layer] }), platform: { os: 'linux', architecture: arch } }
  })
  b.writeIndex([b.index(entries)])
}

/** Runs snapdir with TMPDIR set; its stdout, and its peak RSS in KiB (getrusage of the finished child). */
function measured(args: string[], tmp: string): { stdout: string; maxRssKiB: number } {
  const script = 'import resource, subprocess, sys\nr = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)\nsys.stderr.write(r.stdout.decode())\nprint(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)'
  const r = spawnSync('python3', ['-c', script, SNAPDIR, ...args], { encoding: 'utf8', env: { ...process.env, TMPDIR: tmp } })
  const [status, rss] = r.stdout.trim().split(' ').map(Number)
  expect(status, `snapdir ${args.join(' ')}`).toBe(0)
  return { stdout: r.stderr.trim(), maxRssKiB: rss! }
}

describe('snapdir id of an image layout', () => {
  it('--platform: the ID push --platform prints, for one platform, several, and none given', async () => {
    const t = tempDir()
    const layout = path.join(t, 'layout')
    multiPlatformLayout(layout)
    for (const platforms of [[], ['linux/arm64'], ['linux/s390x'], ['linux/amd64,linux/arm64']]) {
      const args = platforms.flatMap((p) => ['--platform', p])
      const store = path.join(t, `store-${platforms.join('+').replace(/[/,]/g, '-') || 'all'}`)
      const pushed = (await snapdirOk(['push', '--store', store, ...args, layout])).trim()
      expect((await snapdirOk(['id', ...args, layout])).trim(), args.join(' ')).toBe(pushed)
    }
    // the selections are different images: the IDs differ
    const ids = await Promise.all([[], ['--platform', 'linux/arm64'], ['--platform', 'linux/s390x']].map(async (a) => (await snapdirOk(['id', ...a, layout])).trim()))
    expect(new Set(ids).size).toBe(3)
    // a platform the index lacks, or --platform for what is no multi-platform image: refused as push refuses it
    for (const [source, platform] of [[layout, 'linux/ppc64le'], [t, 'linux/arm64']] as const) {
      const r = await snapdir(['id', '--platform', platform, source])
      const p = await snapdir(['push', '--store', path.join(t, 'refused'), '--platform', platform, source])
      expect(r.status, r.stderr).toBe(p.status)
      expect(r.status).not.toBe(0)
      expect(r.stdout).toBe('')
      expect(r.stderr).toBe(p.stderr)
    }
  })

  it('keeps the chunks on disk, not in memory: its peak RSS is push\'s, and it leaves nothing in TMPDIR', () => {
    const t = tempDir()
    const layout = path.join(t, 'layout')
    const b = new LayoutBuilder(layout)
    // 96 MiB nothing compresses: a store in memory would hold all of it
    const tar = tarOf(Array.from({ length: 12 }, (_, i) => ({ name: `data/${i}`, data: randomBytes(8 << 20) })))
    const layer = b.blob(tar, OCI.layerTar)
    const config = b.blob({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(tar)}`] } }, OCI.config)
    b.writeIndex([b.manifest({ config, layers: [layer] })])
    const tmp = path.join(t, 'tmp')
    mkdirSync(tmp)
    const push = measured(['push', '--store', path.join(t, 'store'), layout], tmp)
    const id = measured(['id', layout], tmp)
    expect(id.stdout).toBe(push.stdout)
    expect(readdirSync(tmp)).toEqual([])
    // a store in memory made it push's + ~100 MiB
    expect(id.maxRssKiB, `id ${id.maxRssKiB} KiB, push ${push.maxRssKiB} KiB`).toBeLessThan(push.maxRssKiB + (32 << 10))
  })
})
