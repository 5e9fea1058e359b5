// Helpers for the OCI image tests: small layouts written by hand (for the checker's unit tests),
// images built with umoci and copied with skopeo (the reference tools), and the ways a test damages a
// layout. Hand-built layouts use node's sha256, not snapdir's code, so the checker is judged
// against an independent idea of what a blob's digest is.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { manifest } from './trees.js'

export interface TestDescriptor {
  mediaType: string
  digest: string
  size: number
  urls?: string[]
}

export const OCI = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerTar: 'application/vnd.oci.image.layer.v1.tar',
  layerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  nondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
} as const

export const DOCKER = {
  manifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  manifest: 'application/vnd.docker.distribution.manifest.v2+json',
  config: 'application/vnd.docker.container.image.v1+json',
  layerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  foreignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex')
}

/** Writes an image layout by hand, blob by blob. */
export class LayoutBuilder {
  constructor(
    readonly dir: string,
    readonly algorithm: 'sha256' | 'sha512' = 'sha256',
  ) {
    mkdirSync(path.join(dir, 'blobs', algorithm), { recursive: true })
    writeFileSync(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}')
  }

  blob(content: Buffer | string | object, mediaType: string): TestDescriptor {
    const data = Buffer.isBuffer(content) ? content : Buffer.from(typeof content === 'string' ? content : JSON.stringify(content))
    const hex = createHash(this.algorithm).update(data).digest('hex')
    writeFileSync(path.join(this.dir, 'blobs', this.algorithm, hex), data)
    return { mediaType, digest: `${this.algorithm}:${hex}`, size: data.length }
  }

  /** An image: a config and layers with the given contents, and the manifest naming them. */
  image(options: { layers: Array<Buffer | string>; layerType?: string; types?: typeof OCI | typeof DOCKER; seed?: string }): TestDescriptor {
    const types = options.types ?? OCI
    const config = this.blob({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, seed: options.seed ?? '' }, types.config)
    const layers = options.layers.map((l) => this.blob(l, options.layerType ?? types.layerGzip))
    return this.manifest({ config, layers, mediaType: types.manifest })
  }

  manifest(options: { config: TestDescriptor; layers: TestDescriptor[]; mediaType?: string }): TestDescriptor {
    const mediaType = options.mediaType ?? OCI.manifest
    return this.blob({ schemaVersion: 2, mediaType, config: options.config, layers: options.layers }, mediaType)
  }

  index(manifests: TestDescriptor[], mediaType: string = OCI.index): TestDescriptor {
    return this.blob({ schemaVersion: 2, mediaType, manifests }, mediaType)
  }

  /** index.json, listing `manifests` (tagged by position) */
  writeIndex(manifests: TestDescriptor[]): void {
    const tagged = manifests.map((m, i) => ({ ...m, annotations: { 'org.opencontainers.image.ref.name': `tag${i}` } }))
    writeFileSync(path.join(this.dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: OCI.index, manifests: tagged }))
  }
}

export function blobFile(layout: string, digest: string): string {
  const [algorithm, hex] = digest.split(':')
  return path.join(layout, 'blobs', algorithm!, hex!)
}

/** Flips one bit of a blob, in place: same size, different content. */
export function flipByte(layout: string, digest: string, at = 0): void {
  const file = blobFile(layout, digest)
  const data = readFileSync(file)
  data[Math.min(at, data.length - 1)]! ^= 0x01
  writeFileSync(file, data)
}

interface IndexJson {
  manifests: TestDescriptor[]
}
interface ManifestJson {
  config: TestDescriptor
  layers: TestDescriptor[]
}

export function readIndexJson(layout: string): IndexJson {
  return JSON.parse(readFileSync(path.join(layout, 'index.json'), 'utf8')) as IndexJson
}

/** The first image manifest index.json lists, with its descriptor. */
export function firstManifest(layout: string): { descriptor: TestDescriptor; manifest: ManifestJson } {
  const descriptor = readIndexJson(layout).manifests[0]!
  return { descriptor, manifest: JSON.parse(readFileSync(blobFile(layout, descriptor.digest), 'utf8')) as ManifestJson }
}

/**
 * Changes the first manifest the way a buggy tool would, but writes it consistently: the new manifest
 * is stored under its own digest and index.json points at it. Returns the new manifest's digest.
 */
