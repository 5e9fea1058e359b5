// The related Debian images the image benchmarks (image-store, gc, regenerate, registry-sync) work
// on, as OCI layouts `DIR/PRODUCER/IMAGE` cached in $SNAPDIR_BENCH_DIR/image-store-images. For each
// producer three images: a base, the base + python3, and the base re-debootstrapped + python3 (the
// rebuilt-base image). The producers:
//   umoci    umoci repack (as dedup-report builds its images): klauspost pgzip, 256 KiB blocks
//   skopeo   skopeo copy --dest-compress-format gzip of the zstd images: containers/image's pgzip
//   docker   dockerd (Debian's docker.io) import + build (FROM base, COPY the python3 files), docker push
//            to a loopback docker-registry (Go's compress/gzip), copied back with skopeo: the pushed blobs
//   zstd     skopeo copy --dest-compress-format zstd of the umoci images (klauspost zstd)

import fs from 'node:fs'
import path from 'node:path'
import { benchDir, corpusMarker, readOr, repo, runCommand, tryRun } from './common.mjs'
import { TAG, buildLayout, layoutLayers } from './layouts.mjs'
import { mountsUnder } from './mounts.mjs'
import { startRegistry, startServer, waitReady } from './servers.mjs'

/** The corpora the images are built from (bash bench/setup.sh NAME... --images builds them). */
export const CORPORA = ['debian-base', 'debian-base-rebuilt', 'debian-rootfs', 'debian-python3-rebuilt']
export const PRODUCERS = [
  { name: 'umoci', what: 'umoci repack (klauspost pgzip 1.2.5, 256 KiB blocks)' },
  { name: 'skopeo', what: 'skopeo copy --dest-compress-format gzip of the zstd images (containers/image: klauspost pgzip, 1 MiB blocks)' },
  { name: 'docker', what: 'dockerd import + build, docker push to docker-registry (Go compress/gzip), skopeo copy back' },
  { name: 'zstd', what: 'skopeo copy --dest-compress-format zstd of the umoci images (klauspost zstd)' },
]
export const IMAGES = [
  { name: 'base', what: 'debian-base, 1 layer' },
  { name: 'python', what: 'base + a python3 layer (to debian-rootfs)' },
  { name: 'rebuilt', what: 'debian-base-rebuilt + a python3 layer (the rebuilt-base image)' },
]
/** Where the images are cached between runs (they do not depend on snapdir). */
export const imagesDir = path.join(benchDir, 'image-store-images')
// the cache's marker says from what it was built; a new format number rebuilds every cache
const IMAGES_FORMAT = 1
// Debian's docker client, not whatever other `docker` comes first on PATH
export const DOCKER = '/usr/bin/docker'

const run = (argv, { env = process.env } = {}) => runCommand(argv, { env, cwd: repo })
const corpus = (name) => path.join(benchDir, name)
const progress = (text) => process.stderr.write(`${text}\n`)

/** skopeo copy SRC to the OCI layout `dst` (tag TAG); `extra`: more skopeo options. */
export async function skopeoCopy(src, dst, extra = []) {
  fs.mkdirSync(path.dirname(dst), { recursive: true })
  await run(['skopeo', 'copy', '--quiet', ...extra, src, `oci:${dst}:${TAG}`])
}

async function buildUmociImages(dir, work) {
  const layout = (name) => path.join(dir, 'umoci', name)
  const bundle = (name) => path.join(work, 'bundles', name)
  await buildLayout({ layout: layout('base'), bundle: bundle('base'), corpora: [corpus('debian-base')] })
  // on a copy of the base layout, so the shared layer is the very same blob
  await buildLayout({ layout: layout('python'), bundle: bundle('python'), corpora: [corpus('debian-rootfs')], on: layout('base') })
  const rebuiltBase = path.join(work, 'umoci-base-rebuilt')
  await buildLayout({ layout: rebuiltBase, bundle: bundle('base-rebuilt'), corpora: [corpus('debian-base-rebuilt')] })
  await buildLayout({ layout: layout('rebuilt'), bundle: bundle('rebuilt'), corpora: [corpus('debian-python3-rebuilt')], on: rebuiltBase })
}

/**
 * Docker's images: a dockerd of our own (own data and exec roots and socket, no bridge, no iptables)
 * and a loopback docker-registry with its own storage. `docker import` of debian-base and of
 * debian-base-rebuilt; `docker build` FROM each of them with one COPY of the python3 files (the umoci
 * python image's upper layer, whiteouts left out); `docker push` of the three images; then
 * `skopeo copy docker://… oci:…`, which keeps the pushed blobs byte for byte as an OCI layout.
 */
