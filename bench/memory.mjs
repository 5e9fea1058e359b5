#!/usr/bin/env node
// Memory of push, pull, verify and a mount on a tree of many small files (issue 15: 200,000 files),
// where what a command holds per entry, not per byte, decides its peak. Builds the corpus once
// (bench/lib/small-files.mjs, deterministic) under $SNAPDIR_BENCH_DIR, then, with a fresh file store:
//
//   push     peak RSS (GNU time), wall and CPU seconds
//   pull     into a fresh directory: the same
//   verify   the same
//   mount    the daemon's RSS (/proc/PID/status) idle after mounting, after a metadata walk
//            (find, from another process) and after reading every file (tar | wc -c), its peak
//            (VmHWM), and what of it is the memory chunk cache: configured (--memory-cache) and
//            held at the end (the mount's --json summary), so the rest is the mount's own
//
//   npm run build && node bench/memory.mjs [--files N] [--steps push,pull,verify,mount] [--snapdir DIR]
//
// Prints a table and writes bench/results/memory.json. Needs FUSE for the mount step.

import fs from 'node:fs'
import path from 'node:path'
import {
  benchDir, cleanupOnSignals, contention, defaultOut, failer, fmt, hostInfo, otherActivity, parseCommandLine, parseSteps,
  readOr, repo, runCommand, snapdirCommit, table, writeResult,
} from './lib/common.mjs'
import { startFuseDaemon, stopAllDaemons, stopFuseDaemon } from './lib/mounts.mjs'
import { buildSmallFiles } from './lib/small-files.mjs'

const ALL_STEPS = ['push', 'pull', 'verify', 'mount']
const MEMORY_CACHE_MIB = 256

const usage = `usage: node bench/memory.mjs [options]

  --files N      files in the corpus (default 200000; built once as $SNAPDIR_BENCH_DIR/small-files-N)
  --steps LIST   comma-separated subset of ${ALL_STEPS.join(',')} (default: all; pull, verify and
                 mount need push, or --store and --id)
  --snapdir DIR  the checkout whose bin/snapdir is measured (default: this one)
  --out FILE     JSON report (default bench/results/memory.json)
  -h, --help     this text`

const fail = failer('memory')

const values = parseCommandLine(
  {
    files: { type: 'string', default: '200000' },
    steps: { type: 'string' },
    snapdir: { type: 'string' },
    out: { type: 'string', default: defaultOut('memory') },
  },
  usage,
  fail,
)
const files = Number(values.files)
if (!Number.isInteger(files) || files < 1) fail(`--files ${values.files}: expected a positive integer`, 2)
const { steps } = parseSteps(values.steps, ALL_STEPS, fail)
const checkout = path.resolve(values.snapdir ?? repo)
const bin = path.join(checkout, 'bin/snapdir')
if (!fs.existsSync(bin)) fail(`${bin} does not exist: build that checkout first`)

/** The corpus, built once: a marker beside it says it is complete (a killed build leaves only *.partial). */
function corpus() {
  const root = path.join(benchDir, `small-files-${files / 1000}k`)
  const marker = `${root}.complete`
  if (fs.existsSync(marker) && fs.existsSync(root)) return { root, ...JSON.parse(fs.readFileSync(marker, 'utf8')) }
  fs.rmSync(root, { recursive: true, force: true })
  fs.mkdirSync(benchDir, { recursive: true })
  process.stderr.write(`memory: building ${root} (once)\n`)
  const made = buildSmallFiles(root, { files })
  fs.writeFileSync(marker, `${JSON.stringify(made)}\n`)
  return { root, ...made }
}

const scratch = fs.mkdtempSync(path.join(benchDir, 'memory-'))
const store = path.join(scratch, 'store')
cleanupOnSignals('memory', () => {
  stopAllDaemons()
  fs.rmSync(scratch, { recursive: true, force: true })
})

const MiB = 1024 * 1024
const kib = (n) => (n === null || n === undefined ? null : n * 1024)

/** One CLI run under GNU time: wall, CPU, peak RSS, and how busy the rest of the machine was. */
async function timed(args) {
  const other = otherActivity()
  const r = await runCommand([bin, ...args], { rusage: true })
  const cpu = r.userS === null ? null : r.userS + r.sysS
  return { wallMs: r.wallMs, cpuS: cpu, peakRssBytes: kib(r.maxRssKiB), stdout: r.stdout.trim(), ...other(cpu) }
}