export function editFirstManifest(layout: string, edit: (m: ManifestJson) => void): string {
  const index = readIndexJson(layout)
  const { manifest } = firstManifest(layout)
  edit(manifest)
  const data = Buffer.from(JSON.stringify(manifest))
  const digest = `sha256:${sha256(data)}`
  writeFileSync(blobFile(layout, digest), data)
  index.manifests[0] = { ...index.manifests[0]!, digest, size: data.length }
  writeFileSync(path.join(layout, 'index.json'), JSON.stringify(index))
  return digest
}

/** Every blob of a layout: its file name and the sha256 of its content. */
export function blobHashes(layout: string): Array<{ name: string; sha256: string }> {
  const dir = path.join(layout, 'blobs', 'sha256')
  return readdirSync(dir)
    .sort()
    .map((name) => ({ name, sha256: sha256(readFileSync(path.join(dir, name))) }))
}

/**
 * Fails the test file at once, naming what is absent, unless every reference tool it needs is
 * installed. scripts/setup.sh installs them all, so a missing one is a broken set-up, never a skip.
 */
export function requireTools(...tools: string[]): void {
  const missing = tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0)
  if (missing.length > 0) throw new Error(`${missing.join(', ')} not installed: run make setup (scripts/setup.sh installs them)`)
}

