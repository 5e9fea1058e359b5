#!/usr/bin/env node
// snapdir serve against docker-registry: what issue 17 must show. The related Debian images
// (image-store's: a base, the base + python3, the rebuilt base + python3) of each producer are pushed
// with `skopeo copy --preserve-digests oci:… docker://…` into two servers on loopback:
//   registry  docker-registry 2.8, filesystem storage in the scratch directory
//   serve     `snapdir serve --store DIR` on an empty directory store (so the images arrive as any
//             push through serve stores them: layers expanded, kept as recipes)
// Then:
//   stored bytes  the registry's storage directory against the whole snapdir store (every object,
//                 refs included; serve's --state-dir of uploads lies outside it and is empty by then)
//   pull          `skopeo copy docker://HOST/PRODUCER/debian:python oci:DIR` from each server: one
//                 client, then CLIENTS at once (one skopeo process each, each to its own directory),
//                 the servers in turns (registry first in odd runs, serve first in even ones), the page
//                 cache dropped before each run when root. Time until the last client is done, and
//                 throughput = clients x the image's blob bytes (config + layers, as the registry
//                 sends them) / that time.
//
//   node bench/serve.mjs [options]   (images: bash bench/setup.sh --all --images, as image-store.mjs)
//
// Writes bench/results/serve.json and .txt; bench/README.md says what each number means.

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {
  MB, benchDir, buildChangedNote, buildFingerprint, cleanupOnSignals, cliBuilt, contention, defaultOut, dropCaches, dropCachesProblem, failer, fmt, hostInfo,
  measureTree, median, otherActivity, parseCommandLine, parseRuns, privateEnv, runCommand, settle, snapdirBin, snapdirCommit, table, tryRun, writeResult,
} from './lib/common.mjs'
import { CORPORA, IMAGES, PRODUCERS, imagesDir, prepareImages } from './lib/images.mjs'
import { TAG } from './lib/layouts.mjs'
import { cpuSeconds, startRegistry, startServe } from './lib/servers.mjs'

const SERVERS = ['registry', 'serve']
const DEFAULT_PRODUCERS = ['umoci', 'docker']
const TARGETS = { throughputServeOverRegistry: 0.8, storageServeOverRegistry: 0.6 }
const repoOf = (producer) => `${producer}/debian`

const usage = `usage: node bench/serve.mjs [options]

  --runs N             runs of each pull (servers in turns), medians reported (default 3)
  --clients N          the concurrent pull: N skopeo processes at once (default 8; the single pull always runs)
  --producers LIST     the image sets pushed to both servers, a subset of ${PRODUCERS.map((p) => p.name).join(',')} (default ${DEFAULT_PRODUCERS.join(',')})
  --pull PRODUCER      whose python image is pulled (default the first of --producers)
  --serve-args ARGS    more options for snapdir serve, space-separated (e.g. a cache to try)
  --rebuild-images     build the images again even when the cached ones match the corpora and tools
  --keep               keep the scratch directory (registry storage, store, pulled layouts)
  --out FILE           JSON report (default bench/results/serve.json; the table goes beside it as .txt)
  -h, --help           this text

Images: $SNAPDIR_BENCH_DIR/image-store-images (default /var/tmp/snapdir-bench), built from the corpora
${CORPORA.join(', ')} (bash bench/setup.sh --all --images) on first use, as image-store.mjs builds them.
Everything else goes into a fresh $SNAPDIR_BENCH_DIR/serve-XXXXXX, deleted at the end.`

const fail = failer('serve')
const progress = (text) => process.stderr.write(`${text}\n`)

function parseOptions() {
  const values = parseCommandLine(
    {
      runs: { type: 'string', default: '3' },
      clients: { type: 'string', default: '8' },
      producers: { type: 'string' },
      pull: { type: 'string' },
      'serve-args': { type: 'string', default: '' },
      'rebuild-images': { type: 'boolean' },
      keep: { type: 'boolean' },
      out: { type: 'string', default: defaultOut('serve') },
    },
    usage,
    fail,
  )
  const known = PRODUCERS.map((p) => p.name)
  const producers = values.producers === undefined ? DEFAULT_PRODUCERS : values.producers.split(',').map((s) => s.trim()).filter(Boolean)
  for (const p of producers) if (!known.includes(p)) fail(`--producers: unknown producer '${p}', expected some of ${known.join(',')}`, 2)
  if (producers.length === 0) fail('--producers: empty list', 2)
  const pull = values.pull ?? producers[0]
  if (!producers.includes(pull)) fail(`--pull ${pull}: not one of --producers (${producers.join(',')})`, 2)
  const clients = Number(values.clients)
  if (!Number.isInteger(clients) || clients < 2 || clients > 64) fail(`--clients ${values.clients}: expected an integer 2..64`, 2)
  return {
    runs: parseRuns(values.runs, fail),
    clients,
    producers,
    pull,
    serveArgs: values['serve-args'].split(/\s+/).filter(Boolean),
    rebuildImages: values['rebuild-images'] ?? false,
    keep: values.keep ?? false,
    out: path.resolve(values.out),
  }
}

