#!/usr/bin/env node
// Lazy start vs full pull: how long until a program in a real image has run, when the image is
// mounted lazily from a snapdir store, pulled whole through snapdir, or copied and unpacked with the
// tools people use today (skopeo + umoci).
//
//   node bench/lazy-start.mjs [options]      (as root: drops the page cache, mounts, chroots)
//
// The image: the debian-rootfs corpus (bench/setup.sh) as one layer of an OCI layout built with
// umoci, as dedup-report.mjs builds its images; cached as $SNAPDIR_BENCH_DIR/lazy-start-layout. It
// is pushed into a fresh local store. Each run, from a dropped page cache, times one of:
//   lazy    snapdir mount --view rootfs, overlayfs upper on top, chroot MERGED PROGRAM
//   full    snapdir pull of the layout, umoci unpack, chroot BUNDLE/rootfs PROGRAM
//   skopeo  skopeo copy oci:LAYOUT oci:COPY, umoci unpack, chroot BUNDLE/rootfs PROGRAM
// The store and the layout are local: no network latency, which favours the full pulls.
// Prints a table and writes bench/results/lazy-start.json and .txt; bench/README.md explains them.

import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {
  MB, benchDir, buildChangedNote, buildFingerprint, cleanupOnSignals, cliBuilt, corpusMarker, defaultOut, dropCaches,
  dropCachesProblem, failer, fmt, fmtInt, fsTypeAt, hostInfo, measureTree, median, msSince, nowNs, parseCommandLine, parseRuns,
  parseSteps, privateEnv, readOr, repo, runCommand, snapdirBin, snapdirCommit, table, tryRun, which, writeResult,
} from './lib/common.mjs'
import { TAG, layoutLayers, pythonImageLayout } from './lib/layouts.mjs'
import { mountAt, mountNotes, startFuseDaemon, stopAllDaemons, stopFuseDaemon } from './lib/mounts.mjs'

const ALL_STEPS = ['lazy', 'full', 'skopeo']
const PROGRAM = ['/usr/bin/python3', '-c', 'import json,sys; print(sys.version)']

const usage = `usage: node bench/lazy-start.mjs [options]

  --runs N       cold runs per method, medians reported (default 3)
  --steps LIST   a subset of ${ALL_STEPS.join(',')} (default all)
  --keep         keep the scratch directory (store, pulls, bundles)
  --out FILE     JSON report (default bench/results/lazy-start.json; the table goes beside it as .txt)
  -h, --help     this text

The image is built from $SNAPDIR_BENCH_DIR/debian-rootfs (bash bench/setup.sh) and cached as
$SNAPDIR_BENCH_DIR/lazy-start-layout; everything else goes into a fresh
$SNAPDIR_BENCH_DIR/lazy-start-XXXXXX, deleted at the end of the run.`

const fail = failer('lazy-start')

function parseOptions() {
  const values = parseCommandLine(
    { runs: { type: 'string', default: '3' }, steps: { type: 'string' }, keep: { type: 'boolean' }, out: { type: 'string', default: defaultOut('lazy-start') } },
    usage,
    fail,
  )
  return { runs: parseRuns(values.runs, fail), steps: parseSteps(values.steps, ALL_STEPS, fail, { allowEmpty: false }).steps, keep: values.keep ?? false, out: path.resolve(values.out) }
}

const run = (argv, options = {}) => runCommand(argv, { cwd: repo, ...options })
const seconds = (ms) => ms / 1000

// ---------------------------------------------------------------------------------------------
// Mounts: everything mounted is tracked, and taken down in order (overlay, then the FUSE daemon)
// on success, error and signals.

const overlays = new Set()
const cleanupNotes = []

function unmountOverlay(merged) {
  spawnSync('umount', [merged], { timeout: 10_000, stdio: 'ignore' })
  if (mountAt(merged)) {
    spawnSync('umount', ['-l', merged], { timeout: 10_000, stdio: 'ignore' })
    cleanupNotes.push(`overlay ${merged} was busy: unmounted lazily`)
  }
  overlays.delete(merged)
}

