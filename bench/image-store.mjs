#!/usr/bin/env node
// Image store: what issue 14 ("store format 2") must show, on related Debian images written by the
// producers people meet, in one run. For each producer, three images: a base, the base + python3, and
// the base re-debootstrapped + python3 (the rebuilt-base image). The producers:
//   umoci    umoci repack (as dedup-report builds its images): klauspost pgzip, 256 KiB blocks
//   skopeo   skopeo copy --dest-compress-format gzip of the zstd images: containers/image's pgzip
//   docker   dockerd (Debian's docker.io) import + build (FROM base, COPY the python3 files), docker push
//            to a loopback docker-registry (Go's compress/gzip), copied back with skopeo: the pushed blobs
//   zstd     skopeo copy --dest-compress-format zstd of the umoci images (klauspost zstd)
//
//   node bench/image-store.mjs [options]      (as root: runs bash bench/setup.sh --images for its corpora)
//
// Measured, per producer and in total, against what a registry holds and sends:
//   - stored bytes of the images in one store (every object) vs distinct compressed layer blobs;
//   - the first sync of each image into an S3 store holding the producer's previous ones (bytes copied
//     vs its new compressed layer bytes), the rebuilt-base image against what a registry mirror sends,
//     and the requests of a no-op re-sync, counted by a proxy in front of s3rver;
//   - the bytes a mount of the python image's rootfs view fetches before its first read;
//   - every image pulled back: `diff -r` against the layout pushed, `skopeo inspect` digests equal,
//     and how fast its blobs come back (regeneration, once the store holds recipes);
// and, on the debian-rootfs tree (10,300 entries), the tree objects a one-file edit writes and syncs.
// Prints a table and writes bench/results/image-store.json and .txt; bench/README.md says what each
// number means. The figures are byte and request counts, except the MB/s: a busy machine changes
// only those.

import fs from 'node:fs'
import path from 'node:path'
import {
  MB, benchDir, buildChangedNote, buildFingerprint, cleanupOnSignals, cliBuilt, contention, corpusMarker, defaultOut, failer, fmt, fmtInt,
  fsTypeAt, hostInfo, measureTree, msSince, nowNs, otherActivity, parseCommandLine, privateEnv, readOr, repo, runCommand, scanCorpus, snapdirBin,
  snapdirCommit, table, tail, tryRun, walk, writeResult,
} from './lib/common.mjs'
import { TAG, layoutLayers } from './lib/layouts.mjs'
import { CORPORA, DOCKER, IMAGES, PRODUCERS, imagesDir, prepareImages } from './lib/images.mjs'
import { mountNotes, mountsUnder, startFuseDaemon, stopAllDaemons, stopFuseDaemon } from './lib/mounts.mjs'
import { regenerateRecipes, storedRecipes } from './lib/regeneration.mjs'
import { S3_ENV, bucketLister, newCounts, startProxy, startS3rver, storeArea } from './lib/s3.mjs'

const TARGETS = { storedOverRegistry: 0.6, firstSyncOverNew: 1.05, rebuiltOverRegistry: 0.15, noopRequests: 1, editTreeBytes: 64 * 1024, regenMBps: 125 }
const BUCKET = 'bench'
// the file a one-file edit changes: small (inlined by format 1), present in every Debian root
const EDITED_FILE = 'etc/debian_version'

const usage = `usage: node bench/image-store.mjs [options]

  --rebuild-images  build the images again even when the cached ones match the corpora and tools
  --keep            keep the scratch directory (stores, s3rver's directory, pulls) for inspection
  --out FILE        JSON report (default bench/results/image-store.json; the table goes beside it as .txt)
  -h, --help        this text

Corpora: ${CORPORA.join(', ')} under $SNAPDIR_BENCH_DIR (default /var/tmp/snapdir-bench),
built or checked by running bash bench/setup.sh --images first (which also installs umoci, skopeo,
docker.io and docker-registry). The images are cached in $SNAPDIR_BENCH_DIR/image-store-images;
everything else goes into a fresh $SNAPDIR_BENCH_DIR/image-store-XXXXXX, deleted at the end.`

const fail = failer('image-store')

function parseOptions() {
  const values = parseCommandLine(
    { 'rebuild-images': { type: 'boolean' }, keep: { type: 'boolean' }, out: { type: 'string', default: defaultOut('image-store') } },
    usage,
    fail,
  )
  return { rebuildImages: values['rebuild-images'] ?? false, keep: values.keep ?? false, out: path.resolve(values.out) }
}

const run = (argv, { env = process.env } = {}) => runCommand(argv, { env, cwd: repo })
const corpus = (name) => path.join(benchDir, name)
const progress = (text) => process.stderr.write(`${text}\n`)

// ---------------------------------------------------------------------------------------------
// Stores, read as files

