// Multi-platform images: an index listing an amd64 and an arm64 image (written by hand, layers made
// by python's tarfile, digests by node's sha256). Pushed whole, both stay and a view picks one by
// --platform (this machine's by default); pushed with --platform, only the chosen image is stored
// and the index that lists it is rewritten.
import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { startMount } from '../helpers/mount.js'
import { blobFile, blobHashes, LayoutBuilder, OCI, readIndexJson, sha256, type TestDescriptor } from '../helpers/oci.js'

const ARCHES = ['amd64', 'arm64'] as const

/** A one-file layer tar: /arch holding the architecture's name. */
function layerTar(arch: string): Buffer {
  const script = 'import io, sys, tarfile\nb = io.BytesIO()\nt = tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT)\nd = (sys.argv[1] + "\\n").encode()\ni = tarfile.TarInfo("arch"); i.size = len(d); i.mtime = 1700000000\nt.addfile(i, io.BytesIO(d)); t.close()\nsys.stdout.buffer.write(b.getvalue())'
  const r = spawnSync('python3', ['-c', script, arch])
  if (r.status !== 0) throw new Error(r.stderr.toString())
  return r.stdout
}

function multiPlatformLayout(dir: string): { images: Record<string, TestDescriptor[]> } {
  const b = new LayoutBuilder(dir)
  const images: Record<string, TestDescriptor[]> = {}
  const entries = ARCHES.map((arch) => {
    const tar = layerTar(arch)
    const layer = b.blob(zlib.gzipSync(tar), OCI.layerGzip)
    const config = b.blob({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(tar)}`] } }, OCI.config)
    const manifest = b.manifest({ config, layers: [layer] })
    images[arch] = [manifest, config, layer]
    return { ...manifest, platform: { os: 'linux', architecture: arch } }
  })
  b.writeIndex([b.index(entries)])
  return { images }
}

const hostArch = process.arch === 'arm64' ? 'arm64' : 'amd64'

describe('a multi-platform image', () => {
  it('is kept whole by push; a view shows this machine\'s platform, or the one --platform names', async () => {
    const t = tempDir()
    const layout = path.join(t, 'layout')
    multiPlatformLayout(layout)
    const store = path.join(t, 'store')
    const id = (await snapdirOk(['push', '--store', store, layout])).trim()
    const pulled = path.join(t, 'pulled')
    await snapdirOk(['pull', '--store', store, '--id', id, pulled])
    expect(blobHashes(pulled)).toEqual(blobHashes(layout))

    for (const [args, arch] of [[[], hostArch], [['--platform', 'linux/arm64'], 'arm64'], [['--platform', 'linux/amd64'], 'amd64']] as const) {
      const mnt = path.join(tempDir(), 'mnt')
      mkdirSync(mnt)
      const m = await startMount(['--store', store, '--id', id, '--view', 'rootfs', ...args], mnt)
      expect(readFileSync(path.join(mnt, 'rootfs', 'arch'), 'utf8'), args.join(' ')).toBe(`${arch}\n`)
      const stopped = await m.stop()
      expect(stopped.status, stopped.stderr).toBe(0)
    }
    const none = await snapdir(['mount', '--store', store, '--id', id, '--view', 'rootfs', '--platform', 'linux/s390x', path.join(t, 'pulled')])
    expect(none.status).toBe(1)
    expect(none.stderr).toContain('has no image for linux/s390x (it has linux/amd64, linux/arm64)')
  })

  it('push --platform stores only that image, under a rewritten index', async () => {
    const t = tempDir()
    const layout = path.join(t, 'layout')
    const { images } = multiPlatformLayout(layout)
    const store = path.join(t, 'store')
    const id = (await snapdirOk(['push', '--store', store, '--platform', 'linux/arm64', layout])).trim()
    expect((await snapdirOk(['push', '--store', store, '--platform', 'linux/arm64', layout])).trim(), 'the same selection, the same ID').toBe(id)
    const pulled = path.join(t, 'pulled')
    await snapdirOk(['pull', '--store', store, '--id', id, pulled]) // pull checks every digest again

    const top = readIndexJson(pulled).manifests
    expect(top).toHaveLength(1)
    const nested = JSON.parse(readFileSync(blobFile(pulled, top[0]!.digest), 'utf8')) as { manifests: Array<TestDescriptor & { platform: unknown }> }
    expect(nested.manifests.map((m) => m.platform)).toEqual([{ os: 'linux', architecture: 'arm64' }])
    const kept = new Set([top[0]!.digest, ...images.arm64!.map((d) => d.digest)].map((d) => d.slice(7)))
    expect(blobHashes(pulled).map((b) => b.name).sort()).toEqual([...kept].sort())

    const bad = await snapdir(['push', '--store', store, '--platform', 'linux/riscv64', layout])
    expect(bad.status).toBe(1)
    expect(bad.stderr).toContain('no image for linux/riscv64 (it has linux/amd64, linux/arm64)')
    const plain = path.join(t, 'plain')
    mkdirSync(plain)
    const notImage = await snapdir(['push', '--store', store, '--platform', 'linux/arm64', plain])
    expect(notImage.status).toBe(2)
    expect((await snapdir(['push', '--store', store, '--platform', 'arm64', layout])).status, 'not os/arch').toBe(2)
  })
})