/** The overlays first, then the FUSE daemons under them. */
function cleanupAll() {
  for (const merged of [...overlays]) unmountOverlay(merged)
  stopAllDaemons()
}

// ---------------------------------------------------------------------------------------------
// The methods. Each returns its phases in ms (summing to wallMs) and what it knows besides.

/** The program in the image, chrooted: its output must be a Python version, or the run measured nothing. */
async function runProgram(root) {
  const r = await run(['chroot', root, ...PROGRAM])
  if (!/^3\.\d+/.test(r.stdout)) throw new Error(`chroot ${root} ${PROGRAM.join(' ')} printed ${JSON.stringify(r.stdout)}`)
  return r
}

async function lazyStart(ctx, n) {
  const dir = path.join(ctx.scratch, `lazy-${n}`)
  const [mnt, upper, work, merged] = ['mnt', 'upper', 'work', 'merged'].map((d) => path.join(dir, d))
  for (const d of [mnt, upper, work, merged]) fs.mkdirSync(d, { recursive: true })
  const t0 = nowNs()
  // mountinfo is enough: a request the daemon has not yet answered waits for it, so starting at once is fair
  const daemon = await startFuseDaemon({
    label: 'snapdir mount',
    argv: [snapdirBin, 'mount', '--store', ctx.store, '--id', ctx.id, '--view', 'rootfs', '--no-cache', '--json', mnt],
    mnt,
    env: ctx.env,
    log: path.join(dir, 'mount.log'),
    stdout: path.join(dir, 'mount.json'),
  })
  const mountMs = msSince(t0)
  await run(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${mnt}/rootfs,upperdir=${upper},workdir=${work}`, merged])
  overlays.add(merged)
  const overlayMs = msSince(t0) - mountMs
  const prog = await runProgram(merged)
  const wallMs = msSince(t0)
  unmountOverlay(merged)
  const stoppedBy = stopFuseDaemon(daemon).how
  const counters = JSON.parse(readOr(path.join(dir, 'mount.json'), 'null'))
  if (!counters) throw new Error(`snapdir mount --json printed no counters:\n${readOr(path.join(dir, 'mount.log'))}`)
  return { wallMs, phases: { mountMs, overlayMs, programMs: prog.wallMs }, counters, stoppedBy }
}

async function fullPull(ctx, n) {
  const dir = path.join(ctx.scratch, `full-${n}`)
  fs.mkdirSync(dir)
  const [layout, bundle] = [path.join(dir, 'layout'), path.join(dir, 'bundle')]
  const t0 = nowNs()
  const pull = await run([snapdirBin, 'pull', '--store', ctx.store, '--id', ctx.id, layout], { env: ctx.env })
  const unpack = await run(['umoci', 'unpack', '--image', `${layout}:${TAG}`, bundle])
  const prog = await runProgram(path.join(bundle, 'rootfs'))
  return { wallMs: msSince(t0), phases: { pullMs: pull.wallMs, unpackMs: unpack.wallMs, programMs: prog.wallMs } }
}

async function skopeoPull(ctx, n) {
  const dir = path.join(ctx.scratch, `skopeo-${n}`)
  fs.mkdirSync(dir)
  const [copy, bundle] = [path.join(dir, 'layout'), path.join(dir, 'bundle')]
  const t0 = nowNs()
  const pull = await run(['skopeo', 'copy', '--quiet', `oci:${ctx.layout}:${TAG}`, `oci:${copy}:${TAG}`])
  const unpack = await run(['umoci', 'unpack', '--image', `${copy}:${TAG}`, bundle])
  const prog = await runProgram(path.join(bundle, 'rootfs'))
  return { wallMs: msSince(t0), phases: { pullMs: pull.wallMs, unpackMs: unpack.wallMs, programMs: prog.wallMs } }
}

const METHODS = {
  lazy: { run: lazyStart, what: 'snapdir mount --view rootfs --no-cache, overlayfs on top, chroot' },
  full: { run: fullPull, what: 'snapdir pull of the layout, umoci unpack, chroot' },
  skopeo: { run: skopeoPull, what: 'skopeo copy oci: -> oci:, umoci unpack, chroot' },
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const opts = parseOptions()
  const corpus = path.join(benchDir, 'debian-rootfs')
  const problems = [dropCachesProblem()].filter(Boolean)
  if (!cliBuilt()) problems.push('bin/snapdir or dist/bundle is missing: run npm run build')
  for (const t of ['umoci', 'skopeo', 'chroot']) if (!which(t)) problems.push(`${t} is not installed: run bash bench/setup.sh`)
  if (!fs.existsSync(`${corpus}.complete`)) problems.push(`corpus ${corpus} is missing: run bash bench/setup.sh`)
  if (!fs.existsSync('/dev/fuse')) problems.push('/dev/fuse is missing (modprobe fuse)')
  if (problems.length) fail(problems.join('\n'))

  const layout = await pythonImageLayout(corpus)
  const scratch = fs.mkdtempSync(path.join(benchDir, 'lazy-start-'))
  const cleanup = () => {
    cleanupAll()
    if (opts.keep) process.stderr.write(`kept ${scratch}\n`)
    else fs.rmSync(scratch, { recursive: true, force: true })
  }
  cleanupOnSignals('lazy-start', cleanup)

  const buildBefore = buildFingerprint()
  const notes = []
  let result
  try {
    const home = path.join(scratch, 'home')
    fs.mkdirSync(home)
    // a private HOME: no chunk cache of this user's takes part
    const env = privateEnv(home)
    const store = path.join(scratch, 'store')
    process.stderr.write(`snapdir push ${layout}\n`)
    const pushRun = await run([snapdirBin, 'push', '--json', '--store', store, '--name', 'debian-python3', layout], { env })
    const id = JSON.parse(pushRun.stdout).id
    const stats = JSON.parse((await run([snapdirBin, 'stats', '--json', '--store', store, id], { env })).stdout)
    const chunksOnDisk = measureTree(path.join(store, 'chunks'))
    const ctx = { scratch, store, id, env, layout }

    const samples = Object.fromEntries(opts.steps.map((s) => [s, []]))
    // interleaved, so that a slow spell of the machine falls on every method alike
    for (let n = 1; n <= opts.runs; n++) {
      for (const step of opts.steps) {
        dropCaches()
        const busy = tryRun('pgrep', ['-f', 'vitest'])
        const s = await METHODS[step].run(ctx, n)
        if (busy) s.otherActivity = 'vitest was running'
        samples[step].push(s)
        process.stderr.write(`  ${step} run ${n}: ${fmt(seconds(s.wallMs), 2)} s\n`)
      }
    }
    const busyRuns = Object.values(samples).flat().filter((s) => s.otherActivity).length
    if (busyRuns) notes.push(`a test suite (vitest) was running during ${busyRuns} runs: those times are inflated, run again when the machine is quiet`)

    const summary = {}
    for (const [step, list] of Object.entries(samples)) {
      const phases = Object.fromEntries(Object.keys(list[0].phases).map((k) => [k, median(list.map((s) => s.phases[k]))]))
      summary[step] = { wallMs: median(list.map((s) => s.wallMs)), phases }
      if (step === 'lazy') {
        summary[step].fetched = median(list.map((s) => s.counters.fetched))
        summary[step].fetchedBytes = median(list.map((s) => s.counters.fetchedBytes))
      }
    }
    const ratios = []
    for (const other of ['full', 'skopeo']) if (summary.lazy && summary[other]) ratios.push({ of: 'lazy', to: other, ratio: summary.lazy.wallMs / summary[other].wallMs })

    result = {
      schema: 1,
      date: new Date().toISOString(),
      machine: {
        ...hostInfo(),
        fsType: fsTypeAt(benchDir),
        scratchParent: benchDir,
        snapdirCommit: snapdirCommit(),
        umoci: tryRun('umoci', ['--version']),
        skopeo: tryRun('skopeo', ['--version']),
      },
      corpus: { root: corpus, marker: corpusMarker(corpus) },
      image: { layout, layers: layoutLayers(layout) },
      program: PROGRAM,
      runs: opts.runs,
      methods: Object.fromEntries(opts.steps.map((s) => [s, METHODS[s].what])),
      store: {
        id,
        pushWallMs: pushRun.wallMs,
        chunkFiles: chunksOnDisk.files,
        chunkBytes: chunksOnDisk.fileBytes,
        layerChunkStoredBytes: stats.chunk?.chunkStoredBytes ?? null,
        layoutChunkStoredBytes: stats.bundles?.chunkStoredBytes ?? null,
      },
      summary,
      ratios,
      samples,
      build: null,
      notes,
    }
  } finally {
    cleanup()
  }
  notes.push(...cleanupNotes, ...mountNotes)
  result.build = buildFingerprint()
  const changed = buildChangedNote(buildBefore, result.build)
  if (changed) notes.push(changed)
  writeResult(opts.out, result, report, { text: true })
}

// ---------------------------------------------------------------------------------------------
// Report

const PHASE_LABEL = { mountMs: 'mount', overlayMs: 'overlay', pullMs: 'copy/pull', unpackMs: 'unpack', programMs: 'program' }

function report(r) {
  const lines = []
  lines.push(`lazy start vs full pull, ${r.date}`)
  lines.push(`image: ${r.corpus.root} as one umoci layer (${r.image.layers.map((l) => `${fmt(l.size / MB)} MB gzip`).join(', ')}), ${r.image.layout}`)
  lines.push(`machine: ${r.machine.cpu}, ${r.machine.cores} cores, kernel ${r.machine.kernel}, ${r.machine.fsType} under ${r.machine.scratchParent}`)
  lines.push(`program: chroot ROOT ${r.program.map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ')}`)
  lines.push(`medians of ${r.runs} cold runs (page cache dropped before each); store and layout local: no network`)
  lines.push('')
  // phases are medians of their own, so they need not add up to the median start time exactly
  const rows = Object.entries(r.summary).map(([step, s]) => [
    step,
    Object.entries(s.phases).map(([k, v]) => `${PHASE_LABEL[k]} ${fmt(seconds(v), 2)}`).join(', '),
    fmt(seconds(s.wallMs), 2),
  ])
  lines.push(table(['method', 'phases s', 'start s'], rows, 2))
  for (const [step, what] of Object.entries(r.methods)) lines.push(`  ${step}: ${what}`)
  const lazy = r.summary.lazy
  if (lazy) {
    const st = r.store
    lines.push('')
    lines.push(`lazy start fetched ${fmtInt(lazy.fetched)} chunks, ${fmt(lazy.fetchedBytes / MB, 2)} MB stored bytes:`)
    lines.push(`  ${fmt((lazy.fetchedBytes / st.chunkBytes) * 100, 2)}% of the store's ${fmt(st.chunkBytes / MB)} MB in ${fmtInt(st.chunkFiles)} chunk files (layer and layout chunks)`)
    if (st.layerChunkStoredBytes) lines.push(`  ${fmt((lazy.fetchedBytes / st.layerChunkStoredBytes) * 100, 2)}% of the ${fmt(st.layerChunkStoredBytes / MB)} MB of chunks the rootfs view reads from (the expanded layer)`)
  }
  if (r.ratios.length) {
    lines.push('')
    lines.push('ratios of start times (below 1: lazy is faster):')
    for (const x of r.ratios) lines.push(`  ${x.of} / ${x.to}: ${fmt(x.ratio, 3)}`)
  }
  for (const n of r.notes) lines.push(`warning: ${n}`)
  return lines.join('\n')
}

main().catch((error) => {
  cleanupAll()
  fail(error.stack ?? String(error))
})