/** VmRSS and VmHWM of a process, in bytes. */
function rssOf(pid) {
  const status = readOr(`/proc/${pid}/status`)
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
  return { rss: field('VmRSS'), hwm: field('VmHWM') }
}

async function mountStep(id) {
  const mnt = path.join(scratch, 'mnt')
  fs.mkdirSync(mnt)
  const summary = path.join(scratch, 'mount.json')
  const handle = await startFuseDaemon({
    label: 'snapdir mount',
    argv: [bin, 'mount', '--store', store, '--id', id, '--memory-cache', String(MEMORY_CACHE_MIB), '--json', mnt],
    mnt,
    log: path.join(scratch, 'mount.log'),
    stdout: summary,
    expectLine: true,
  })
  const out = { configuredCacheBytes: MEMORY_CACHE_MIB * MiB }
  try {
    out.idle = rssOf(handle.pid).rss
    const walk = await runCommand(['bash', '-c', "find \"$1\" -printf '%i %m %s %T@ %p\\n' | wc -l", 'walk', mnt])
    out.walkEntries = Number(walk.stdout.trim())
    out.walkMs = walk.wallMs
    out.afterWalk = rssOf(handle.pid).rss
    const read = await runCommand(['bash', '-c', 'set -o pipefail; tar -C "$1" -cf - . | wc -c', 'read', mnt])
    out.readBytes = Number(read.stdout.trim())
    out.readMs = read.wallMs
    const after = rssOf(handle.pid)
    out.afterReads = after.rss
    out.peak = after.hwm
  } finally {
    stopFuseDaemon(handle)
  }
  const stats = JSON.parse(readOr(summary, 'null') ?? 'null')
  out.cachedBytes = stats?.memoryCachedBytes ?? null
  out.cachePeakBytes = stats?.memoryCachePeakBytes ?? null
  out.withoutCache = out.cachedBytes === null ? null : out.afterReads - out.cachedBytes
  return out
}

async function main() {
  const c = corpus()
  const result = { host: hostInfo(), commit: snapdirCommit(checkout), checkout, corpus: c, steps: {}, notes: [] }
  let id = null
  try {
    if (steps.includes('push')) {
      const r = await timed(['push', '--store', store, c.root])
      id = r.stdout.split('\n').pop()
      result.steps.push = r
    }
    if (id === null) fail('pull, verify and mount need the push step')
    result.id = id
    if (steps.includes('pull')) {
      result.steps.pull = await timed(['pull', '--store', store, '--id', id, path.join(scratch, 'pulled')])
      fs.rmSync(path.join(scratch, 'pulled'), { recursive: true, force: true })
    }
    if (steps.includes('verify')) result.steps.verify = await timed(['verify', '--store', store, '--id', id])
    if (steps.includes('mount')) result.mount = await mountStep(id)
  } finally {
    stopAllDaemons()
    fs.rmSync(scratch, { recursive: true, force: true })
  }
  for (const [name, s] of Object.entries(result.steps)) {
    const warning = contention(name, [s])
    if (warning) result.notes.push(warning)
  }
  writeResult(path.resolve(values.out), result, report)
}

const mb = (b) => (b === null || b === undefined || !Number.isFinite(b) ? '-' : fmt(b / 1e6, 0))

function report(r) {
  const rows = Object.entries(r.steps).map(([name, s]) => [name, mb(s.peakRssBytes), fmt(s.wallMs / 1000, 1), fmt(s.cpuS, 1)])
  const lines = [
    `memory: ${r.corpus.files.toLocaleString('en-US')} files, ${mb(r.corpus.bytes)} MB, snapdir ${r.commit?.slice(0, 12) ?? '?'}`,
    '',
    table(['command', 'peak RSS MB', 'wall s', 'CPU s'], rows),
  ]
  const m = r.mount
  if (m) {
    lines.push(
      '',
      `mount (memory cache ${mb(m.configuredCacheBytes)} MB configured): RSS MB idle ${mb(m.idle)}, after walk ${mb(m.afterWalk)} ` +
        `(${m.walkEntries} entries, ${fmt(m.walkMs / 1000)} s), after reads ${mb(m.afterReads)} (${mb(m.readBytes)} MB, ${fmt(m.readMs / 1000)} s), peak ${mb(m.peak)}`,
      `  chunk cache held at the end ${mb(m.cachedBytes)} MB (peak ${mb(m.cachePeakBytes)}): the mount apart from it ${mb(m.withoutCache)} MB`,
    )
  }
  if (r.notes.length) lines.push('', ...r.notes.map((n) => `note: ${n}`))
  return lines.join('\n')
}

await main()
