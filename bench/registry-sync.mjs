#!/usr/bin/env node
// Registry sync: what issue 16 must show. The related Debian images (image-store's: a base, the base +
// python3, and the rebuilt base + python3) of each producer, loaded with skopeo into registry A (a
// loopback docker-registry 2.8), then copied to an empty registry B in two phases: the first copy
// (base and python) and, after the base was rebuilt, the new image (rebuilt). Each phase by:
//   skopeo    skopeo sync --src yaml --dest docker (the tags of the phase), A -> B
//   snapdir   snapdir sync --config (the tags of the phase), A -> B, one process as skopeo sync is
//   regions   A -> snapdir push --store s3://region1 -> snapdir sync region1 -> region2 -> snapdir pull
//             --store s3://region2 … docker://B/…, each region an s3rver of its own
// Every registry and store endpoint sits behind a counting TCP proxy (bench/lib/tcp-proxy.mjs): the
// bytes each way, headers included, and the HTTP requests. The tools run in turns (skopeo, snapdir,
// regions, skopeo, ...), each turn on a fresh registry B and fresh regions, and the medians are
// reported. After each phase, every image at B has the digest it has at A (skopeo inspect), and each
// blob its manifest names is at B with its size.
//
//   node bench/registry-sync.mjs [options]   (images: bash bench/setup.sh --all --images, as image-store.mjs)
//
// A snapdir step whose commands bin/snapdir does not have yet (its --help names no docker://) is
// reported as "not available yet", never estimated. Writes bench/results/registry-sync.json and .txt;
// bench/README.md says what each number means.

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {
  MB, benchDir, buildChangedNote, buildFingerprint, cleanupOnSignals, cliBuilt, contention, defaultOut, failer, fmt, fmtInt, hostInfo, median,
  otherActivity, parseCommandLine, parseRuns, parseSteps, privateEnv, runCommand, settle, snapdirBin, snapdirCommit, table, tail, tryRun, writeResult,
} from './lib/common.mjs'
import { CORPORA, PRODUCERS, imagesDir, prepareImages } from './lib/images.mjs'
import { TAG } from './lib/layouts.mjs'
import { S3_ENV, startS3rver } from './lib/s3.mjs'
import { cpuSeconds, startRegistry } from './lib/servers.mjs'
import { newWireCounts, startTcpProxy } from './lib/tcp-proxy.mjs'

const STEPS = ['skopeo', 'snapdir', 'regions']
const PHASES = [
  { name: 'first', tags: ['base', 'python'], what: 'first copy: base and python into an empty registry B' },
  { name: 'rebuilt', tags: ['rebuilt'], what: 'after the rebuilt base: the rebuilt image, B holding the first two' },
]
const DEFAULT_PRODUCERS = ['umoci', 'docker']
// the repository each producer's images live in, at A and at B; the image names are its tags
const repoOf = (producer) => `${producer}/debian`
const TARGETS = { firstCopyOverSkopeo: 1, regionBytesOverSkopeo: 0.2 }

const usage = `usage: node bench/registry-sync.mjs [options]

  --runs N           turns of every step, medians reported (default 3)
  --region-runs N    turns of the regions step, at most --runs (default --runs): it takes minutes per turn
  --steps LIST       a subset of ${STEPS.join(',')} (default all; a snapdir step bin/snapdir cannot run yet is reported as such)
  --producers LIST   a subset of ${PRODUCERS.map((p) => p.name).join(',')} (default ${DEFAULT_PRODUCERS.join(',')})
  --rebuild-images   build the images again even when the cached ones match the corpora and tools
  --keep             keep the scratch directory (registries, regions) for inspection
  --out FILE         JSON report (default bench/results/registry-sync.json; the table goes beside it as .txt)
  -h, --help         this text

Images: $SNAPDIR_BENCH_DIR/image-store-images (default /var/tmp/snapdir-bench), built from the corpora
${CORPORA.join(', ')} (bash bench/setup.sh --all --images) on first use, as image-store.mjs builds them.
Everything else goes into a fresh $SNAPDIR_BENCH_DIR/registry-sync-XXXXXX, deleted at the end.`

