#!/usr/bin/env node
// Push throughput on one corpus, in one run: `snapdir push` against `casync make` (the reference
// content-defined-chunking tool) and against what push cannot beat per core: plain BLAKE3 over the
// same bytes, zstd over them at the level push stores chunks with (ZSTD_LEVEL of dist/format) and the FastCDC
// chunker alone. Each disk-touching step runs with the page cache dropped first (cold) and again
// with the corpus cached (warm).
//
//   bash bench/setup.sh && npm run build && node bench/push-throughput.mjs [options]
//
// Prints a table on stdout and writes bench/results/push-throughput.json. bench/README.md says
// what each number means. Needs root: it writes /proc/sys/vm/drop_caches.
//
// Plain ESM that needs no compilation: it drives the built CLI (bin/snapdir -> dist/) and imports
// the built chunker (dist/chunk/index.js), so it measures exactly what ships.

import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import {
  MB, baselineCheckout, benchDir, buildChangedNote, buildFingerprint, cleanupOnSignals, cliBuilt, contention, corpusMarker,
  defaultOut, dropCaches, dropCachesProblem, failer, fmt, fmtInt, fsTypeAt, hostInfo, measureTree, median, medianFields,
  msSince, nowNs, otherActivity, parseCommandLine, parseRuns, parseSteps, privateEnv, repo, runCommand, scanCorpus, settle,
  snapdirBin, snapdirCommit, table, tryRun, which, writeResult,
} from './lib/common.mjs'

const ALL_STEPS = ['snapdir', 'casync', 'blake3', 'b3sum', 'zstd', 'chunker']
// The steps measured on every corpus, in turns; the others (the per-core limits) on the first only.
const COMPARED = ['snapdir', 'casync']
// The corpora bench/setup.sh builds that push is measured on when no --corpus is given: the first is
// the reference (every step), the others show how much the ratio to casync depends on the tree.
const DEFAULT_CORPORA = ['debian-rootfs', 'debian-base', 'debian-python3-rebuilt']
// The brief for this benchmark and DESIGN.md: 16/64/256 KiB. Used for casync only when the built
// chunker (whose DEFAULT_CHUNKER push really uses) cannot be loaded.
const FALLBACK_CHUNK_SIZES = { min: 16384, avg: 65536, max: 262144 }
const CHUNKER_BYTES = 256 * 1024 * 1024
const GB = 1e9

const usage = `usage: node bench/push-throughput.mjs [options]

  --corpus DIR   a tree to push; repeat for more. snapdir and casync (and --baseline) run on
                 every corpus, the other steps on the first (default: those of bench/setup.sh
                 under $SNAPDIR_BENCH_DIR: ${DEFAULT_CORPORA.join(', ')}; the first must exist)
  --steps LIST   comma-separated subset of ${ALL_STEPS.join(',')} (default: all; b3sum
                 and zstd are left out when not installed unless named)
  --runs N       cold runs and warm runs per step, the median of each is reported (default 3)
  --baseline DIR another snapdir checkout, built (DIR/bin/snapdir): its push runs as one more
                 tool, in turns with snapdir and casync, and is compared with this one (before/after)
  --out FILE     JSON report (default bench/results/push-throughput.json)
  -h, --help     this text`

const fail = failer('push-throughput')

function parseOptions() {
  const values = parseCommandLine(
    {
      corpus: { type: 'string', multiple: true },
      steps: { type: 'string' },
      runs: { type: 'string', default: '3' },
      baseline: { type: 'string' },
      out: { type: 'string', default: defaultOut('push-throughput') },
    },
    usage,
    fail,
  )
  const runs = parseRuns(values.runs, fail)
  const corpora = values.corpus?.map((c) => path.resolve(c)) ?? DEFAULT_CORPORA.map((c) => path.join(benchDir, c))
  return {
    corpora,
    defaultCorpora: values.corpus === undefined,
    ...parseSteps(values.steps, ALL_STEPS, fail),
    runs,
    baseline: baselineCheckout(values.baseline, fail),
    out: path.resolve(values.out),
  }
}

// ---------------------------------------------------------------------------------------------
// Adapter to the project's chunker: src/chunk/index.ts, built by `npm run build`. Everything the
// benchmark needs from it goes through here, so an API change is fixed in this one place.