/** The digest `skopeo inspect` gives for `ref` (docker://…, plain HTTP). */
async function remoteDigest(ref, env) {
  return (await runCommand(['skopeo', 'inspect', '--tls-verify=false', '--format', '{{.Digest}}', ref], { env })).stdout.trim()
}

/** The manifest digest and blob bytes (config + layers) of the only image of an OCI layout. */
function layoutImage(layout) {
  const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'))
  const digest = readJson(path.join(layout, 'index.json')).manifests[0].digest
  const manifest = readJson(path.join(layout, 'blobs', ...digest.split(':')))
  return { digest, layers: manifest.layers.length, blobBytes: manifest.config.size + manifest.layers.reduce((a, l) => a + l.size, 0) }
}

/**
 * One pull run: `clients` skopeo processes at once copying `ref` into their own fresh layouts under
 * `dir`. Wall time until the last one is done, the skopeo CPU seconds (GNU time), the server's CPU
 * seconds, what else the machine did; every pulled layout must name `digest`.
 */
async function pullRun({ ref, dir, clients, digest, server, env }) {
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  if (dropCachesProblem() === null) dropCaches()
  else settle()
  const cpu0 = cpuSeconds(server.child.pid)
  const activity = otherActivity()
  const t0 = Date.now()
  const runs = await Promise.all(
    Array.from({ length: clients }, (_, i) => runCommand(['skopeo', 'copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${path.join(dir, String(i))}:${TAG}`], { env, rusage: true })),
  )
  const wallMs = Date.now() - t0
  const serverCpuS = cpuSeconds(server.child.pid) - cpu0
  const clientCpuS = runs.reduce((a, r) => a + (r.userS ?? 0) + (r.sysS ?? 0), 0)
  for (let i = 0; i < clients; i++) {
    const got = layoutImage(path.join(dir, String(i))).digest
    if (got !== digest) throw new Error(`client ${i} pulled ${got} from ${ref}, expected ${digest}`)
  }
  fs.rmSync(dir, { recursive: true, force: true })
  return { wallMs, serverCpuS, clientCpuS, ...activity(clientCpuS + serverCpuS) }
}

async function main() {
  const opts = parseOptions()
  const problems = []
  for (const t of ['skopeo', 'docker-registry', 'umoci', 'dockerd']) if (tryRun('sh', ['-c', `command -v ${t}`]) === null) problems.push(`${t} is not installed (bash bench/setup.sh --images)`)
  for (const c of CORPORA) if (!fs.existsSync(path.join(benchDir, `${c}.complete`))) problems.push(`corpus ${c} is not built (bash bench/setup.sh --all --images)`)
  if (!cliBuilt()) problems.push('bin/snapdir or dist/bundle is missing: run npm run build')
  if (problems.length) fail(problems.join('\n'))
  const scratch = fs.mkdtempSync(path.join(benchDir, 'serve-'))
  const closers = []
  const cleanup = () => {
    if (opts.keep) progress(`kept ${scratch}`)
    else fs.rmSync(scratch, { recursive: true, force: true })
  }
  cleanupOnSignals('serve', cleanup)
  const notes = []
  const cold = dropCachesProblem()
  if (cold) notes.push(`page cache not dropped before the pulls (${cold}): both servers read from a warm cache`)
  try {
    const tools = await prepareImages(imagesDir, path.join(scratch, 'images-work'), opts.rebuildImages)
    const env = privateEnv(path.join(scratch, 'home'))
    const registry = await startRegistry(path.join(scratch, 'registry'))
    closers.push(() => registry.stop())
    const store = path.join(scratch, 'store')
    fs.mkdirSync(store)
    const serveArgs = ['--state-dir', path.join(scratch, 'serve-state'), ...opts.serveArgs]
    const startServeHere = () => startServe(store, { log: path.join(scratch, 'serve.log'), extra: serveArgs, env })
    const servers = { registry, serve: await startServeHere() }
    closers.push(() => servers.serve.stop())
    const fingerprint = buildFingerprint()

    // the images into both servers, producer by producer; the stored bytes after each
    const images = {}
    const storage = []
    const pushS = { registry: 0, serve: 0 }
    for (const producer of opts.producers) {
      images[producer] = {}
      for (const { name: tag } of IMAGES) {
        const layout = path.join(imagesDir, producer, tag)
        const image = layoutImage(layout)
        images[producer][tag] = image
        for (const name of SERVERS) {
          const ref = `${servers[name].host}/${repoOf(producer)}:${tag}`
          progress(`push ${producer}/${tag} to ${name}`)
          const r = await runCommand(['skopeo', 'copy', '--quiet', '--preserve-digests', '--dest-tls-verify=false', `oci:${layout}:${TAG}`, `docker://${ref}`], { env })
          pushS[name] += r.wallMs / 1000
          const digest = await remoteDigest(`docker://${ref}`, env)
          if (digest !== image.digest) throw new Error(`${name} holds ${digest} for ${ref}, the layout ${image.digest}`)
        }
      }
      settle()
      const registryTree = measureTree(path.join(scratch, 'registry', 'storage'))
      const storeTree = measureTree(store)
      storage.push({ producers: opts.producers.slice(0, storage.length + 1), registry: registryTree, serve: storeTree, ratio: storeTree.duApparentBytes / registryTree.duApparentBytes })
    }

    // the pulls
    const pulled = images[opts.pull].python
    const repoName = repoOf(opts.pull)
    const counts = [1, opts.clients]
    const samples = Object.fromEntries(counts.map((n) => [n, { registry: [], serve: [] }]))
    for (let i = 0; i < opts.runs; i++) {
      for (const n of counts) {
        const order = i % 2 === 0 ? SERVERS : [...SERVERS].reverse()
        for (const name of order) {
          const sample = await pullRun({ ref: `${servers[name].host}/${repoName}:python`, dir: path.join(scratch, 'pulled'), clients: n, digest: pulled.digest, server: servers[name].server, env })
          samples[n][name].push(sample)
          progress(`pull run ${i + 1}/${opts.runs}, ${n} client${n > 1 ? 's' : ''}, ${name}: ${fmt(sample.wallMs / 1000, 2)} s, ${fmt((n * pulled.blobBytes) / MB / (sample.wallMs / 1000), 1)} MB/s, server CPU ${fmt(sample.serverCpuS, 2)} s`)
        }
      }
    }
    const pulls = counts.map((n) => {
      const row = { clients: n }
      for (const name of SERVERS) {
        const s = samples[n][name]
        const wallS = median(s.map((x) => x.wallMs / 1000))
        row[name] = { wallS, mbPerS: (n * pulled.blobBytes) / MB / wallS, serverCpuS: median(s.map((x) => x.serverCpuS)), clientCpuS: median(s.map((x) => x.clientCpuS)), samples: s.map((x) => x.wallMs / 1000) }
      }
      row.throughputRatio = row.serve.mbPerS / row.registry.mbPerS
      row.contention = contention(`${n}-client pull`, SERVERS.flatMap((name) => samples[n][name]))
      return row
    })
    // first pulls: a serve started afresh (its blob cache empty, as after a restart or for an image
    // no one pulled yet), so the blobs are regenerated from their recipes while the clients wait;
    // eight at once show whether they share one regeneration
    const firstPulls = []
    for (const n of counts) {
      await servers.serve.stop()
      servers.serve = await startServeHere()
      const sample = await pullRun({ ref: `${servers.serve.host}/${repoName}:python`, dir: path.join(scratch, 'pulled'), clients: n, digest: pulled.digest, server: servers.serve.server, env })
      const wallS = sample.wallMs / 1000
      firstPulls.push({ clients: n, wallS, mbPerS: (n * pulled.blobBytes) / MB / wallS, serverCpuS: sample.serverCpuS, clientCpuS: sample.clientCpuS })
      progress(`first pull from a fresh serve, ${n} client${n > 1 ? 's' : ''}: ${fmt(wallS, 2)} s, server CPU ${fmt(sample.serverCpuS, 2)} s`)
    }
    const changed = buildChangedNote(fingerprint, buildFingerprint())
    if (changed) notes.push(changed)
    const result = {
      host: hostInfo(), commit: snapdirCommit(), loadavg: os.loadavg(), runs: opts.runs, clients: opts.clients, producers: opts.producers, pull: `${opts.pull}/python`, pulled,
      serveArgs, targets: TARGETS, cold: cold === null,
      tools: { ...tools, skopeo: tryRun('skopeo', ['--version']), registry: tryRun('docker-registry', ['--version']), snapdir: tryRun(process.execPath, [snapdirBin, '--version']) },
      images, pushS, storage, pulls, firstPulls, notes,
    }
    writeResult(opts.out, result, report, { text: true })
  } finally {
    for (const close of closers.reverse()) await close()
    cleanup()
  }
}

// ---------------------------------------------------------------------------------------------
// Report

const mb = (x) => fmt(x / MB, 1)
const verdict = (ok) => (ok ? 'met' : 'MISSED')

function report(r) {
  const lines = [
    `snapdir serve vs docker-registry 2.8 on loopback, snapdir ${String(r.commit).slice(0, 12)}; ${r.tools.skopeo}; ${r.tools.registry}`,
    `images pushed to both with skopeo copy --preserve-digests (serve: into an empty directory store)${r.serveArgs.length > 2 ? `; serve ${r.serveArgs.slice(2).join(' ')}` : ''}`,
    '',
    'Stored bytes (du --apparent-size: the registry\'s storage directory, the whole snapdir store)',
  ]
  lines.push(
    table(
      ['images', 'registry MB', 'files', 'serve MB', 'files', 'serve / registry'],
      r.storage.map((s) => [s.producers.map((p) => `${p} (${IMAGES.map((i) => i.name).join(', ')})`).join(' + '), mb(s.registry.duApparentBytes), s.registry.files, mb(s.serve.duApparentBytes), s.serve.files, fmt(s.ratio, 3)]),
      1,
    ),
  )
  const worst = Math.max(...r.storage.map((s) => s.ratio))
  lines.push(`  target serve / registry <= ${TARGETS.storageServeOverRegistry}: ${verdict(worst <= TARGETS.storageServeOverRegistry)} (worst row ${fmt(worst, 3)})`)
  lines.push(`  pushing them took ${fmt(r.pushS.registry, 1)} s into the registry, ${fmt(r.pushS.serve, 1)} s into serve`, '')
  lines.push(
    `Pull of ${r.pull} (${r.pulled.layers} layers, ${mb(r.pulled.blobBytes)} MB of blobs) with skopeo copy docker://… oci:…, medians of ${r.runs} runs, ${r.cold ? 'page cache dropped before each' : 'WARM page cache'}`,
  )
  const rows = []
  for (const p of r.pulls) {
    for (const name of SERVERS) {
      const s = p[name]
      rows.push([p.clients, name, fmt(s.wallS, 2), fmt(s.mbPerS, 1), fmt(s.serverCpuS, 2), fmt(s.clientCpuS, 2), s.samples.map((x) => fmt(x, 2)).join(' ')])
    }
  }
  lines.push(table(['clients', 'server', 'wall s', 'MB/s', 'server CPU s', 'skopeo CPU s', 'runs (s)'], rows, 2))
  for (const p of r.pulls) {
    lines.push(`  ${p.clients} client${p.clients > 1 ? 's' : ''}: serve / registry throughput ${fmt(p.throughputRatio, 3)} (target >= ${TARGETS.throughputServeOverRegistry}: ${verdict(p.throughputRatio >= TARGETS.throughputServeOverRegistry)})`)
    if (p.contention) lines.push(`  ${p.contention}`)
  }
  if (r.firstPulls) {
    lines.push('', 'First pull from a serve started afresh (blob cache empty: the blobs regenerated while the clients wait), one run each')
    lines.push(
      table(
        ['clients', 'wall s', 'MB/s', 'server CPU s', 'vs registry median'],
        r.firstPulls.map((f) => [f.clients, fmt(f.wallS, 2), fmt(f.mbPerS, 1), fmt(f.serverCpuS, 2), fmt(f.mbPerS / r.pulls.find((p) => p.clients === f.clients).registry.mbPerS, 3)]),
        1,
      ),
    )
  }
  lines.push('', `load average at the end: ${r.loadavg.map((x) => x.toFixed(2)).join(' ')}`)
  if (r.notes.length) lines.push('', 'Notes:', ...r.notes.map((n) => `- ${n}`))
  return lines.join('\n')
}

await main()