/** Every file of a store directory: relative path -> size. */
function storeFiles(root) {
  const files = new Map()
  if (!fs.existsSync(root)) return files
  for (const { path: p, st } of walk(root)) if (st.isFile()) files.set(path.relative(root, p), st.size)
  return files
}

/** Sizes by store area (chunks, trees, recipes, refs, config, other): { area: { objects, bytes } } plus total. */
function byArea(files) {
  const out = { total: { objects: 0, bytes: 0 } }
  for (const [key, size] of files) {
    const area = storeArea(key)
    out[area] ??= { objects: 0, bytes: 0 }
    out[area].objects++
    out[area].bytes += size
    out.total.objects++
    out.total.bytes += size
  }
  return out
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0)
/** The distinct layer blobs of a list of layers (by digest): { blobs, bytes }. */
function distinctBlobs(layers) {
  const m = new Map(layers.map((l) => [l.digest, l.size]))
  return { blobs: m.size, bytes: sum([...m.values()]) }
}

/** The last line of a --json command's stdout, parsed. */
function lastJson(label, stdout) {
  try {
    return JSON.parse(stdout.trim().split('\n').at(-1))
  } catch {
    throw new Error(`${label} printed ${JSON.stringify(stdout.slice(0, 500))}, expected a JSON line`)
  }
}

// ---------------------------------------------------------------------------------------------
// The measurements

async function pushAll(ctx) {
  for (const p of ctx.producers) {
    for (const img of p.images) {
      const r = await run([snapdirBin, 'push', '--json', '--store', ctx.store, '--name', `${p.name}-${img.name}`, img.layout], { env: ctx.env })
      const out = lastJson('snapdir push --json', r.stdout)
      img.id = out.id
      img.push = { wallMs: r.wallMs, summary: out }
      progress(`  pushed ${p.name}-${img.name}: ${out.id.slice(0, 12)} in ${fmt(r.wallMs / 1000)} s`)
    }
  }
}

async function syncImage(ctx, { id, to, label, from = ctx.store }) {
  const before = await ctx.list(to)
  ctx.proxy.counts = newCounts()
  const r = await run([snapdirBin, 'sync', '--json', '--id', id, '--from', from, '--to', `s3://${BUCKET}/${to}`, '--s3-endpoint', ctx.proxy.endpoint], { env: ctx.s3env })
  const counts = ctx.proxy.counts
  const after = await ctx.list(to)
  const summary = lastJson('snapdir sync --json', r.stdout)
  const appeared = new Map([...after].filter(([k]) => !before.has(k)))
  progress(`  ${label}: ${fmt(summary.bytes.copied / MB, 2)} MB copied, ${counts.requests} requests, ${fmt(r.wallMs / 1000)} s`)
  return { wallMs: r.wallMs, summary, requests: counts, appeared: byArea(appeared) }
}

/** Each producer's images synced in order into its own S3 store (prefix = the producer), then a no-op re-sync of the last. */
async function syncAll(ctx) {
  for (const p of ctx.producers) {
    const seen = new Set()
    for (const img of p.images) {
      const fresh = img.layers.filter((l) => !seen.has(l.digest))
      img.registryNew = distinctBlobs(fresh)
      for (const l of img.layers) seen.add(l.digest)
      img.sync = await syncImage(ctx, { id: img.id, to: p.name, label: `sync ${p.name}-${img.name}` })
      img.sync.overRegistry = img.sync.summary.bytes.copied / img.registryNew.bytes
    }
    const last = p.images.at(-1)
    p.noop = await syncImage(ctx, { id: last.id, to: p.name, label: `no-op re-sync ${p.name}-${last.name}` })
    if (p.noop.appeared.total.objects) ctx.notes.push(`${p.name}: the no-op re-sync added ${p.noop.appeared.total.objects} keys`)
    p.mirror = byArea(await ctx.list(p.name))
  }
}