async function buildDockerImages(dir, work) {
  const d = path.join(work, 'docker')
  for (const sub of ['data', 'exec', 'config']) fs.mkdirSync(path.join(d, sub), { recursive: true })
  const sock = `unix://${path.join(d, 'docker.sock')}`
  // a private client config: no credential helper of the machine's takes part
  const env = { ...process.env, DOCKER_CONFIG: path.join(d, 'config'), DOCKER_BUILDKIT: '0' }
  const dockerLog = path.join(d, 'dockerd.log')
  const servers = []
  const docker = (...args) => run([DOCKER, '-H', sock, ...args], { env })
  try {
    const reg = await startRegistry(path.join(d, 'registry'))
    servers.push(reg.server)
    const registry = reg.host
    const dockerd = startServer(
      ['dockerd', '--data-root', path.join(d, 'data'), '--exec-root', path.join(d, 'exec'), '--host', sock, '--pidfile', path.join(d, 'dockerd.pid'), '--bridge=none', '--iptables=false'],
      { log: dockerLog },
    )
    servers.push(dockerd)
    await waitReady('dockerd', dockerd, async () => tryRun(DOCKER, ['-H', sock, 'version', '--format', '{{.Server.Version}}'], { timeoutMs: 10_000 }) !== null, dockerLog)
    const ref = (name) => `${registry}/snapdir-bench/${name}:${TAG}`
    for (const [name, tree] of [['base', 'debian-base'], ['base-rebuilt', 'debian-base-rebuilt']]) {
      await run(['bash', '-c', 'set -o pipefail; tar -C "$1" --numeric-owner -cf - . | "$2" -H "$3" import - "$4" > /dev/null', 'bash', corpus(tree), DOCKER, sock, ref(name)], { env })
    }
    const context = path.join(d, 'context')
    fs.mkdirSync(path.join(context, 'rootfs'), { recursive: true })
    const pythonLayer = layoutLayers(path.join(dir, 'umoci', 'python'))[1]
    await run(['tar', '-xzf', pythonLayer.blob, '-C', path.join(context, 'rootfs'), '--numeric-owner', '--exclude=.wh.*'])
    for (const [name, base] of [['python', 'base'], ['rebuilt', 'base-rebuilt']]) {
      fs.writeFileSync(path.join(context, 'Dockerfile'), `FROM ${ref(base)}\nCOPY rootfs/ /\n`)
      await docker('build', '-q', '-t', ref(name), context)
    }
    for (const name of ['base', 'python', 'rebuilt']) {
      await docker('push', '-q', ref(name))
      await skopeoCopy(`docker://${ref(name)}`, path.join(dir, 'docker', name), ['--src-tls-verify=false'])
    }
    return { dockerd: tryRun(DOCKER, ['-H', sock, 'version', '--format', '{{.Server.Version}} (go {{.Server.GoVersion}})']), registry: tryRun('docker-registry', ['--version']) }
  } finally {
    for (const s of servers.reverse()) await s.stop()
    // dockerd's and the registry's data are not needed once the layouts exist: gone now, not in the slow delete at the end
    // (never with a mount below it, which rm would delete through)
    if (!servers.some((s) => s.alive()) && mountsUnder(d).length === 0) fs.rmSync(d, { recursive: true, force: true })
  }
}

/** What the cached images were built from: the corpora (their setup.sh markers) and the tools' versions. */
function imagesKey() {
  return JSON.stringify({
    format: IMAGES_FORMAT,
    corpora: Object.fromEntries(CORPORA.map((c) => [c, corpusMarker(corpus(c))])),
    umoci: tryRun('umoci', ['--version']),
    skopeo: tryRun('skopeo', ['--version']),
    dockerd: tryRun('dockerd', ['--version']),
  })
}

/**
 * The images, as OCI layouts `dir/PRODUCER/IMAGE`: the cached ones when their marker says they were
 * built from the same corpora with the same tools, else built into `dir.partial` and renamed.
 * `work`: scratch space for umoci's bundles and Docker's daemon. Returns the tools' versions.
 */
export async function prepareImages(dir, work, rebuild) {
  const marker = `${dir}.complete`
  const key = imagesKey()
  if (!rebuild && fs.existsSync(dir) && readOr(marker) === key) {
    progress(`images: cached in ${dir}`)
    return JSON.parse(readOr(path.join(dir, 'tools.json'), '{}'))
  }
  const partial = `${dir}.partial`
  for (const p of [dir, partial]) fs.rmSync(p, { recursive: true, force: true })
  fs.rmSync(marker, { force: true })
  fs.mkdirSync(partial, { recursive: true })
  let t0 = Date.now()
  const took = () => {
    const s = ((Date.now() - t0) / 1000).toFixed(0)
    t0 = Date.now()
    return `${s} s`
  }
  progress('images: umoci (4 layouts)')
  await buildUmociImages(partial, work)
  progress(`  ${took()}; zstd (skopeo copy --dest-compress-format zstd)`)
  for (const image of IMAGES) await skopeoCopy(`oci:${path.join(partial, 'umoci', image.name)}:${TAG}`, path.join(partial, 'zstd', image.name), ['--dest-compress-format', 'zstd'])
  progress(`  ${took()}; skopeo (the zstd images recompressed to gzip)`)
  for (const image of IMAGES) await skopeoCopy(`oci:${path.join(partial, 'zstd', image.name)}:${TAG}`, path.join(partial, 'skopeo', image.name), ['--dest-compress-format', 'gzip'])
  progress(`  ${took()}; docker (dockerd, docker-registry)`)
  const dockerTools = await buildDockerImages(partial, work)
  progress(`  ${took()}`)
  const tools = { ...dockerTools, umoci: tryRun('umoci', ['--version']), skopeo: tryRun('skopeo', ['--version']) }
  fs.writeFileSync(path.join(partial, 'tools.json'), `${JSON.stringify(tools)}\n`)
  fs.renameSync(partial, dir)
  fs.writeFileSync(marker, key)
  return tools
}