async function loadChunker() {
  const mod = await import(pathToFileURL(path.join(repo, 'dist/chunk/index.js')).href)
  return {
    params: mod.DEFAULT_CHUNKER,
    nativeAvailable: mod.native !== null,
    nativeLoadError: mod.nativeLoadError,
    /** a function that cuts one whole buffer (a file, cut points reset at its start) and returns the chunk count */
    cutter(implementation) {
      const chunker = new mod.Chunker(mod.DEFAULT_CHUNKER, implementation)
      return (data) => chunker.cuts(data, true).count
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Timing a step

/**
 * Runs each tool cold `ctx.runs` times (page cache dropped before each) and then warm `ctx.runs`
 * times (the corpus cached by the runs before), alternating between the tools run by run, so that
 * each sees the same machine (whose speed drifts by ±10% over minutes) and none gets a quieter stretch
 * to itself. A tool is { label, run, inspect? }: `run` gets a fresh scratch directory and returns
 * a sample with at least `wallMs`, and `userS`/`sysS` for the measured tool (null when unknown;
 * `inProcess: true` when the tool is this process). `inspect`, if given, looks at the scratch
 * directory after the writeback, when block counts are final (untimed). Scratch directories are
 * removed only when the benchmark ends (see below). Returns { [label]: { cold, warm } }.
 *
 * This machine is shared with builds and tests, so each sample also records `otherCpuS`, the CPU
 * seconds the machine spent on anything but the measured tool while it ran, and `stealS`.
 */
async function coldAndWarm(ctx, tools) {
  const results = Object.fromEntries(tools.map((t) => [t.label, { cold: [], warm: [] }]))
  for (const mode of ['cold', 'warm']) {
    for (let i = 0; i < ctx.runs; i++) {
      for (const { label, run, inspect } of tools) {
        const scratch = fs.mkdtempSync(path.join(ctx.scratch, `${label}-`))
        if (mode === 'cold') dropCaches()
        else settle()
        const activity = otherActivity()
        const sample = await run(scratch)
        sample.cpuS = sample.userS === null ? null : sample.userS + sample.sysS
        // an in-process tool's CPU is this process's, which otherActivity() already leaves out
        Object.assign(sample, activity(sample.inProcess ? 0 : sample.cpuS))
        // writeback that the run left behind, timed separately: add it for "durable" time
        const t0 = nowNs()
        settle()
        sample.syncMs = msSince(t0)
        if (inspect) Object.assign(sample, inspect(scratch))
        results[label][mode].push(sample)
        // Stores are kept until the whole benchmark ends, not deleted run by run: ext4 without a
        // journal (as on these machines) skips inodes freed in the last minutes when it allocates new
        // ones, scanning past them, so deleting a store makes every later run's file creates slower.
        process.stderr.write(`  ${label} ${mode} ${i + 1}/${ctx.runs}: ${(sample.wallMs / 1000).toFixed(2)} s\n`)
      }
    }
  }
  return results
}

/**
 * The environment of every measured command: this one without NODE_EXTRA_CA_CERTS. These machines
 * set it (for npm behind a proxy), and with it every Node process parses the whole certificate bundle
 * as it starts, 0.1 s here, before a line of snapdir runs; a push to a local store makes no TLS
 * connection, and a user's shell does not normally set it. The report says that it was left out.
 */
function measuredEnv(base = process.env) {
  const env = { ...base }
  delete env.NODE_EXTRA_CA_CERTS
  return env
}

/** The median of every numeric field over the samples, plus throughput of `bytes`. */
function summarise(samples, bytes) {
  const out = { runs: samples.length, ...medianFields(samples, ['wallMs', 'syncMs', 'userS', 'sysS', 'cpuS', 'maxRssKiB', 'hashMs', 'otherCpuS', 'stealS']) }
  out.mbPerS = bytes / MB / (out.wallMs / 1000)
  if (out.syncMs !== undefined) out.durableMbPerS = bytes / MB / ((out.wallMs + out.syncMs) / 1000)
  if (out.hashMs !== undefined) out.hashOnlyMbPerS = bytes / MB / (out.hashMs / 1000)
  return out
}

function sameEverywhere(samples, key) {
  const values = new Set(samples.map((s) => JSON.stringify(s[key])))
  return values.size === 1
}

function finishLimitStep(ctx, runs, name) {
  const busy = contention(name, [...runs.cold, ...runs.warm])
  if (busy) process.stderr.write(`  warning: ${busy}\n`)
  return {
    cold: summarise(runs.cold, ctx.corpus.bytes),
    warm: summarise(runs.warm, ctx.corpus.bytes),
    samples: runs,
    notes: busy ? [busy] : [],
  }
}

// ---------------------------------------------------------------------------------------------
// The steps

/**
 * `snapdir push` of the corpus into a new local store: this checkout's, or with `bin` another
 * checkout's (label 'baseline', for a before/after comparison).
 */
function snapdirTool(ctx, { label = 'snapdir', name = 'snapdir push', bin = snapdirBin } = {}) {
  return {
    label,
    name,
    async run(scratch) {
      const store = path.join(scratch, 'store')
      fs.mkdirSync(store)
      // A private cache home per run: if push ever keeps a local index (stat cache, chunk cache),
      // a warm run must still chunk and hash everything, like the first push to a new store.
      const env = measuredEnv(privateEnv(scratch))
      const r = await runCommand([bin, 'push', '--store', store, ctx.corpus.root], { env, rusage: true })
      const id = r.stdout.trim()
      if (!/^[0-9a-f]{64}$/.test(id)) throw new Error(`snapdir push printed ${JSON.stringify(r.stdout)} on stdout, expected one 64-hex snapshot ID`)
      return { wallMs: r.wallMs, userS: r.userS, sysS: r.sysS, maxRssKiB: r.maxRssKiB, id }
    },
    inspect(scratch) {
      const store = path.join(scratch, 'store')
      const chunksDir = path.join(store, 'chunks')
      const chunks = fs.existsSync(chunksDir) ? measureTree(chunksDir).files : null
      return { store: { ...measureTree(store), chunks } }
    },
  }
}

/** `casync make` of the corpus with push's chunk sizes, into a new local store. */
function casyncTool(ctx) {
  const { min, avg, max } = ctx.chunkSizes
  return {
    label: 'casync',
    name: 'casync make',
    async run(scratch) {
      const store = path.join(scratch, 'store')
      const index = path.join(scratch, 'corpus.caidx')
      // zstd named explicitly so both tools compress with the same codec whatever casync's build default
      const r = await runCommand([
        'casync', 'make', `--store=${store}`, `--chunk-size=${min}:${avg}:${max}`, '--compression=zstd', index, ctx.corpus.root,
      ], { env: measuredEnv(), rusage: true })
      return { wallMs: r.wallMs, userS: r.userS, sysS: r.sysS, maxRssKiB: r.maxRssKiB, id: r.stdout.trim() }
    },
    inspect(scratch) {
      const tree = measureTree(path.join(scratch, 'store'), { objectFilter: (p) => p.endsWith('.cacnk') })
      return { store: { ...tree, chunks: tree.objects }, indexBytes: fs.statSync(path.join(scratch, 'corpus.caidx')).size }
    },
  }
}

/** The command steps asked for (snapdir push, casync make), their runs alternating. */
async function stepCommands(ctx, tools) {
  const runs = await coldAndWarm(ctx, tools)
  return Object.fromEntries(tools.map((t) => [t.label, finishCommandStep(ctx, runs[t.label], t.name)]))
}

function finishCommandStep(ctx, runs, name) {
  const all = [...runs.cold, ...runs.warm]
  const notes = []
  // Same tree, same tool, same parameters: anything but one ID and one set of objects is a bug
  // worth seeing next to the numbers. (Block counts may differ with allocation; not compared.)
  if (!sameEverywhere(all, 'id')) notes.push(`${name} printed different IDs across runs: ${[...new Set(all.map((s) => s.id))].join(', ')}`)
  const contents = all.map((s) => ({ v: { files: s.store.files, fileBytes: s.store.fileBytes, objects: s.store.objects } }))
  if (!sameEverywhere(contents, 'v')) notes.push(`${name} left stores with different file counts or byte counts across runs`)
  const busy = contention(name, all)
  if (busy) notes.push(busy)
  for (const n of notes) process.stderr.write(`  warning: ${n}\n`)
  const first = all[0]
  return {
    id: first.id,
    store: first.store,
    ...(first.indexBytes !== undefined ? { indexBytes: first.indexBytes } : {}),
    cold: summarise(runs.cold, ctx.corpus.bytes),
    warm: summarise(runs.warm, ctx.corpus.bytes),
    samples: runs,
    notes,
  }
}

async function stepBlake3(ctx) {
  // the BLAKE3 push hashes with: hashBytes of dist/chunk (the addon's C implementation)
  const { hashBytes: blake3 } = await import(pathToFileURL(path.join(repo, 'dist/chunk/index.js')).href)
  let buf = Buffer.allocUnsafe(16 * 1024 * 1024)
  const { blake3: runs } = await coldAndWarm(ctx, [{ label: 'blake3', run: async () => {
    // Synchronous reads into one reused buffer and one-shot hashing per file: the cheapest way to
    // get every byte through BLAKE3 on one JS thread, so it bounds what push can do per core.
    let hashNs = 0n
    let bytes = 0
    const cpu0 = process.cpuUsage()
    const t0 = nowNs()
    for (const f of ctx.corpus.files) {
      const fd = fs.openSync(f.path, 'r')
      try {
        if (f.size > buf.length) buf = Buffer.allocUnsafe(f.size)
        let n = 0
        while (n < f.size) {
          const r = fs.readSync(fd, buf, n, f.size - n, n)
          if (r === 0) break
          n += r
        }
        const h0 = nowNs()
        blake3(buf.subarray(0, n))
        hashNs += nowNs() - h0
        bytes += n
      } finally {
        fs.closeSync(fd)
      }
    }
    const wallMs = msSince(t0)
    const cpu = process.cpuUsage(cpu0)
    if (bytes !== ctx.corpus.bytes) throw new Error(`read ${bytes} bytes, corpus walk counted ${ctx.corpus.bytes}: is the corpus changing?`)
    return { wallMs, hashMs: Number(hashNs) / 1e6, userS: cpu.user / 1e6, sysS: cpu.system / 1e6, inProcess: true }
  } }])
  return finishLimitStep(ctx, runs, 'blake3')
}

async function stepB3sum(ctx) {
  // One NUL-separated list through xargs: no argv limit, a handful of b3sum processes in all.
  const list = Buffer.from(ctx.corpus.files.map((f) => `${f.path}\0`).join(''))
  const { b3sum: runs } = await coldAndWarm(ctx, [{ label: 'b3sum', run: async () => {
    const r = await runCommand(['xargs', '-0', 'b3sum', '--num-threads', '1', '--no-names'], { input: list, keepStdout: false, rusage: true })
    return { wallMs: r.wallMs, userS: r.userS, sysS: r.sysS, maxRssKiB: r.maxRssKiB }
  } }])
  return finishLimitStep(ctx, runs, 'b3sum')
}

async function stepZstd(ctx) {
  // Level 3 as src/format/object.ts compresses chunks; --single-thread so compression and I/O
  // share one core like b3sum --num-threads 1, and the figure is a per-core cost.
  const list = Buffer.from(ctx.corpus.files.map((f) => `${f.path}\0`).join(''))
  const { zstd: runs } = await coldAndWarm(ctx, [{ label: 'zstd', run: async () => {
    const r = await runCommand(['xargs', '-0', 'zstd', '-q', `-${ctx.zstdLevel}`, '--single-thread', '-c'], { input: list, keepStdout: false, rusage: true })
    return { wallMs: r.wallMs, userS: r.userS, sysS: r.sysS, maxRssKiB: r.maxRssKiB }
  } }])
  return finishLimitStep(ctx, runs, 'zstd')
}

/** Corpus file contents in memory, in walk order, until `limit` bytes (whole files only). */
function loadFiles(files, limit) {
  const buffers = []
  let bytes = 0
  for (const f of files) {
    if (bytes >= limit) break
    const b = fs.readFileSync(f.path)
    buffers.push(b)
    bytes += b.length
  }
  return { buffers, bytes }
}

async function stepChunker(ctx) {
  const chunker = ctx.chunker
  if (!chunker) throw new Error('dist/chunk/index.js did not load')
  // Two workloads. Per file is what push does: every file cut from its own start, so the many
  // files smaller than `min` cost a call and no scanning. One contiguous buffer is the pure
  // scanning speed, the number to compare with published FastCDC figures.
  const perFile = loadFiles(ctx.corpus.files, CHUNKER_BYTES)
  const contiguous = Buffer.allocUnsafe(CHUNKER_BYTES)
  for (let off = 0, i = 0; off < contiguous.length; i = (i + 1) % perFile.buffers.length) {
    off += perFile.buffers[i].copy(contiguous, off)
  }
  const implementations = chunker.nativeAvailable ? ['native', 'js'] : ['js']
  if (!chunker.nativeAvailable) process.stderr.write(`  warning: native chunker not loaded (${chunker.nativeLoadError}); timing the JS fallback only\n`)
  const out = {}
  for (const impl of implementations) {
    const cut = chunker.cutter(impl)
    for (const { workload, buffers, bytes } of [
      { workload: 'perFile', buffers: perFile.buffers, bytes: perFile.bytes },
      { workload: 'contiguous', buffers: [contiguous], bytes: contiguous.length },
    ]) {
      const samples = []
      // run 0 is the first touch (JIT not yet optimised, tables not in cache); the rest are steady state
      for (let i = 0; i <= ctx.runs; i++) {
        let count = 0
        const activity = otherActivity()
        const t0 = nowNs()
        for (const b of buffers) count += cut(b)
        const wallMs = msSince(t0)
        samples.push({ wallMs, chunks: count, ...activity(0) })
        process.stderr.write(`  chunker ${impl} ${workload} ${i === 0 ? 'first' : `${i}/${ctx.runs}`}: ${(bytes / GB / (wallMs / 1000)).toFixed(2)} GB/s\n`)
      }
      const gbps = (s) => bytes / GB / (s.wallMs / 1000)
      const steady = samples.slice(1)
      out[`${impl}.${workload}`] = {
        implementation: impl,
        workload,
        bytes,
        buffers: buffers.length,
        chunks: samples[0].chunks,
        meanChunkBytes: bytes / samples[0].chunks,
        first: { wallMs: samples[0].wallMs, gbPerS: gbps(samples[0]) },
        steady: { runs: steady.length, wallMs: median(steady.map((s) => s.wallMs)), gbPerS: median(steady.map(gbps)) },
        samples,
      }
      const busy = contention(`chunker ${impl} ${workload}`, samples)
      if (busy) {
        out[`${impl}.${workload}`].notes = [busy]
        process.stderr.write(`  warning: ${busy}\n`)
      }
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Report

/** snapdir / casync and snapdir / baseline, for one corpus's compared steps. */
function computeRatios(steps) {
  const ratios = {}
  const speed = (a, b) => ({
    speedCold: a.cold.mbPerS / b.cold.mbPerS,
    speedWarm: a.warm.mbPerS / b.warm.mbPerS,
    speedWarmDurable: a.warm.durableMbPerS / b.warm.durableMbPerS,
  })
  if (steps.snapdir && steps.casync) {
    const s = steps.snapdir
    const c = steps.casync
    Object.assign(ratios, speed(s, c))
    ratios.meetsTarget = ratios.speedCold >= 3 && ratios.speedWarm >= 3
    ratios.storeBytes = s.store.fileBytes / (c.store.fileBytes + c.indexBytes)
    ratios.storeBytesChunksOnly = s.store.fileBytes / c.store.fileBytes
    ratios.objects = s.store.objects / c.store.objects
  }
  if (steps.snapdir && steps.baseline) {
    ratios.ofBaseline = { ...speed(steps.snapdir, steps.baseline), warmCpu: steps.snapdir.warm.cpuS / steps.baseline.warm.cpuS }
  }
  return ratios
}

function corpusLine(corpus) {
  return `${fmtInt(corpus.files)} regular files, ${fmtInt(corpus.bytes)} bytes (${fmt(corpus.bytes / MB)} MB; ${fmtInt(corpus.uniqueBytes)} in ${fmtInt(corpus.uniqueFiles)} distinct inodes), ${fmtInt(corpus.dirs)} dirs, ${fmtInt(corpus.symlinks)} symlinks`
}

function report(result) {
  const { steps } = result
  const lines = []
  const m = result.machine
  lines.push(`push throughput, ${result.date}`)
  lines.push(`machine: ${m.cpu} (family ${m.cpuFamily ?? '?'} model ${m.cpuModel ?? '?'}), ${m.cores} cores, kernel ${m.kernel}, node ${m.node}, ${m.fsType} under ${m.scratchDir}`)
  lines.push(`chunk sizes min/avg/max: ${result.chunkSizes.min}/${result.chunkSizes.avg}/${result.chunkSizes.max} (${result.chunkSizes.source}); medians of ${result.runs} runs; MB = 10^6 bytes`)
  const inTurns = [...COMPARED, ...(result.baseline ? ['the baseline'] : [])].join(', ')
  lines.push(`${inTurns} ran in turns on each corpus; commands ran without NODE_EXTRA_CA_CERTS${m.nodeExtraCaCertsSet ? ' (set here: +0.1 s of Node start-up per process)' : ''}`)
  if (result.baseline) lines.push(`baseline: ${result.baseline.root} at ${result.baseline.commit}; this checkout at ${m.snapdirCommit}`)

  const headers = ['step', 'cold s', 'cold MB/s', 'warm s', 'warm MB/s', 'warm+sync MB/s', 'warm CPU s', 'store bytes', 'objects']
  const row = (name, s, extra = {}) => [
    name,
    fmt(s.cold.wallMs / 1000, 2),
    fmt(s.cold.mbPerS),
    fmt(s.warm.wallMs / 1000, 2),
    fmt(s.warm.mbPerS),
    fmt(s.warm.durableMbPerS),
    fmt(s.warm.cpuS, 2),
    extra.store ?? '-',
    extra.objects ?? '-',
  ]
  for (const [k, entry] of result.corpora.entries()) {
    const cs = entry.steps
    lines.push('')
    lines.push(`corpus ${k + 1}: ${entry.corpus.root}`)
    lines.push(`  ${corpusLine(entry.corpus)}`)
    const rows = []
    if (cs.snapdir) rows.push(row('snapdir push', cs.snapdir, { store: fmtInt(cs.snapdir.store.fileBytes), objects: fmtInt(cs.snapdir.store.objects) }))
    if (cs.baseline) rows.push(row(`snapdir push, ${result.baseline.label}`, cs.baseline, { store: fmtInt(cs.baseline.store.fileBytes), objects: fmtInt(cs.baseline.store.objects) }))
    if (cs.casync) rows.push(row('casync make', cs.casync, { store: `${fmtInt(cs.casync.store.fileBytes)} +${fmtInt(cs.casync.indexBytes)} idx`, objects: fmtInt(cs.casync.store.objects) }))
    if (k === 0) {
      if (steps.blake3) rows.push(row('blake3 (node, 1 thread)', steps.blake3))
      if (steps.b3sum) rows.push(row('b3sum --num-threads 1', steps.b3sum))
      if (steps.zstd) rows.push(row(`zstd -${result.zstdLevel} --single-thread`, steps.zstd))
    }
    if (rows.length) lines.push(table(headers, rows))
    if (k === 0 && steps.blake3) lines.push(`blake3 hash-only (file reads excluded): cold ${fmt(steps.blake3.cold.hashOnlyMbPerS)} MB/s, warm ${fmt(steps.blake3.warm.hashOnlyMbPerS)} MB/s`)
    for (const name of ['snapdir', 'casync']) {
      const st = cs[name]?.store
      if (st) lines.push(`${name} store on disk: ${fmtInt(st.fileBytes)} bytes in ${fmtInt(st.files)} files (${fmtInt(st.chunks)} chunks), du -sb ${fmtInt(st.duApparentBytes)}, allocated ${fmtInt(st.allocatedBytes)}`)
    }
  }

  if (steps.chunker) {
    lines.push('')
    const crow = Object.values(steps.chunker).map((c) => [
      `${c.implementation}, ${c.workload === 'perFile' ? 'per file' : 'contiguous'}`,
      fmt(c.bytes / MB),
      fmtInt(c.buffers),
      fmtInt(c.chunks),
      fmtInt(Math.round(c.meanChunkBytes)),
      fmt(c.first.gbPerS, 2),
      fmt(c.steady.gbPerS, 2),
    ])
    lines.push(table(['chunker (in memory, 1 core, corpus 1)', 'MB', 'buffers', 'chunks', 'mean chunk', 'first GB/s', 'steady GB/s'], crow))
  }

  // every corpus's ratio side by side: the one on the reference corpus is not the only one shown
  const withCasync = result.corpora.filter((e) => e.ratios.speedWarm !== undefined)
  if (withCasync.length) {
    lines.push('')
    lines.push('snapdir / casync push speed, every corpus (target >= 3x cold and warm):')
    lines.push(table(
      ['corpus', 'MB', 'cold', 'warm', 'warm+sync', 'store bytes', 'objects', 'target'],
      withCasync.map((e) => [
        path.basename(e.corpus.root),
        fmt(e.corpus.bytes / MB),
        `${fmt(e.ratios.speedCold, 2)}x`,
        `${fmt(e.ratios.speedWarm, 2)}x`,
        `${fmt(e.ratios.speedWarmDurable, 2)}x`,
        fmt(e.ratios.storeBytes, 3),
        fmt(e.ratios.objects, 3),
        e.ratios.meetsTarget ? 'met' : 'NOT met',
      ]),
    ))
    lines.push('  store bytes: casync counted with its .caidx, as snapdir\'s store holds its tree')
  }
  const withBaseline = result.corpora.filter((e) => e.ratios.ofBaseline)
  if (withBaseline.length) {
    lines.push('')
    lines.push(`this checkout / ${result.baseline.label}: push speed (above 1: faster now) and warm CPU seconds (above 1: more now):`)
    lines.push(table(
      ['corpus', 'cold', 'warm', 'warm+sync', 'warm CPU', 'same ID'],
      withBaseline.map((e) => [
        path.basename(e.corpus.root),
        fmt(e.ratios.ofBaseline.speedCold, 3),
        fmt(e.ratios.ofBaseline.speedWarm, 3),
        fmt(e.ratios.ofBaseline.speedWarmDurable, 3),
        fmt(e.ratios.ofBaseline.warmCpu, 3),
        e.steps.snapdir.id === e.steps.baseline.id ? 'yes' : 'NO',
      ]),
    ))
  }
  if (result.ratios.ofBlake3Warm !== undefined) lines.push(`snapdir warm push speed / node BLAKE3 warm speed (corpus 1): ${fmt(result.ratios.ofBlake3Warm, 2)}`)
  const stepNotes = [
    ...result.corpora.flatMap((e) => Object.values(e.steps).flatMap((s) => s.notes ?? [])),
    ...Object.entries(steps).flatMap(([name, s]) => (name === 'chunker' ? Object.values(s).flatMap((c) => c.notes ?? []) : (s.notes ?? []))),
  ]
  for (const n of [...stepNotes, ...result.notes]) lines.push(`warning: ${n}`)
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------------

function describe(root) {
  const walked = scanCorpus(root)
  const corpus = {
    root,
    files: walked.files.length,
    bytes: walked.bytes,
    uniqueFiles: walked.uniqueFiles,
    uniqueBytes: walked.uniqueBytes,
    dirs: walked.dirs,
    symlinks: walked.symlinks,
    otherEntries: walked.otherEntries,
    marker: corpusMarker(root),
  }
  return { corpus, files: walked.files }
}

async function main() {
  const opts = parseOptions()

  // Every prerequisite is checked before anything is timed: a run that dies at step four after
  // minutes of measuring helps nobody.
  const problems = [dropCachesProblem()].filter(Boolean)
  const runNotes = []
  const [first, ...others] = opts.corpora
  if (!fs.existsSync(first)) problems.push(`corpus ${first} does not exist: run bash bench/setup.sh, or pass --corpus DIR`)
  const missing = others.filter((c) => !fs.existsSync(c))
  if (missing.length && !opts.defaultCorpora) problems.push(`corpus ${missing.join(', ')} does not exist`)
  else if (missing.length) {
    const note = `corpora not built, left out: ${missing.map((c) => path.basename(c)).join(', ')} (bash bench/setup.sh ${missing.map((c) => path.basename(c)).join(' ')})`
    runNotes.push(note)
    process.stderr.write(`warning: ${note}\n`)
  }
  const corpora = [first, ...others.filter((c) => !missing.includes(c))]
  if (opts.steps.includes('snapdir') && !cliBuilt()) {
    problems.push('bin/snapdir or dist/bundle is missing: run npm run build (or leave snapdir out with --steps)')
  }
  if (opts.steps.includes('casync') && !which('casync')) problems.push('casync is not installed: run bash bench/setup.sh')
  for (const tool of ['b3sum', 'zstd']) {
    if (!opts.steps.includes(tool) || which(tool)) continue
    if (opts.explicit) problems.push(`${tool} is not installed: run bash bench/setup.sh`)
    else opts.steps = opts.steps.filter((s) => s !== tool)
  }
  let chunker = null
  if (fs.existsSync(path.join(repo, 'dist/chunk/index.js'))) chunker = await loadChunker()
  else if (opts.steps.includes('chunker')) problems.push('dist/chunk/index.js is missing: run npm run build (or leave chunker out with --steps)')
  if (problems.length) fail(problems.join('\n'))

  const chunkSizes = chunker
    ? { min: chunker.params.min, avg: chunker.params.avg, max: chunker.params.max, source: 'DEFAULT_CHUNKER of dist/chunk' }
    : { ...FALLBACK_CHUNK_SIZES, source: 'built-in 16/64/256 KiB; dist/chunk not built' }
  // the level push compresses chunks at, for the zstd row
  const { ZSTD_LEVEL: zstdLevel } = await import(pathToFileURL(path.join(repo, 'dist/format/object.js')).href)

  // Scratch stores live beside each corpus, on the same disk, never in tmpfs: a store in memory
  // would hide the write cost that push really has.
  const scratches = []
  const cleanup = () => {
    for (const dir of scratches.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
  }
  cleanupOnSignals('push-throughput', cleanup)

  const buildBefore = buildFingerprint()
  const baselineBefore = opts.baseline && buildFingerprint(opts.baseline.root)
  const entries = []
  const steps = {}
  try {
    for (const [k, root] of corpora.entries()) {
      process.stderr.write(`walking ${root}\n`)
      const { corpus, files } = describe(root)
      if (corpus.bytes === 0) fail(`corpus ${root} holds no file data`)
      const scratch = fs.mkdtempSync(path.join(path.dirname(root), 'push-throughput-'))
      scratches.push(scratch)
      const ctx = { corpus: { ...corpus, files }, runs: opts.runs, scratch, chunkSizes, chunker, zstdLevel }
      // snapdir, casync and the baseline, compared with each other, run in turns (see coldAndWarm)
      const commands = { snapdir: (c) => snapdirTool(c), casync: casyncTool }
      const tools = COMPARED.filter((s) => opts.steps.includes(s)).map((s) => commands[s](ctx))
      if (opts.baseline) tools.push(snapdirTool(ctx, { label: 'baseline', name: `snapdir push (${opts.baseline.label})`, bin: opts.baseline.bin }))
      const compared = {}
      if (tools.length) {
        process.stderr.write(`${path.basename(root)}: ${tools.map((t) => t.label).join(', ')}\n`)
        Object.assign(compared, await stepCommands(ctx, tools))
      }
      if (compared.snapdir && compared.baseline && compared.snapdir.id !== compared.baseline.id) {
        runNotes.push(`${path.basename(root)}: the baseline printed ID ${compared.baseline.id}, this checkout ${compared.snapdir.id}: snapshot IDs changed`)
      }
      entries.push({ corpus, steps: compared, ratios: computeRatios(compared) })
      if (k > 0) continue
      // the per-core limits: on the first corpus only
      const impl = { blake3: stepBlake3, b3sum: stepB3sum, zstd: stepZstd, chunker: stepChunker }
      for (const name of ALL_STEPS.filter((s) => opts.steps.includes(s) && impl[s])) {
        process.stderr.write(`${name}\n`)
        steps[name] = await impl[name](ctx)
      }
    }
  } finally {
    cleanup()
  }
  const buildAfter = buildFingerprint()
  const changed = buildChangedNote(buildBefore, buildAfter)
  if (changed) runNotes.push(changed)
  const baselineChanged = opts.baseline && buildChangedNote(baselineBefore, buildFingerprint(opts.baseline.root))
  if (baselineChanged) runNotes.push(`the baseline's ${baselineChanged}`)

  const ratios = { ...entries[0].ratios }
  if (entries[0].steps.snapdir && steps.blake3) ratios.ofBlake3Warm = entries[0].steps.snapdir.warm.mbPerS / steps.blake3.warm.mbPerS

  const scratchParent = path.dirname(first)
  const result = {
    schema: 2,
    date: new Date().toISOString(),
    machine: {
      ...hostInfo(),
      fsType: fsTypeAt(scratchParent),
      scratchDir: scratchParent,
      casync: tryRun('casync', ['--version']),
      b3sum: tryRun('b3sum', ['--version']),
      zstd: tryRun('zstd', ['--version']),
      snapdirCommit: snapdirCommit(),
      snapdirChunker: process.env.SNAPDIR_CHUNKER ?? 'default',
      // left out of the measured commands' environment (measuredEnv)
      nodeExtraCaCertsSet: process.env.NODE_EXTRA_CA_CERTS !== undefined,
    },
    ...(opts.baseline ? { baseline: { root: opts.baseline.root, commit: opts.baseline.commit, label: opts.baseline.label, build: buildFingerprint(opts.baseline.root) } } : {}),
    // corpus 1, the reference: the per-core limit steps ran on it, and `ratios` are its
    corpus: entries[0].corpus,
    // every corpus: snapdir, casync and the baseline, with their ratios
    corpora: entries,
    chunkSizes,
    zstdLevel,
    runs: opts.runs,
    build: buildAfter,
    steps,
    ratios,
    notes: runNotes,
  }
  writeResult(opts.out, result, report)
}

main().catch((error) => fail(error.stack ?? String(error)))