/** Mounts a producer's python image (rootfs view) from its S3 store through the proxy: bytes fetched until mounted, and after walking every entry's metadata. */
async function mountBytes(ctx, p) {
  const img = p.images.find((i) => i.name === 'python')
  const dir = path.join(ctx.scratch, `mount-${p.name}`)
  const mnt = path.join(dir, 'mnt')
  fs.mkdirSync(mnt, { recursive: true })
  const copy = (c) => JSON.parse(JSON.stringify(c))
  ctx.proxy.counts = newCounts()
  const t0 = nowNs()
  const daemon = await startFuseDaemon({
    label: `snapdir mount ${p.name}-python`,
    argv: [snapdirBin, 'mount', '--store', `s3://${BUCKET}/${p.name}`, '--s3-endpoint', ctx.proxy.endpoint, '--id', img.id, '--view', 'rootfs', '--no-cache', '--json', mnt],
    mnt,
    env: ctx.s3env,
    log: path.join(dir, 'mount.log'),
    stdout: path.join(dir, 'mount.json'),
    expectLine: true,
  })
  const mountedMs = msSince(t0)
  const atMount = copy(ctx.proxy.counts)
  // every entry stat'ed, no file opened: what a container runtime's setup and `ls -lR` cost
  const walked = await run(['bash', '-c', 'find "$1" | wc -l', 'bash', path.join(mnt, 'rootfs')])
  const afterWalk = copy(ctx.proxy.counts)
  stopFuseDaemon(daemon)
  const counters = JSON.parse(readOr(path.join(dir, 'mount.json'), 'null'))
  const fetched = (c) => ({ requests: c.requests, bytes: c.responseBodyBytes, byArea: c.getBodyBytes })
  return { id: img.id, mountedMs, entries: Number(walked.stdout.trim()), atMount: fetched(atMount), afterWalk: fetched(afterWalk), counters }
}

/**
 * Pulls an image back out of the store: into a directory, compared with the layout pushed (`diff -r`,
 * and `skopeo inspect` of both), then as a tar to a pipe, timed, for the speed its blobs come back at.
 */
async function pullBack(ctx, p, img) {
  const dir = path.join(ctx.scratch, 'pulls', `${p.name}-${img.name}`)
  fs.mkdirSync(path.dirname(dir), { recursive: true })
  await run([snapdirBin, 'pull', '--store', ctx.store, '--id', img.id, dir], { env: ctx.env })
  let diff
  try {
    await run(['diff', '-r', img.layout, dir])
    diff = { identical: true }
  } catch (error) {
    diff = { identical: false, output: tail(error.message, 8) }
    ctx.notes.push(`${p.name}-${img.name}: the pulled layout differs from the pushed one: ${tail(error.message, 3)}`)
  }
  const inspect = async (layout) => {
    const j = JSON.parse((await run(['skopeo', 'inspect', `oci:${layout}:${TAG}`])).stdout)
    return { digest: j.Digest, layers: j.Layers }
  }
  const [a, b] = [await inspect(img.layout), await inspect(dir)]
  const inspectEqual = a.digest === b.digest && JSON.stringify(a.layers) === JSON.stringify(b.layers)
  if (!inspectEqual) ctx.notes.push(`${p.name}-${img.name}: skopeo inspect digests differ: ${a.digest} pushed, ${b.digest} pulled`)
  fs.rmSync(dir, { recursive: true, force: true })
  const layoutBytes = measureTree(img.layout).fileBytes
  const activity = otherActivity()
  const t = await runCommand(['bash', '-c', 'set -o pipefail; "$1" pull --store "$2" --id "$3" --tar - | wc -c', 'bash', snapdirBin, ctx.store, img.id], { env: ctx.env, cwd: repo, rusage: true })
  const cpuS = t.userS === null ? null : t.userS + t.sysS
  const sample = { wallMs: t.wallMs, cpuS, ...activity(cpuS) }
  return { diff, inspectEqual, digest: a.digest, layoutBytes, tarBytes: Number(t.stdout.trim()), tarMs: t.wallMs, sample, mbPerS: layoutBytes / MB / (t.wallMs / 1000) }
}

/**
 * Regeneration speed: every recipe in the store (recipes/XX/ID) regenerated once, timed one by one;
 * { blobs: [{ id, digest, compression, bytes, ms }] }, or { reason } when there is nothing to measure.
 */
async function regeneration(ctx) {
  return regenerateRecipes({ store: ctx.store, ids: storedRecipes(ctx.store), env: ctx.env })
}