const fail = failer('registry-sync')
const progress = (text) => process.stderr.write(`${text}\n`)

// s3rver pages a listing of more than 1000 keys with a continuation token it encrypts with DES,
// which Node 20's OpenSSL 3 only has in its legacy provider: without it every such LIST is a 500
if (!process.execArgv.includes('--openssl-legacy-provider')) {
  const { spawnSync } = await import('node:child_process')
  const r = spawnSync(process.execPath, ['--openssl-legacy-provider', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' })
  process.exit(r.status ?? 1)
}

/** --producers: a comma-separated subset of the image producers, in the order given. */
function parseProducers(text) {
  if (text === undefined) return DEFAULT_PRODUCERS
  const names = text.split(',').map((s) => s.trim()).filter(Boolean)
  const known = PRODUCERS.map((p) => p.name)
  for (const n of names) if (!known.includes(n)) fail(`--producers: unknown producer '${n}', expected some of ${known.join(',')}`, 2)
  if (names.length === 0) fail('--producers: empty list', 2)
  return names
}

function parseOptions() {
  const values = parseCommandLine(
    {
      runs: { type: 'string', default: '3' },
      'region-runs': { type: 'string' },
      steps: { type: 'string' },
      producers: { type: 'string' },
      'rebuild-images': { type: 'boolean' },
      keep: { type: 'boolean' },
      out: { type: 'string', default: defaultOut('registry-sync') },
    },
    usage,
    fail,
  )
  return {
    runs: parseRuns(values.runs, fail),
    regionRuns: values['region-runs'] === undefined ? null : parseRuns(values['region-runs'], fail),
    steps: parseSteps(values.steps, STEPS, fail, { allowEmpty: false }).steps,
    producers: parseProducers(values.producers),
    rebuildImages: values['rebuild-images'] ?? false,
    keep: values.keep ?? false,
    out: path.resolve(values.out),
  }
}

// ---------------------------------------------------------------------------------------------
// What bin/snapdir can do

/**
 * Why `step` cannot run with this bin/snapdir, or null: the registry commands are read from each
 * command's --help (a docker:// argument named there), so that a build without them is reported as
 * such instead of failing halfway through a turn.
 */
function snapdirMissing(step) {
  const help = (cmd) => tryRun(process.execPath, [snapdirBin, cmd, '--help'], { outputOnFailure: true }) ?? ''
  // regions needs sync between stores too, which every build has; without pull docker:// it runs
  // push and sync (the hop between the regions) and says B was not filled (pullMissing)
  const lacking = (step === 'snapdir' ? ['sync'] : ['push']).filter((c) => !help(c).includes('docker://'))
  if (lacking.length === 0) return null
  return `not available yet: bin/snapdir ${lacking.join(', ')} --help names no docker:// reference`
}

/** Why the regions step cannot fill registry B (bin/snapdir pull has no docker://), or null. */
function pullMissing() {
  const help = tryRun(process.execPath, [snapdirBin, 'pull', '--help'], { outputOnFailure: true }) ?? ''
  return help.includes('docker://') ? null : 'not available yet: bin/snapdir pull --help names no docker:// reference, so region 2 -> B was not run and B not checked'
}

// ---------------------------------------------------------------------------------------------
// Registries

/** `skopeo inspect` of `ref` (docker://…, plain HTTP): { digest, raw manifest }. */
async function inspect(ref, env) {
  const digest = (await runCommand(['skopeo', 'inspect', '--tls-verify=false', '--format', '{{.Digest}}', ref], { env })).stdout.trim()
  const raw = JSON.parse((await runCommand(['skopeo', 'inspect', '--tls-verify=false', '--raw', ref], { env })).stdout)
  return { digest, raw }
}

/**
 * The checks after a phase: each image of `tags` has the same digest at B as at A (skopeo inspect),
 * and every blob its manifest names (config and layers, through an index's manifests too) is at B
 * with the size the manifest gives (a HEAD straight to B, not through the proxy). Returns a list of
 * problems, empty when all holds.
 */
async function checkCopied({ a, b, repo, tags, env }) {
  const problems = []
  for (const tag of tags) {
    const src = await inspect(`docker://${a}/${repo}:${tag}`, env)
    let dst
    try {
      dst = await inspect(`docker://${b}/${repo}:${tag}`, env)
    } catch (error) {
      problems.push(`${repo}:${tag} is not at B: ${tail(error.message, 2)}`)
      continue
    }
    if (dst.digest !== src.digest) problems.push(`${repo}:${tag}: digest at B ${dst.digest}, at A ${src.digest}`)
    const descriptors = []
    const collect = async (manifest) => {
      if (manifest.manifests) {
        for (const m of manifest.manifests) await collect(JSON.parse((await runCommand(['skopeo', 'inspect', '--tls-verify=false', '--raw', `docker://${a}/${repo}@${m.digest}`], { env })).stdout))
      } else descriptors.push(manifest.config, ...manifest.layers)
    }
    await collect(src.raw)
    for (const d of descriptors) {
      const res = await fetch(`http://${b}/v2/${repo}/blobs/${d.digest}`, { method: 'HEAD' })
      const size = Number(res.headers.get('content-length'))
      if (res.status !== 200 || size !== d.size) problems.push(`${repo}:${tag}: blob ${d.digest} at B: HTTP ${res.status}, ${size} bytes (expected ${d.size})`)
    }
  }
  return problems
}

// ---------------------------------------------------------------------------------------------
// One turn of a step: a fresh registry B (and regions), both phases

/** Bytes and requests through a proxy since `counts` was fresh. */
const wire = (counts) => ({ up: counts.bytesUp, down: counts.bytesDown, total: counts.bytesUp + counts.bytesDown, requests: counts.requests, connections: counts.connections, byMethod: counts.byMethod })

/** Runs `argv` and returns its wall time, CPU seconds (GNU time) and stdout. */
async function timed(argv, env) {
  const r = await runCommand(argv, { env, rusage: true })
  return { wallMs: r.wallMs, cpuS: (r.userS ?? 0) + (r.sysS ?? 0), stdout: r.stdout }
}

/** The snapshot ID a push printed: the last line of its stdout that is 64 hex digits. */
function printedId(label, stdout) {
  const id = stdout.trim().split('\n').reverse().find((l) => /^[0-9a-f]{64}$/.test(l.trim()))
  if (!id) throw new Error(`${label} printed ${JSON.stringify(stdout.slice(0, 300))}, expected a snapshot ID`)
  return id.trim()
}

/**
 * One turn: `step` copies the producer's images from A (through `aProxy`) to a fresh registry B in
 * both phases. Returns per phase: wall and CPU seconds (the tools' and the registries'), bytes and
 * requests through each proxy, the checks' problems.
 */
async function turn(ctx, { step, producer, index }) {
  const dir = path.join(ctx.scratch, `${producer}-${step}-${index}`)
  const home = path.join(dir, 'home')
  fs.mkdirSync(home, { recursive: true })
  const env = { ...privateEnv(home), ...S3_ENV }
  const repo = repoOf(producer)
  const closers = []
  try {
    const regB = await startRegistry(path.join(dir, 'registry-b'))
    closers.push(() => regB.stop())
    const bProxy = await startTcpProxy(regB.host)
    closers.push(() => bProxy.close())
    const regions = []
    if (step === 'regions') {
      for (const name of ['region1', 'region2']) {
        const s3 = await startS3rver({ directory: path.join(dir, name), bucket: name })
        closers.push(() => s3.close())
        const proxy = await startTcpProxy(`127.0.0.1:${s3.port}`)
        closers.push(() => proxy.close())
        regions.push({ name, url: `s3://${name}/store`, proxy })
      }
    }
    const proxies = { a: ctx.aProxy, b: bProxy, ...(regions.length ? { region1: regions[0].proxy, region2: regions[1].proxy } : {}) }
    const a = ctx.aProxy.host
    const b = bProxy.host
    const phases = []
    const ids = {}
    for (const phase of PHASES) {
      settle()
      for (const p of Object.values(proxies)) p.counts = newWireCounts()
      const registryCpu0 = cpuSeconds(ctx.regA.server.child.pid) + cpuSeconds(regB.server.child.pid)
      const activity = otherActivity()
      const runs = []
      const hop = {}
      if (step === 'skopeo') {
        const config = path.join(dir, `sync-${phase.name}.yaml`)
        fs.writeFileSync(config, [`${a}:`, '  tls-verify: false', '  images:', `    ${repo}:`, ...phase.tags.map((t) => `      - ${t}`), ''].join('\n'))
        runs.push(await timed(['skopeo', 'sync', '--src', 'yaml', '--dest', 'docker', '--dest-tls-verify=false', '--preserve-digests', config, `${b}/${producer}`], env))
      } else if (step === 'snapdir') {
        // one process for the phase's tags, as skopeo sync is: a config naming them
        const config = path.join(dir, `snapdir-sync-${phase.name}.yaml`)
        fs.writeFileSync(config, ['sync:', `  - source: docker://${a}/${repo}`, `    targets: [docker://${b}/${repo}]`, `    tags: { names: [${phase.tags.join(', ')}] }`, ''].join('\n'))
        runs.push(await timed([process.execPath, snapdirBin, 'sync', '--config', config], env))
      } else {
        const [r1, r2] = regions
        const snapdir = (args) => timed([process.execPath, snapdirBin, ...args], env)
        const newIds = []
        for (const tag of phase.tags) {
          const push = await snapdir(['push', '--store', r1.url, '--s3-endpoint', r1.proxy.endpoint, '--name', `${repo}:${tag}`, `docker://${a}/${repo}:${tag}`])
          ids[tag] = printedId(`push docker://${a}/${repo}:${tag}`, push.stdout)
          newIds.push(ids[tag])
          runs.push(push)
        }
        hop.push = { wallMs: runs.reduce((x, r) => x + r.wallMs, 0), region1: wire(r1.proxy.counts), a: wire(ctx.aProxy.counts) }
        r1.proxy.counts = newWireCounts()
        const sync = await snapdir(['sync', ...newIds.flatMap((id) => ['--id', id]), '--from', r1.url, '--to', r2.url, '--from-s3-endpoint', r1.proxy.endpoint, '--to-s3-endpoint', r2.proxy.endpoint])
        runs.push(sync)
        hop.sync = { wallMs: sync.wallMs, region1: wire(r1.proxy.counts), region2: wire(r2.proxy.counts) }
        r2.proxy.counts = newWireCounts()
        let pullMs = 0
        for (const tag of ctx.noPull ? [] : phase.tags) {
          const pull = await snapdir(['pull', '--store', r2.url, '--s3-endpoint', r2.proxy.endpoint, '--id', ids[tag], `docker://${b}/${repo}:${tag}`])
          pullMs += pull.wallMs
          runs.push(pull)
        }
        hop.pull = { wallMs: pullMs, region2: wire(r2.proxy.counts), b: wire(bProxy.counts) }
      }
      const wallMs = runs.reduce((x, r) => x + r.wallMs, 0)
      const toolCpuS = runs.reduce((x, r) => x + r.cpuS, 0)
      const registryCpuS = cpuSeconds(ctx.regA.server.child.pid) + cpuSeconds(regB.server.child.pid) - registryCpu0
      const sample = { wallMs, ...activity(toolCpuS + registryCpuS) }
      const counts = Object.fromEntries(Object.entries(proxies).map(([k, p]) => [k, wire(p.counts)]))
      if (step === 'regions') Object.assign(counts, { a: hop.push.a, region1: hop.push.region1, b: hop.pull.b })
      const problems = step === 'regions' && ctx.noPull ? [] : await checkCopied({ a: ctx.regA.host, b: regB.host, repo, tags: phase.tags, env })
      for (const p of problems) ctx.notes.push(`${producer} ${step} turn ${index + 1} ${phase.name}: ${p}`)
      phases.push({ phase: phase.name, ...(step === 'regions' && ctx.noPull ? { pulled: false } : {}), wallS: wallMs / 1000, toolCpuS, registryCpuS, wire: counts, ...(step === 'regions' ? { hops: hop } : {}), checked: problems.length === 0, problems, sample })
    }
    return phases
  } finally {
    for (const close of closers.reverse()) await close()
  }
}

// ---------------------------------------------------------------------------------------------

/** The figures of a step's turns, medians per phase. */
function summarise(turns, step) {
  return PHASES.map((phase, i) => {
    const ps = turns.map((t) => t[i])
    const m = (f) => median(ps.map(f))
    const out = {
      phase: phase.name,
      wallS: m((p) => p.wallS),
      toolCpuS: m((p) => p.toolCpuS),
      registryCpuS: m((p) => p.registryCpuS),
      a: { total: m((p) => p.wire.a.total), down: m((p) => p.wire.a.down), requests: m((p) => p.wire.a.requests) },
      b: { total: m((p) => p.wire.b.total), up: m((p) => p.wire.b.up), requests: m((p) => p.wire.b.requests) },
      checked: ps.every((p) => p.checked),
      pulled: ps.every((p) => p.pulled !== false),
      samples: ps.map((p) => p.wallS),
    }
    if (step === 'regions') {
      out.hops = {
        pushS: m((p) => p.hops.push.wallMs / 1000),
        syncS: m((p) => p.hops.sync.wallMs / 1000),
        pullS: m((p) => p.hops.pull.wallMs / 1000),
        region1: { total: m((p) => p.hops.sync.region1.total), down: m((p) => p.hops.sync.region1.down), requests: m((p) => p.hops.sync.region1.requests) },
        region2: { total: m((p) => p.hops.sync.region2.total), up: m((p) => p.hops.sync.region2.up), requests: m((p) => p.hops.sync.region2.requests) },
        pushRegion1: m((p) => p.hops.push.region1.total),
        pullRegion2: m((p) => p.hops.pull.region2.total),
      }
      // between the regions: everything through either region's endpoint while the sync ran,
      // whichever region it runs in (the larger of the two)
      out.betweenRegions = Math.max(out.hops.region1.total, out.hops.region2.total)
    } else {
      // skopeo or snapdir copying A -> B directly with A in one region and B in the other: all of it
      // crosses, counted where it is smaller (the tool could run beside either registry)
      out.betweenRegions = Math.min(out.a.total, out.b.total)
    }
    return out
  })
}

async function main() {
  const opts = parseOptions()
  const problems = []
  for (const t of ['skopeo', 'docker-registry', 'umoci', 'dockerd']) if (tryRun('sh', ['-c', `command -v ${t}`]) === null) problems.push(`${t} is not installed (bash bench/setup.sh --images)`)
  for (const c of CORPORA) if (!fs.existsSync(path.join(benchDir, `${c}.complete`))) problems.push(`corpus ${c} is not built (bash bench/setup.sh --all --images)`)
  if (!cliBuilt()) problems.push('bin/snapdir or dist/bundle is missing: run npm run build')
  if (problems.length) fail(problems.join('\n'))
  const scratch = fs.mkdtempSync(path.join(benchDir, 'registry-sync-'))
  const cleanup = () => {
    if (opts.keep) progress(`kept ${scratch}`)
    else fs.rmSync(scratch, { recursive: true, force: true })
  }
  cleanupOnSignals('registry-sync', cleanup)
  const notes = []
  const closers = []
  try {
    const tools = await prepareImages(imagesDir, path.join(scratch, 'images-work'), opts.rebuildImages)
    const missing = Object.fromEntries(opts.steps.filter((s) => s !== 'skopeo').map((s) => [s, snapdirMissing(s)]))
    for (const [s, why] of Object.entries(missing)) if (why) progress(`${s}: ${why}`)
    const steps = opts.steps.filter((s) => !missing[s])
    const regA = await startRegistry(path.join(scratch, 'registry-a'))
    closers.push(() => regA.stop())
    const aProxy = await startTcpProxy(regA.host)
    closers.push(() => aProxy.close())
    const env = privateEnv(path.join(scratch, 'home'))
    const images = {}
    progress(`registry A at ${regA.host} (proxy ${aProxy.host}): loading ${opts.producers.join(', ')} with skopeo copy`)
    for (const producer of opts.producers) {
      images[producer] = {}
      for (const tag of PHASES.flatMap((p) => p.tags)) {
        const layout = path.join(imagesDir, producer, tag)
        await runCommand(['skopeo', 'copy', '--quiet', '--dest-tls-verify=false', '--preserve-digests', `oci:${layout}:${TAG}`, `docker://${regA.host}/${repoOf(producer)}:${tag}`], { env })
        const manifest = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')).manifests[0]
        const { digest, raw } = await inspect(`docker://${regA.host}/${repoOf(producer)}:${tag}`, env)
        if (digest !== manifest.digest) fail(`${producer}/${tag}: registry A holds ${digest}, the layout ${manifest.digest}`)
        images[producer][tag] = { digest, layers: raw.layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType })) }
      }
    }
    // A's blobs in the page cache before the first timed turn, so that no tool pays for reading them from disk
    await runCommand(['bash', '-c', 'tar -C "$1" -cf - . | wc -c', 'bash', path.join(scratch, 'registry-a')])
    const fingerprint = buildFingerprint()
    const noPull = steps.includes('regions') ? pullMissing() : null
    if (noPull) progress(`regions: ${noPull}`)
    const ctx = { scratch, regA, aProxy, notes, noPull }
    const results = {}
    for (const producer of opts.producers) {
      const turns = Object.fromEntries(steps.map((s) => [s, []]))
      for (let i = 0; i < opts.runs; i++) {
        for (const step of steps) {
          if (step === 'regions' && i >= (opts.regionRuns ?? opts.runs)) continue
          progress(`${producer}: ${step}, turn ${i + 1} of ${opts.runs}`)
          try {
            const phases = await turn(ctx, { step, producer, index: i })
            turns[step].push(phases)
            progress(`  ${phases.map((p) => `${p.phase} ${fmt(p.wallS, 2)} s, A ${fmt(p.wire.a.total / MB, 2)} MB, B ${fmt(p.wire.b.total / MB, 2)} MB${p.checked ? '' : ' CHECK FAILED'}`).join('; ')}`)
          } catch (error) {
            notes.push(`${producer} ${step} turn ${i + 1} failed: ${tail(error.message, 6)}`)
            progress(`  failed: ${tail(error.message, 6)}`)
          }
        }
      }
      results[producer] = Object.fromEntries(
        STEPS.filter((s) => opts.steps.includes(s)).map((s) => {
          if (missing[s]) return [s, { unavailable: missing[s] }]
          if (turns[s].length === 0) return [s, { failed: true }]
          return [s, { turns: turns[s].length, ...(s === 'regions' && noPull ? { pull: noPull } : {}), phases: summarise(turns[s], s), raw: turns[s].map((t) => t.map(({ sample: _s, ...p }) => p)) }]
        }),
      )
      results[producer].contention = contention(`${producer} registry-sync`, Object.values(turns).flat(2).map((p) => p.sample))
    }
    const changed = buildChangedNote(fingerprint, buildFingerprint())
    if (changed) notes.push(changed)
    const result = {
      host: hostInfo(), commit: snapdirCommit(), loadavg: os.loadavg(), runs: opts.runs, regionRuns: opts.regionRuns, producers: opts.producers, phases: PHASES, targets: TARGETS,
      tools: { ...tools, skopeo: tryRun('skopeo', ['--version']), registry: tryRun('docker-registry', ['--version']) }, images, results, notes,
    }
    writeResult(opts.out, result, report, { text: true })
  } finally {
    for (const close of closers.reverse()) await close()
    cleanup()
  }
}