/** Runs a reference tool and fails the test with its output unless it exits 0. */
export function tool(command: string, args: string[], options: { cwd?: string } = {}): string {
  const r = spawnSync(command, args, { encoding: 'utf8', cwd: options.cwd, maxBuffer: 64 * 1024 * 1024 })
  if (r.error) throw r.error
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${r.status}: ${r.stderr}`)
  return r.stdout
}

/** Runs a reference tool and returns its exit status and stderr, for the cases where it must refuse. */
export function toolStatus(command: string, args: string[]): { status: number; stderr: string } {
  const r = spawnSync(command, args, { encoding: 'utf8' })
  if (r.error) throw r.error
  return { status: r.status ?? 1, stderr: r.stderr }
}

/**
 * A three-layer image built with umoci, with what snapdir must carry through untouched: a symlink, a
 * setuid file, hardlinks (within a layer, and a second name added in a later layer), an xattr, a
 * file owned by another user, and deletions (a file and a whole directory) that become whiteouts in
 * layer 2. Needs root: umoci unpacks and repacks owners as they are.
 */
/**
 * buildUmociImage in a fresh temporary directory (`shared`, for the test file to remove), with the
 * reference rootfs: the manifest of umoci's own unpack of the image it built.
 */
export function umociImageWithReference(prefix: string, tag: string): { shared: string; image: string; rootfs: string } {
  const shared = mkdtempSync(path.join(os.tmpdir(), prefix))
  const image = path.join(shared, 'image')
  buildUmociImage(image, tag, path.join(shared, 'build-bundle'))
  tool('umoci', ['unpack', '--image', `${image}:${tag}`, path.join(shared, 'reference-bundle')])
  return { shared, image, rootfs: manifest(path.join(shared, 'reference-bundle', 'rootfs')) }
}

export function buildUmociImage(layout: string, tag: string, bundle: string): void {
  tool('umoci', ['init', '--layout', layout])
  tool('umoci', ['new', '--image', `${layout}:${tag}`])
  tool('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle])
  const rootfs = path.join(bundle, 'rootfs')
  const at = (p: string): string => path.join(rootfs, p)
  for (const d of ['etc', 'bin', 'var/cache']) mkdirSync(at(d), { recursive: true })
  writeFileSync(at('etc/hello'), 'hello from layer 1\n')
  writeFileSync(at('bin/tool'), '#!/bin/sh\necho tool\n', { mode: 0o755 })
  writeFileSync(at('etc/doomed'), 'deleted in layer 2\n')
  writeFileSync(at('var/cache/big.bin'), Buffer.alloc(300_000, 7)) // several chunks
  writeFileSync(at('var/cache/small'), 'gone with its directory\n')
  tool('ln', ['-s', '../etc/hello', at('bin/hello-link')])
  tool('ln', [at('etc/hello'), at('etc/hello-hardlink')])
  tool('chmod', ['4755', at('bin/tool')])
  tool('chown', ['1000:1000', at('etc/hello')])
  tool('setfattr', ['-n', 'user.snapdir.test', '-v', 'layer-one', at('etc/hello')])
  // --refresh-bundle: each repack diffs against the previous layer, not the empty image
  tool('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:${tag}`, bundle])

  tool('rm', ['-r', at('etc/doomed'), at('var/cache')])
  writeFileSync(at('etc/added'), 'added in layer 2\n')
  tool('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:${tag}`, bundle])

  tool('ln', [at('bin/tool'), at('bin/tool-again')])
  tool('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:${tag}`, bundle])
}

/**
 * The umoci image above with two layers more, for the views: layer 4 adds devices, a fifo and a
 * directory with files (umoci repack); layer 5 is a tar written here (umoci raw add-layer) that makes
 * that directory opaque with one new file in it, and whites out a file of layer 2 and a symlink of
 * layer 1.
 */
export function buildViewsImage(layout: string, tag: string, bundle: string, scratch: string): void {
  buildUmociImage(layout, tag, bundle)
  const rootfs = path.join(bundle, 'rootfs')
  const at = (p: string): string => path.join(rootfs, p)
  mkdirSync(at('dev'), { recursive: true })
  tool('mknod', [at('dev/char0'), 'c', '1', '3'])
  tool('mknod', [at('dev/blk0'), 'b', '7', '0'])
  tool('mkfifo', [at('dev/fifo')])
  mkdirSync(at('opt/app/sub'), { recursive: true })
  writeFileSync(at('opt/app/a'), 'hidden by the opaque directory above\n')
  writeFileSync(at('opt/app/sub/c'), 'hidden too\n')
  tool('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:${tag}`, bundle])

  const layerTar = path.join(scratch, 'layer5.tar')
  const script = [
    'import io, sys, tarfile',
    't = tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT)',
    'def add(name, kind=tarfile.REGTYPE, data=b"", mode=0o644):',
    '    i = tarfile.TarInfo(name); i.type = kind; i.mode = mode; i.mtime = 1700000000; i.size = len(data)',
    '    t.addfile(i, io.BytesIO(data) if kind == tarfile.REGTYPE else None)',
    'add("opt/app", tarfile.DIRTYPE, mode=0o750)',
    'add("opt/app/.wh..wh..opq")',
    'add("opt/app/new", data=b"the only file of the opaque directory\\n")',
    'add("etc/.wh.added")',
    'add("bin/.wh.hello-link")',
    't.close()',
  ].join('\n')
  tool('python3', ['-c', script, layerTar])
  tool('umoci', ['raw', 'add-layer', '--image', `${layout}:${tag}`, layerTar])
}

/**
 * A small Debian image made of this machine's own Debian packages (dash, coreutils, libc6 and what
 * they link, base-files), files as dpkg lists them with their metadata, in the merged-/usr layout of
 * the host: a real Debian userland to run from a mount, without a download.
 */
export function buildDebianImage(layout: string, tag: string, bundle: string): void {
  tool('umoci', ['init', '--layout', layout])
  tool('umoci', ['new', '--image', `${layout}:${tag}`])
  tool('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle])
  const listing = tool('dpkg', ['-L', 'base-files', 'dash', 'coreutils', 'libc6', 'libselinux1', 'libpcre2-8-0'])
  // dpkg lists names under the /bin, /lib symlinks too: take each file at its real place
  const script = [
    'import os, sys',
    'seen = set()',
    'for line in sys.stdin.read().splitlines():',
    '    if not line.startswith("/") or not os.path.lexists(line) or (os.path.isdir(line) and not os.path.islink(line)): continue',
    '    real = os.path.join(os.path.realpath(os.path.dirname(line)), os.path.basename(line))',
    '    if real not in seen: seen.add(real); print(real[1:])',
    'for link in ("bin", "lib", "lib64", "sbin"):',
    '    if os.path.islink("/" + link): print(link)',
  ].join('\n')
  const files = spawnSync('python3', ['-c', script], { input: listing, encoding: 'utf8' })
  if (files.status !== 0) throw new Error(`listing the Debian files failed: ${files.stderr}`)
  const list = path.join(bundle, 'files.txt')
  writeFileSync(list, files.stdout)
  const rootfs = path.join(bundle, 'rootfs')
  const copy = spawnSync('sh', ['-c', `tar -C / --no-recursion -cf - -T '${list}' | tar -C '${rootfs}' -xpf -`], { encoding: 'utf8' })
  if (copy.status !== 0) throw new Error(`copying the Debian files failed: ${copy.stderr}`)
  mkdirSync(path.join(rootfs, 'tmp'), { mode: 0o1777 })
  tool('umoci', ['repack', '--image', `${layout}:${tag}`, bundle])
}