// Run in a child process over dist/ as built: each gzip layer blob decompressed, then compressed again
// by every candidate encoder its header allows (oci/compress candidatesFor, in that order), the output
// compared with the blob as it streams and a candidate dropped at its first differing byte, as push
// does. The input goes in 1 MiB writes (a multiple of 32 KiB: for Go's levels 2..9 the same bytes as one
// large write, docs/go-flate.md). Prints one JSON line: per blob, the candidate that gave it back byte
// for byte (or none), how many were tried, and the seconds that candidate took for the whole blob.
const ENCODER_SCRIPT = `
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import zlib from 'node:zlib'
const [dist, ...blobs] = process.argv.slice(1)
const load = (p) => import(pathToFileURL(path.join(dist, p)).href)
const { candidatesFor, createDeflateEncoder } = await load('oci/compress/compressor.js')
const { createGzipMember, isGzipHeaderProblem, parseGzipHeader } = await load('oci/compress/gzip-member.js')
const WRITE = 1 << 20
const out = []
for (const file of blobs) {
  const blob = fs.readFileSync(file)
  const header = parseGzipHeader(blob)
  if (isGzipHeaderProblem(header)) { out.push({ file, bytes: blob.length, hit: null, tried: 0, why: header.problem }); continue }
  const tar = zlib.gunzipSync(blob)
  const candidates = candidatesFor(header)
  let hit = null
  let tried = 0
  let ms = null
  let cpuMs = null
  for (const params of candidates) {
    tried++
    const t0 = process.hrtime.bigint()
    const c0 = process.cpuUsage()
    const member = createGzipMember({ headerBytes: header.headerBytes, encoder: createDeflateEncoder(params) })
    let at = 0
    let same = true
    const check = (piece) => {
      if (!same) return
      if (at + piece.length > blob.length || !piece.equals(blob.subarray(at, at + piece.length))) same = false
      at += piece.length
    }
    for (let i = 0; i < tar.length && same; i += WRITE) check(member.write(tar.subarray(i, i + WRITE)))
    if (same) check(member.end())
    if (same && at === blob.length) {
      const c = process.cpuUsage(c0)
      hit = params
      ms = Number(process.hrtime.bigint() - t0) / 1e6
      cpuMs = (c.user + c.system) / 1000
      break
    }
  }
  out.push({ file, bytes: blob.length, tarBytes: tar.length, header: { mtime: header.mtime, xfl: header.xfl, os: header.os }, hit, tried, candidates: candidates.length, ms, cpuMs })
}
process.stdout.write(JSON.stringify(out) + '\\n')
`

/**
 * The compressors alone, before recipes exist (or beside them): for each producer's distinct gzip
 * layer blobs, whether one of snapdir's encoders gives the blob back byte for byte from its tar, and
 * how fast (blob bytes / seconds of that encoder over the whole tar, from memory). { reason } when
 * dist/ has no encoders.
 */
async function encoderCheck(ctx) {
  if (!fs.existsSync(path.join(repo, 'dist/oci/compress/compressor.js'))) return { reason: 'dist/oci/compress/compressor.js is missing (no encoders in this build)' }
  const byProducer = {}
  for (const p of ctx.producers) {
    const blobs = [...new Map(p.images.flatMap((i) => layoutLayers(i.layout)).map((l) => [l.digest, l])).values()]
    const gzip = blobs.filter((l) => !l.mediaType || /gzip/.test(l.mediaType))
    if (gzip.length === 0) {
      byProducer[p.name] = { reason: 'no gzip layers' }
      continue
    }
    const activity = otherActivity()
    try {
      const r = await runCommand([process.execPath, '--input-type=module', '-e', ENCODER_SCRIPT, path.join(repo, 'dist'), ...gzip.map((l) => l.blob)], { env: ctx.env, cwd: repo, rusage: true })
      const results = lastJson('the encoder script', r.stdout).map(({ file: _, ...x }, i) => ({ digest: gzip[i].digest, ...x }))
      const hits = results.filter((x) => x.hit)
      byProducer[p.name] = {
        blobs: results,
        hits: hits.length,
        of: results.length,
        mbPerS: hits.length ? sum(hits.map((x) => x.bytes)) / MB / (sum(hits.map((x) => x.ms)) / 1000) : null,
        // per CPU second (all the process's threads): what the encoder costs, whatever else the machine does
        mbPerCpuS: hits.length ? sum(hits.map((x) => x.bytes)) / MB / (sum(hits.map((x) => x.cpuMs)) / 1000) : null,
        sample: { wallMs: r.wallMs, cpuS: r.userS + r.sysS, ...activity(r.userS === null ? null : r.userS + r.sysS) },
      }
    } catch (error) {
      byProducer[p.name] = { reason: `the encoder script failed: ${tail(error.message, 3)}` }
    }
    const e = byProducer[p.name]
    progress(`  ${p.name}: ${e.reason ?? `${e.hits}/${e.of} blobs byte-exact, ${fmt(e.mbPerS)} MB/s, ${fmt(e.mbPerCpuS)} MB per CPU s`}`)
  }
  return byProducer
}

/**
 * A one-file edit of the debian-rootfs tree: the tree and a copy with EDITED_FILE changed are pushed
 * into one fresh store (what the second push writes, by area) and synced in turn to an S3 store
 * (what the second sync copies and what appears there).
 */