// ---------------------------------------------------------------------------------------------
// Report

const mb = (x) => fmt(x / MB, 2)

function report(r) {
  const lines = [
    `Registry sync: related Debian images, registry A -> registry B (docker-registry 2.8 on loopback, counting TCP proxies), snapdir ${String(r.commit).slice(0, 12)}`,
    `medians of ${r.runs} turns per step${r.regionRuns !== null && r.regionRuns < r.runs ? ` (regions: ${r.regionRuns})` : ''}, steps in turns; ${r.tools.skopeo}; ${r.tools.registry}`,
    '',
  ]
  for (const producer of r.producers) {
    const res = r.results[producer]
    const imgs = r.images[producer]
    lines.push(`${producer}: ${Object.entries(imgs).map(([t, i]) => `${t} ${i.layers.length} layers ${mb(i.layers.reduce((a, l) => a + l.size, 0))} MB`).join(', ')}`)
    const rows = []
    const absent = []
    for (const step of STEPS) {
      const s = res[step]
      if (!s) continue
      if (s.unavailable || s.failed) {
        absent.push(`  ${step}: ${s.unavailable ?? 'every turn failed (see the notes)'}`)
        continue
      }
      for (const p of s.phases) {
        rows.push([
          step, p.phase, fmt(p.wallS, 2), fmt(p.toolCpuS, 2), mb(p.a.total), fmtInt(p.a.requests), p.pulled === false ? 'n/a' : mb(p.b.total), p.pulled === false ? 'n/a' : fmtInt(p.b.requests),
          step === 'regions' ? `${mb(p.hops.region1.total)} / ${mb(p.hops.region2.total)}` : '-', `${mb(p.betweenRegions)}${p.checked ? '' : ' !'}`,
        ])
      }
    }
    lines.push(table(['step', 'phase', 'wall s', 'CPU s', 'A MB', 'A req', 'B MB', 'B req', 'r1 / r2 MB (sync)', 'between MB'], rows, 2), ...absent)
    const sk = res.skopeo?.phases
    const ratio = (x, y) => fmt(x / y, 3)
    const dir = res.snapdir?.phases
    if (sk && dir) {
      const first = dir[0].wallS / sk[0].wallS
      lines.push(
        `  snapdir / skopeo, wall: first copy ${fmt(first, 2)} (target < ${TARGETS.firstCopyOverSkopeo}${first < TARGETS.firstCopyOverSkopeo ? ', met' : ', MISSED'}), ` +
          `after the rebuild ${fmt(dir[1].wallS / sk[1].wallS, 2)}; bytes to B ${ratio(dir[0].b.total, sk[0].b.total)} and ${ratio(dir[1].b.total, sk[1].b.total)}`,
      )
    }
    const reg = res.regions?.phases
    if (sk && reg) {
      const bytes = reg[1].betweenRegions / sk[1].betweenRegions
      lines.push(
        `  regions / skopeo, bytes between the regions: after the rebuild ${fmt(bytes, 3)} (target <= ${TARGETS.regionBytesOverSkopeo}${bytes <= TARGETS.regionBytesOverSkopeo ? ', met' : ', MISSED'}), ` +
          `first copy ${ratio(reg[0].betweenRegions, sk[0].betweenRegions)}; wall (push + sync${res.regions.pull ? '' : ' + pull'}) ${fmt(reg[0].wallS / sk[0].wallS, 2)} and ${fmt(reg[1].wallS / sk[1].wallS, 2)}`,
      )
    }
    if (res.regions?.pull) lines.push(`  regions: push and sync only; pull ${res.regions.pull}`)
    if (reg) for (const p of reg) lines.push(`  regions ${p.phase}: push ${fmt(p.hops.pushS, 2)} s (${mb(p.hops.pushRegion1)} MB into region 1), sync ${fmt(p.hops.syncS, 2)} s (region 1 ${mb(p.hops.region1.total)} MB in ${fmtInt(p.hops.region1.requests)} requests, region 2 ${mb(p.hops.region2.total)} MB in ${fmtInt(p.hops.region2.requests)}), pull ${fmt(p.hops.pullS, 2)} s (${mb(p.hops.pullRegion2)} MB from region 2)`)
    if (res.contention) lines.push(`  ${res.contention}`)
    lines.push('')
  }
  lines.push(`load average at the end: ${r.loadavg.map((x) => x.toFixed(2)).join(' ')}`)
  if (r.notes.length) lines.push('', 'Notes:', ...r.notes.map((n) => `- ${n}`))
  return lines.join('\n')
}

await main()