async function oneFileEdit(ctx) {
  const dir = path.join(ctx.scratch, 'edit')
  const store = path.join(dir, 'store')
  const copy = path.join(dir, 'tree')
  fs.mkdirSync(dir, { recursive: true })
  await run(['cp', '-a', corpus('debian-rootfs'), copy])
  const counts = scanCorpus(copy)
  const push = async () => {
    const r = await run([snapdirBin, 'push', '--store', store, copy], { env: ctx.env })
    return { id: r.stdout.trim(), wallMs: r.wallMs }
  }
  const first = await push()
  const before = storeFiles(store)
  const edited = path.join(copy, EDITED_FILE)
  const sizeBefore = fs.statSync(edited).size
  fs.appendFileSync(edited, 'edited\n')
  const second = await push()
  const written = new Map([...storeFiles(store)].filter(([k]) => !before.has(k)))
  const syncFirst = await syncImage(ctx, { id: first.id, to: 'edit', from: store, label: 'sync of the debian-rootfs tree' })
  const syncSecond = await syncImage(ctx, { id: second.id, to: 'edit', from: store, label: `sync of the tree with ${EDITED_FILE} edited` })
  return {
    tree: 'debian-rootfs',
    entries: counts.entries,
    file: EDITED_FILE,
    fileBytes: { before: sizeBefore, after: fs.statSync(edited).size },
    ids: [first.id, second.id],
    firstPush: { wallMs: first.wallMs, stored: byArea(before) },
    written: byArea(written),
    sync: { first: syncFirst, edit: syncSecond },
  }
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const opts = parseOptions()
  progress(`bash bench/setup.sh ${CORPORA.join(' ')} --images`)
  try {
    await runCommand(['bash', path.join(repo, 'bench/setup.sh'), ...CORPORA, '--images'], { cwd: repo })
  } catch (error) {
    fail(`bench/setup.sh failed (it needs root and the Debian mirror): ${error.message}`)
  }
  const problems = []
  if (!cliBuilt()) problems.push('bin/snapdir or dist/bundle is missing: run npm run build')
  for (const t of ['umoci', 'skopeo', 'dockerd', 'docker-registry', DOCKER, 'diff']) if (tryRun('sh', ['-c', `command -v ${t}`]) === null) problems.push(`${t} is not installed (bash bench/setup.sh --images)`)
  for (const mod of ['s3rver', '@aws-sdk/client-s3']) if (!fs.existsSync(path.join(repo, 'node_modules', mod))) problems.push(`${mod} is not installed: run npm ci`)
  if (problems.length) fail(problems.join('\n'))

  // Beside the corpora, on disk, deleted only at the end: ext4 here creates files slowly for a while after many were deleted.
  const scratch = fs.mkdtempSync(path.join(benchDir, 'image-store-'))
  let server = null
  let proxy = null
  let list = null
  const cleanupSync = () => {
    stopAllDaemons()
    const mounted = mountsUnder(scratch)
    if (opts.keep) progress(`kept ${scratch}`)
    else if (mounted.length) progress(`not deleting ${scratch}: ${mounted.map((m) => m.mountPoint).join(', ')} still mounted`)
    else fs.rmSync(scratch, { recursive: true, force: true })
  }
  cleanupOnSignals('image-store', cleanupSync)

  const buildBefore = buildFingerprint()
  const notes = []
  try {
        const tools = await prepareImages(imagesDir, scratch, opts.rebuildImages)
    const producers = PRODUCERS.map((p) => ({
      ...p,
      images: IMAGES.map((i) => {
        const layout = path.join(imagesDir, p.name, i.name)
        return { ...i, layout, layers: layoutLayers(layout).map(({ blob: _, ...l }) => l) }
      }),
    }))
    const home = path.join(scratch, 'home')
    fs.mkdirSync(home)
    const env = privateEnv(home)
    for (const k of ['AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_DEFAULT_REGION', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE']) delete env[k]
    const store = path.join(scratch, 'store')
    const ctx = { scratch, store, env, producers, notes }

    progress('pushing every image into one store')
    await pushAll(ctx)
    const stored = byArea(storeFiles(store))

    server = await startS3rver({ directory: path.join(scratch, 's3rver'), bucket: BUCKET })
    // several stores share the bucket, each under its own prefix (its first key component)
    const prefixOf = (url) => {
      const u = new URL(url, 'http://proxy')
      const key = u.pathname.split('/').slice(2).map(decodeURIComponent).join('/') || (u.searchParams.get('prefix') ?? '')
      return key.split('/')[0]
    }
    proxy = await startProxy(server.endpoint, { prefixOf })
    list = await bucketLister(server.endpoint, BUCKET)
    Object.assign(ctx, { proxy, list, s3env: { ...env, ...S3_ENV, AWS_ENDPOINT_URL: proxy.endpoint } })

    progress(`syncing each producer's images into s3://${BUCKET}/PRODUCER (s3rver ${server.endpoint}, proxy ${proxy.endpoint})`)
    await syncAll(ctx)

    progress('mounting each python image (rootfs view) from its S3 store')
    for (const p of producers) {
      p.mount = await mountBytes(ctx, p)
      progress(`  ${p.name}: ${fmt(p.mount.atMount.bytes / MB, 2)} MB fetched until mounted, ${fmt(p.mount.afterWalk.bytes / MB, 2)} MB after walking ${fmtInt(p.mount.entries)} entries`)
    }

    progress('one-file edit of the debian-rootfs tree')
    const edit = await oneFileEdit(ctx)

    progress('pulling every image back (diff -r, skopeo inspect, pull --tar speed)')
    const recipes = stored.recipes?.objects ?? 0
    for (const p of producers) {
      for (const img of p.images) {
        img.pull = await pullBack(ctx, p, img)
        progress(`  ${p.name}-${img.name}: ${img.pull.diff.identical && img.pull.inspectEqual ? 'identical' : 'DIFFERS'}, ${fmt(img.pull.mbPerS)} MB/s`)
      }
      const samples = p.images.map((i) => i.pull.sample)
      p.pullMBps = sum(p.images.map((i) => i.pull.layoutBytes)) / MB / (sum(p.images.map((i) => i.pull.tarMs)) / 1000)
      const busy = contention(`${p.name} pull --tar`, samples)
      if (busy) notes.push(busy)
    }

    progress('regenerating every recipe once')
    const regen = await regeneration(ctx)
    if (regen.reason) progress(`  n/a: ${regen.reason}`)
    const regenByDigest = new Map((regen.blobs ?? []).map((b) => [b.digest, b]))
    for (const p of producers) {
      const digests = [...new Set(p.images.flatMap((i) => i.layers.map((l) => l.digest)))]
      const hits = digests.map((d) => regenByDigest.get(d)).filter(Boolean)
      p.recipes = { layers: digests.length, recipes: hits.length, compression: [...new Set(hits.map((b) => JSON.stringify(b.compression)))].map((c) => JSON.parse(c)) }
      p.regenMBps = hits.length ? sum(hits.map((b) => b.bytes)) / MB / (sum(hits.map((b) => b.ms)) / 1000) : null
      p.regenMBperCpuS = hits.length ? sum(hits.map((b) => b.bytes)) / MB / (sum(hits.map((b) => b.cpuMs)) / 1000) : null
    }
    if (regen.sample) {
      const busy = contention('regeneration', [regen.sample])
      if (busy) notes.push(busy)
    }

    progress('the encoders alone: each gzip layer blob compressed again from its tar')
    const encoders = await encoderCheck(ctx)
    for (const [name, e] of Object.entries(encoders.reason ? {} : encoders)) {
      const busy = e.sample ? contention(`${name} encoder`, [e.sample]) : null
      if (busy) notes.push(busy)
    }

    const allLayers = producers.flatMap((p) => p.images.flatMap((i) => i.layers))
    let result = {
      schema: 1,
      date: new Date().toISOString(),
      machine: { ...hostInfo(), fsType: fsTypeAt(benchDir), snapdirCommit: snapdirCommit(), tools },
      corpora: Object.fromEntries(CORPORA.map((c) => [c, corpusMarker(corpus(c))])),
      targets: TARGETS,
      storeFormat: recipes ? 'recipes present' : 'no recipes',
      recipes,
      encoders,
      regeneration: regen.reason ? { reason: regen.reason } : { blobs: regen.blobs, sample: regen.sample },
      registry: { total: distinctBlobs(allLayers) },
      stored,
      producers: producers.map((p) => ({
        name: p.name,
        what: p.what,
        registry: distinctBlobs(p.images.flatMap((i) => i.layers)),
        mirror: p.mirror,
        noop: { requests: p.noop.requests.requests, byRequest: p.noop.requests.byRequest, summary: p.noop.summary },
        mount: p.mount,
        pullMBps: p.pullMBps,
        recipes: p.recipes,
        regenMBps: p.regenMBps,
        regenMBperCpuS: p.regenMBperCpuS,
        images: p.images.map((i) => ({
          name: i.name,
          what: i.what,
          id: i.id,
          layers: i.layers,
          push: i.push,
          registryNew: i.registryNew,
          sync: { wallMs: i.sync.wallMs, summary: i.sync.summary, overRegistry: i.sync.overRegistry, requests: i.sync.requests, appeared: i.sync.appeared },
          pull: i.pull,
        })),
      })),
      edit,
      build: buildFingerprint(),
      notes,
    }
    const changed = buildChangedNote(buildBefore, result.build)
    if (changed) notes.push(changed)
    notes.push(...mountNotes)
    // written before the scratch directory goes: deleting a few GB takes minutes here
    result = withoutMachinePaths(result, scratch)
    writeResult(opts.out, result, report)
    fs.writeFileSync(`${opts.out.replace(/\.json$/, '')}.txt`, `${report(result)}\n`)
  } finally {
    await proxy?.close()
    await server?.close()
    list?.close()
    progress(`deleting ${scratch}`)
    cleanupSync()
  }
}

/** The result with this machine's paths (scratch, corpora, checkout, temp) replaced by names: a committed report names no machine. */
function withoutMachinePaths(result, scratch) {
  const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  let text = JSON.stringify(result)
  for (const [p, name] of [[scratch, '$SCRATCH'], [benchDir, '$SNAPDIR_BENCH_DIR'], [repo, '$REPO'], ['/tmp', '$TMP']]) text = text.replace(new RegExp(escape(p), 'g'), name)
  return JSON.parse(text)
}

// ---------------------------------------------------------------------------------------------
// Report

const mb = (x, digits = 1) => fmt(x / MB, digits)
const KiB = 1024
/** The tree objects among objects by area: all but file content (chunks), refs and the config (trees/ in format 1; trees/ and tree-parts/ in format 2). */
const treeObjectBytes = (areas) => sum(Object.entries(areas).filter(([k]) => !['total', 'chunks', 'refs', 'config'].includes(k)).map(([, v]) => v.bytes))
const mark = (ok) => (ok ? '' : ' !')
/** The encoder check's cell for a producer: `hits` (k/n blobs byte-exact) or `speed` (MB/s, ! under the target), 'n/a' without one. */
function encoderCell(encoders, name, what) {
  const e = encoders?.[name]
  if (!e || e.reason) return 'n/a'
  if (what === 'hits') return `${e.hits}/${e.of}`
  return typeof e.mbPerS === 'number' ? `${fmt(e.mbPerS, 0)} (${fmt(e.mbPerCpuS, 0)}/CPU s)${mark(e.mbPerS >= TARGETS.regenMBps)}` : 'n/a'
}

function report(r) {
  const t = r.targets
  const lines = []
  lines.push(`image store (issue 14), ${r.date}; snapdir ${r.machine.snapdirCommit?.slice(0, 7) ?? '?'}, store: ${r.storeFormat}; MB = 10^6 bytes`)
  lines.push(`tools: ${Object.entries(r.machine.tools ?? {}).map(([k, v]) => `${k} ${v}`).join('; ')}`)
  lines.push('')
  const rows = []
  for (const p of r.producers) {
    const [base, python, rebuilt] = p.images
    rows.push([
      p.name,
      `${mb(p.registry.bytes)}`,
      `${mb(p.mirror.total.bytes)}`,
      `${fmt(p.mirror.total.bytes / p.registry.bytes, 2)}${mark(p.mirror.total.bytes / p.registry.bytes <= t.storedOverRegistry)}`,
      `${fmt(base.sync.overRegistry, 2)}${mark(base.sync.overRegistry <= t.firstSyncOverNew)}`,
      `${fmt(python.sync.overRegistry, 2)}${mark(python.sync.overRegistry <= t.firstSyncOverNew)}`,
      `${mb(rebuilt.registryNew.bytes)} / ${mb(rebuilt.sync.summary.bytes.copied)}`,
      `${fmt(rebuilt.sync.overRegistry, 2)}${mark(rebuilt.sync.overRegistry <= t.rebuiltOverRegistry)}`,
      `${p.noop.requests}${mark(p.noop.requests <= t.noopRequests)}`,
      `${mb(p.mount.atMount.bytes, 2)} / ${mb(p.mount.afterWalk.bytes, 2)}`,
      p.images.every((i) => i.pull.diff.identical && i.pull.inspectEqual) ? 'yes' : 'NO',
      encoderCell(r.encoders, p.name, 'hits'),
      encoderCell(r.encoders, p.name, 'speed'),
      `${p.recipes.recipes}/${p.recipes.layers}`,
      typeof p.regenMBps === 'number' ? `${fmt(p.regenMBps, 0)} (${fmt(p.regenMBperCpuS, 0)}/CPU s)${mark(p.regenMBps >= t.regenMBps)}` : 'n/a',
      fmt(p.pullMBps, 0),
    ])
  }
  const totalStored = r.stored.total.bytes
  rows.push(['all (one store)', mb(r.registry.total.bytes), mb(totalStored), `${fmt(totalStored / r.registry.total.bytes, 2)}${mark(totalStored / r.registry.total.bytes <= t.storedOverRegistry)}`, '', '', '', '', '', '', '', '', '', '', '', ''])
  lines.push(table(
    ['producer', 'registry MB', 'stored MB', 'stored/reg', 'sync base/new', 'sync python/new', 'rebuilt: reg / copied MB', 'rebuilt/reg', 'no-op req', 'mount MB (mounted / walked)', 'pull identical', 'gzip exact', 'encoder MB/s', 'recipes', 'regen MB/s', 'pull MB/s'],
    rows,
  ))
  lines.push(`targets: stored/registry <= ${t.storedOverRegistry}; first sync <= ${t.firstSyncOverNew}x new layer bytes; rebuilt <= ${t.rebuiltOverRegistry}x a registry; no-op ${t.noopRequests} request; regeneration >= ${t.regenMBps} MB/s. ! marks a miss`)
  if (r.encoders?.reason) lines.push(`gzip exact, encoder MB/s: n/a, ${r.encoders.reason}`)
  for (const p of r.producers) {
    const e = r.encoders?.[p.name]
    if (e?.blobs) lines.push(`encoders ${p.name}: ${e.blobs.map((b) => `${b.digest.slice(7, 19)} ${b.hit ? `${b.hit.family} level ${b.hit.level}${b.hit.blockSize ? ` blocks ${b.hit.blockSize >> 10} KiB` : ''}, candidate ${b.tried} of ${b.candidates}, ${fmt(b.bytes / MB / (b.ms / 1000))} MB/s, ${fmt(b.bytes / MB / (b.cpuMs / 1000))} per CPU s` : `none of ${b.candidates} candidates`}`).join('; ')}`)
  }
  if (r.regeneration.reason) lines.push(`regen MB/s: n/a, ${r.regeneration.reason}; pull MB/s is reading the blobs back as stored`)
  for (const p of r.producers) if (p.recipes.recipes) lines.push(`recipes ${p.name}: ${p.recipes.recipes} of ${p.recipes.layers} layer blobs, ${p.recipes.compression.map((c) => JSON.stringify(c)).join(', ')}`)
  lines.push('')
  lines.push('per image (sync into the producer\'s S3 store holding its earlier images):')
  const irows = []
  for (const p of r.producers) {
    for (const i of p.images) {
      irows.push([`${p.name}-${i.name}`, i.layers.length, mb(i.layers.reduce((a, l) => a + l.size, 0)), mb(i.registryNew.bytes, 2), mb(i.sync.summary.bytes.copied, 2), fmt(i.sync.overRegistry, 3), fmtInt(i.sync.requests.requests), mb(i.sync.requests.requestBodyBytes, 2), i.pull.diff.identical ? 'same' : 'DIFF', i.pull.inspectEqual ? 'equal' : 'DIFF', fmt(i.pull.mbPerS, 0)])
    }
  }
  lines.push(table(['image', 'layers', 'blobs MB', 'new blobs MB', 'copied MB', 'copied/new', 'requests', 'uploaded MB', 'diff -r', 'inspect', 'pull MB/s'], irows))
  lines.push('')
  const st = r.stored
  lines.push(`one store, all ${r.producers.length * r.producers[0].images.length} images: ${Object.entries(st).filter(([k]) => k !== 'total').map(([k, v]) => `${k} ${mb(v.bytes)} MB (${fmtInt(v.objects)})`).join(', ')}`)
  for (const p of r.producers) {
    const m = p.mount
    lines.push(`mount ${p.name}-python --view rootfs: ${fmtInt(m.atMount.requests)} requests, ${mb(m.atMount.bytes, 2)} MB until mounted (${fmt(m.mountedMs / 1000)} s); ${fmtInt(m.afterWalk.requests)} requests, ${mb(m.afterWalk.bytes, 2)} MB after stat-ing all ${fmtInt(m.entries)} entries`)
  }
  const e = r.edit
  const treeWritten = treeObjectBytes(e.written)
  const treeSynced = treeObjectBytes(e.sync.edit.appeared)
  lines.push('')
  lines.push(`one-file edit of ${e.tree} (${fmtInt(e.entries)} entries; ${e.file} ${e.fileBytes.before} -> ${e.fileBytes.after} bytes):`)
  lines.push(`  tree objects written ${fmt(treeWritten / KiB, 1)} KiB${mark(treeWritten <= t.editTreeBytes)}, synced ${fmt(treeSynced / KiB, 1)} KiB${mark(treeSynced <= t.editTreeBytes)} (target <= ${t.editTreeBytes / KiB} KiB)`)
  lines.push(`  all written: ${Object.entries(e.written).filter(([k]) => k !== 'total').map(([k, v]) => `${k} ${fmt(v.bytes / KiB, 1)} KiB (${v.objects})`).join(', ')}; sync copied ${fmt(e.sync.edit.summary.bytes.copied / KiB, 1)} KiB in ${e.sync.edit.requests.requests} requests`)
  lines.push(`  the whole first push: ${Object.entries(e.firstPush.stored).filter(([k]) => k !== 'total').map(([k, v]) => `${k} ${mb(v.bytes, 2)} MB (${v.objects})`).join(', ')}`)
  for (const n of r.notes) lines.push(`warning: ${n}`)
  return lines.join('\n')
}

main().catch((error) => {
  stopAllDaemons()
  fail(error.stack ?? String(error))
})
