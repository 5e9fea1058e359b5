#!/usr/bin/env node
// Reading a snapshot through a mount, in one run: `snapdir mount` (lazy FUSE over a store) against
// the native directory it was pushed from and against squashfuse over a zstd SquashFS image of the
// same tree (the usual way to ship a read-only tree as one file and mount it without root). Two
// workloads, each cold (page cache dropped, new mount process, for snapdir an empty chunk cache)
// and warm (the same mount again, everything cached):
//
//   full-tree read   tar -C DIR -cf - . | wc -c       (every byte of every file really read)
//   metadata walk    find DIR -printf '%i %m %u %g %s %T@ %p\n' > /dev/null   (every entry stat'ed)
//
//   bash bench/setup.sh && npm run build && node bench/mount-read.mjs [options]
//
// Prints a table on stdout and writes bench/results/mount-read.json. bench/README.md says what each
// number means. Needs root: it writes /proc/sys/vm/drop_caches and mounts FUSE file systems.
//
// Plain ESM that needs no compilation: it drives the built CLI (bin/snapdir -> dist/), so it
// measures exactly what ships. Every mount it makes is unmounted before it exits, also on error
// and on SIGINT/SIGTERM/SIGHUP; a mount that hangs is aborted through /sys/fs/fuse/connections.

import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {
  CLK_TCK, MB, baselineCheckout, benchDir, buildChangedNote, buildFingerprint, cleanupOnSignals, cliBuilt, contention, corpusPath, defaultOut,
  describeCorpus, dropCaches, dropCachesProblem, failer, fmt, fmtInt, fsTypeAt, hostInfo, measureTree, median, medianFields,
  msSince, nowNs, otherActivity, parseCommandLine, parseRuns, parseSteps, privateEnv, settle, snapdirBin, snapdirCommit,
  table, tail, tryRun, which, withGnuTime, writeResult,
} from './lib/common.mjs'
import {
  abortFuse, forceUnmount, fusermountBin, mountAt, mountNotes, mountTable, mountsUnder, procStat, runningDaemons,
  startFuseDaemon, stopAllDaemons, stopFuseDaemon,
} from './lib/mounts.mjs'

const ALL_STEPS = ['native', 'squashfuse', 'snapdir']

const WORKLOADS = {
  read: {
    title: 'full-tree read',
    // Not `-f /dev/null`: GNU tar recognises /dev/null as its archive and then skips reading file
    // data. Through a pipe every byte is read; wc -c counts the archive as a cross-check.
    // pipefail: a tar error is not hidden behind wc's exit status.
    script: 'set -o pipefail; tar -C "$1" -cf - . | wc -c',
    command: 'tar -C DIR -cf - . | wc -c',
    unit: 'MB/s',
  },
  walk: {
    title: 'metadata walk',
    script: "find \"$1\" -printf '%i %m %u %g %s %T@ %p\\n' > /dev/null",
    command: "find DIR -printf '%i %m %u %g %s %T@ %p\\n' > /dev/null",
    unit: 'entries/s',
  },
}

const usage = `usage: node bench/mount-read.mjs [options]

  --corpus DIR   tree to read (default $SNAPDIR_BENCH_DIR/debian-rootfs, built by bench/setup.sh)
  --steps LIST   comma-separated subset of ${ALL_STEPS.join(',')} (default: all; snapdir is
                 left out with a warning when bin/snapdir has no mount command, unless named)
  --runs N       cold+warm pairs per target and workload, medians reported (default 3)
  --timeout S    kill a workload command after S seconds and abort its mount (default 600)
  --baseline DIR another snapdir checkout, built (DIR/bin/snapdir): mounted as one more target,
                 in turns with the others, and compared with this one (before/after)
  --out FILE     JSON report (default bench/results/mount-read.json)
  -h, --help     this text

Scratch data (SquashFS image, snapdir store, chunk caches, mount points) goes to a fresh
directory under $SNAPDIR_BENCH_DIR (default /var/tmp/snapdir-bench), deleted at the end.`

const fail = failer('mount-read')

function parseOptions() {
  const values = parseCommandLine(
    {
      corpus: { type: 'string' },
      steps: { type: 'string' },
      runs: { type: 'string', default: '3' },
      timeout: { type: 'string', default: '600' },
      baseline: { type: 'string' },
      out: { type: 'string', default: defaultOut('mount-read') },
    },
    usage,
    fail,
  )
  const runs = parseRuns(values.runs, fail)
  const timeout = Number(values.timeout)
  if (!Number.isFinite(timeout) || timeout <= 0) fail(`--timeout ${values.timeout}: expected a positive number of seconds`, 2)
  return {
    corpus: corpusPath(values.corpus),
    ...parseSteps(values.steps, ALL_STEPS, fail, { allowEmpty: false }),
    runs,
    timeoutMs: timeout * 1000,
    baseline: baselineCheckout(values.baseline, fail),
    out: path.resolve(values.out),
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

// Probes of tools and mounts: a hung FUSE mount must not hang them (timeout), and some tools
// (squashfuse --version) print what is asked and exit non-zero (their output is kept).
const PROBE = { timeoutMs: 10_000, outputOnFailure: true }

/** Regular files and their bytes under `root` (a store, a chunk cache). */
function fileTotals(root) {
  const t = measureTree(root)
  return { files: t.files, bytes: t.fileBytes }
}

/**
 * CPU seconds of a process and everything below it (threads included; children it reaped
 * included through cutime/cstime): the FUSE daemon's share of a workload.
 */
function treeCpuS(rootPid) {
  const children = new Map()
  const stats = new Map()
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const st = procStat(name)
    if (!st) continue
    const pid = Number(name)
    stats.set(pid, st)
    const ppid = Number(st[1])
    if (!children.has(ppid)) children.set(ppid, [])
    children.get(ppid).push(pid)
  }
  let ticks = 0
  const stack = [rootPid]
  while (stack.length) {
    const pid = stack.pop()
    const st = stats.get(pid)
    if (!st) continue
    // fields 14..17 of stat(5) (utime stime cutime cstime), 0-based 11..14 after the name
    ticks += Number(st[11]) + Number(st[12]) + Number(st[13]) + Number(st[14])
    stack.push(...(children.get(pid) ?? []))
  }
  return ticks / CLK_TCK
}

/** The block devices (/sys/class/block/NAME/stat) behind the given paths: bytes read from disk. */
function diskStatFiles(paths) {
  const files = new Set()
  for (const p of paths) {
    const source = tryRun('findmnt', ['-n', '-o', 'SOURCE', '--target', p], PROBE)
    if (!source?.startsWith('/dev/')) continue
    let name
    try {
      name = path.basename(fs.realpathSync(source))
    } catch {
      continue
    }
    const stat = `/sys/class/block/${name}/stat`
    if (fs.existsSync(stat)) files.add(stat)
  }
  return [...files]
}

function diskReadBytes(statFiles) {
  if (!statFiles.length) return null
  // field 3 of the block stat file: sectors read, always in 512-byte units
  return statFiles.reduce((sum, f) => sum + Number(fs.readFileSync(f, 'utf8').trim().split(/\s+/)[2]) * 512, 0)
}

// ---------------------------------------------------------------------------------------------
// Timed commands

const runningCommands = new Set()

/**
 * Runs `bash -c script _ ...args` in its own process group and times it; GNU time adds the CPU
 * seconds of bash, tar/find and wc (children it waited for included). After `timeoutMs` the group
 * gets SIGKILL; a process blocked in a FUSE request may not die of it, so 5 s later `onHang` runs
 * (aborting the mount's connection) and the command is given 5 s more.
 */
function runShell(script, args, { timeoutMs, onHang = null, okCodes = [0], env = process.env }) {
  const timed = withGnuTime(['bash', '-c', script, 'bash', ...args], 'mount-read')
  const full = timed.argv
  return new Promise((resolve, reject) => {
    const t0 = nowNs()
    const child = spawn(full[0], full.slice(1), { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env })
    runningCommands.add(child)
    const out = []
    const err = []
    let timedOut = false
    const timers = []
    child.stdout.on('data', (b) => out.push(b))
    child.stderr.on('data', (b) => err.push(b))
    timers.push(
      setTimeout(() => {
        timedOut = true
        try {
          // its process group (spawned detached), never process.kill(-0): that would be this one's
          if (child.pid) process.kill(-child.pid, 'SIGKILL')
        } catch {}
        timers.push(
          setTimeout(() => {
            onHang?.()
            timers.push(setTimeout(() => finish(null, 'SIGKILL', true), 5_000))
          }, 5_000),
        )
      }, timeoutMs),
    )
    let done = false
    const finish = (code, signal, gaveUp = false) => {
      if (done) return
      done = true
      const wallMs = msSince(t0)
      for (const t of timers) clearTimeout(t)
      if (!gaveUp) runningCommands.delete(child)
      const stdout = Buffer.concat(out).toString('utf8')
      const stderr = Buffer.concat(err).toString('utf8')
      const rusage = timed.rusage()
      const what = `bash -c '${script.replaceAll('\n', '; ')}' ${args.join(' ')}`
      if (timedOut) {
        reject(new Error(`${what}: killed after ${timeoutMs / 1000} s${gaveUp ? ' (and did not exit even after the mount was aborted)' : ''}\n${tail(stderr)}`))
        return
      }
      if (!okCodes.includes(code)) {
        reject(new Error(`${what} exited with ${signal ?? code}:\n${tail(stderr)}`))
        return
      }
      resolve({ wallMs, code, ...rusage, stdout, stderr })
    }
    child.on('error', (error) => {
      if (done) return
      done = true
      for (const t of timers) clearTimeout(t)
      runningCommands.delete(child)
      reject(error)
    })
    child.on('close', (code, signal) => finish(code, signal))
  })
}

/** One timed run of a workload on a target's directory. */
async function timedRun(ctx, workload, handle) {
  const w = WORKLOADS[workload]
  const daemonCpu0 = handle.pid ? treeCpuS(handle.pid) : 0
  const disk0 = diskReadBytes(ctx.diskStats)
  const activity = otherActivity()
  const onHang = handle.pid ? () => handle.entry && abortFuse(mountAt(handle.mnt) ?? handle.entry) : null
  // tar exits 1 for "file changed as we read it" and similar warnings: kept, and reported
  const r = await runShell(w.script, [handle.dir], { timeoutMs: ctx.timeoutMs, onHang, okCodes: workload === 'read' ? [0, 1] : [0] })
  const disk1 = diskReadBytes(ctx.diskStats)
  const daemonCpuS = handle.pid ? Math.max(0, treeCpuS(handle.pid) - daemonCpu0) : 0
  const clientCpuS = r.userS === null ? null : r.userS + r.sysS
  const cpuS = clientCpuS === null ? null : clientCpuS + daemonCpuS
  const sample = {
    wallMs: r.wallMs,
    clientCpuS,
    daemonCpuS,
    cpuS,
    maxRssKiB: r.maxRssKiB,
    diskReadBytes: disk0 === null ? null : disk1 - disk0,
    ...activity(cpuS),
  }
  if (workload === 'read') sample.tarBytes = Number(r.stdout.trim())
  if (r.code !== 0) sample.warning = `tar exited with ${r.code}: ${tail(r.stderr, 3)}`
  return sample
}

// Untimed, on a warm mount: entry count and a digest of every regular file's path and contents
// (metadata left out, so owners, times or hardlinks shown differently do not count as a difference).
const CHECK_SCRIPT = [
  'set -o pipefail',
  'cd "$1"',
  'n=$(find . | wc -l)',
  'd=$(find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum)',
  'echo "$n ${d%% *}"',
].join('\n')

async function checkTree(ctx, dir, handle = null) {
  const onHang = handle ? () => abortFuse(mountAt(handle.mnt) ?? handle.entry) : null
  const r = await runShell(CHECK_SCRIPT, [dir], { timeoutMs: ctx.timeoutMs, onHang })
  const [entries, digest] = r.stdout.trim().split(' ')
  return { entries: Number(entries), dataSha256: digest }
}

// ---------------------------------------------------------------------------------------------
// Targets: each opens a fresh view of the corpus (a new mount process, for snapdir optionally on a
// cache directory used before) and closes it again.

function nativeTarget(ctx) {
  return {
    name: 'native',
    async open() {
      return { dir: ctx.corpus.root, pid: null, mountMs: null }
    },
    close() {},
  }
}

async function squashfuseTarget(ctx) {
  const image = path.join(ctx.scratch, 'corpus.sqfs')
  process.stderr.write(`  mksquashfs ${ctx.corpus.root} (cold, zstd)\n`)
  dropCaches(ctx.syncPaths)
  const activity = otherActivity()
  const r = await runShell('mksquashfs "$1" "$2" -comp zstd -noappend -quiet', [ctx.corpus.root, image], { timeoutMs: ctx.timeoutMs })
  const cpuS = r.userS === null ? null : r.userS + r.sysS
  const build = { command: 'mksquashfs CORPUS IMG -comp zstd -noappend -quiet', wallMs: r.wallMs, cpuS, ...activity(cpuS) }
  settle(ctx.syncPaths)
  build.imageBytes = fs.statSync(image).size
  process.stderr.write(`  image ${(build.imageBytes / MB).toFixed(1)} MB in ${(build.wallMs / 1000).toFixed(2)} s\n`)
  const mnt = path.join(ctx.scratch, 'mnt-squashfuse')
  fs.mkdirSync(mnt)
  let n = 0
  return {
    name: 'squashfuse',
    build,
    // -f: in the foreground, so the benchmark owns the process (its CPU time, a clean stop on
    // SIGTERM). Nothing else differs from `squashfuse IMG MNT`.
    open: () => startFuseDaemon({ label: 'squashfuse', argv: ['squashfuse', '-f', image, mnt], mnt, log: path.join(ctx.scratch, `squashfuse-${++n}.log`), expectLine: false }),
    close: (handle) => stopFuseDaemon(handle),
  }
}

/**
 * snapdir as built in this repository (`name` 'snapdir'), or in another checkout for a before/after
 * comparison (`name` 'baseline', `bin` its bin/snapdir): the corpus pushed once into a store of its
 * own, then mounted from it. Each has its own store, HOME, caches and mount point.
 */
async function snapdirTarget(ctx, { name = 'snapdir', bin = snapdirBin } = {}) {
  const store = path.join(ctx.scratch, `${name}-store`)
  const home = path.join(ctx.scratch, `${name}-home`)
  fs.mkdirSync(store)
  fs.mkdirSync(home)
  const env = privateEnv(home)
  process.stderr.write(`  ${name}: snapdir push ${ctx.corpus.root}\n`)
  settle(ctx.syncPaths)
  const activity = otherActivity()
  const r = await runShell('"$1" push --store "$2" "$3"', [bin, store, ctx.corpus.root], { timeoutMs: ctx.timeoutMs, env })
  const id = r.stdout.trim()
  if (!/^[0-9a-f]{64}$/.test(id)) throw new Error(`${bin} push printed ${JSON.stringify(r.stdout)} on stdout, expected one 64-hex snapshot ID`)
  const cpuS = r.userS === null ? null : r.userS + r.sysS
  const push = { wallMs: r.wallMs, cpuS, ...activity(cpuS), id }
  settle(ctx.syncPaths)
  push.store = fileTotals(store)
  process.stderr.write(`  snapshot ${id}, store ${(push.store.bytes / MB).toFixed(1)} MB in ${push.store.files} files, push ${(push.wallMs / 1000).toFixed(2)} s\n`)
  const mnt = path.join(ctx.scratch, `mnt-${name}`)
  fs.mkdirSync(mnt)
  let n = 0
  return {
    name,
    push,
    cacheBytes: [],
    restartsOnCache: true,
    /** `cacheDir` null: a fresh, empty one. The handle remembers it for a restart on the same cache. */
    async open({ cacheDir = null } = {}) {
      n++
      if (cacheDir === null) {
        cacheDir = path.join(ctx.scratch, `${name}-cache-${n}`)
        fs.mkdirSync(cacheDir)
      }
      const handle = await startFuseDaemon({
        label: `${name} mount`,
        argv: [bin, 'mount', '--store', store, '--id', id, '--cache-dir', cacheDir, mnt],
        mnt,
        env,
        log: path.join(ctx.scratch, `${name}-mount-${n}.log`),
        expectLine: true,
      })
      handle.cacheDir = cacheDir
      return handle
    },
    close: (handle) => stopFuseDaemon(handle),
  }
}

/**
 * One workload on every target, in turns: `ctx.runs` rounds, and in each round every target once
 * (native, squashfuse, snapdir, baseline, native, ...), so that a slow spell of the machine (which
 * is shared) falls on all of them alike and their ratios stay fair. A target's turn: open a fresh
 * view, drop the page cache, run (cold), run again (warm), close; for snapdir then a restart of the
 * mount on the cache directory the cold run filled and a dropped page cache: the warm-cache,
 * cold-kernel variant. A target that fails is left out of the later rounds and reported with its
 * error. Returns { [target name]: its figures for this workload, or { error } }.
 */
async function measureWorkload(ctx, targets, workload) {
  const state = new Map(targets.map((t) => [t, { samples: { cold: [], warm: [], ...(t.restartsOnCache ? { cachedCold: [] } : {}) }, stops: [], mounts: [], check: null, error: null }]))
  for (let i = 0; i < ctx.runs; i++) {
    for (const target of targets) {
      const st = state.get(target)
      if (st.error) continue
      try {
        await targetTurn(ctx, target, workload, i, st)
      } catch (error) {
        st.error = error.stack ?? String(error)
        process.stderr.write(`  error: ${target.name} ${workload}: ${error.message}\n`)
        stopAllDaemons()
      }
    }
  }
  return Object.fromEntries(targets.map((t) => [t.name, state.get(t).error ? { error: state.get(t).error } : finishWorkload(ctx, t, workload, state.get(t))]))
}

async function targetTurn(ctx, target, workload, i, st) {
  const progress = (mode, s) =>
    process.stderr.write(`  ${target.name} ${workload} ${mode} ${i + 1}/${ctx.runs}: ${(s.wallMs / 1000).toFixed(2)} s${s.warning ? ` (${s.warning.split('\n')[0]})` : ''}\n`)
  let handle = await target.open()
  try {
    dropCaches(ctx.syncPaths)
    const cold = await timedRun(ctx, workload, handle)
    st.samples.cold.push(cold)
    progress('cold', cold)
    settle(ctx.syncPaths)
    const warm = await timedRun(ctx, workload, handle)
    st.samples.warm.push(warm)
    progress('warm', warm)
    if (i === 0 && workload === 'read') st.check = await checkTree(ctx, handle.dir, handle.pid ? handle : null)
  } finally {
    if (handle.pid) {
      st.stops.push(target.close(handle))
      st.mounts.push({ variant: 'fresh', mountMs: handle.mountMs, readyBy: handle.readyBy, stop: handle.stopped })
    }
  }
  if (!target.restartsOnCache) return
  settle(ctx.syncPaths)
  const cacheDir = handle.cacheDir
  handle = await target.open({ cacheDir })
  try {
    dropCaches(ctx.syncPaths)
    const cachedCold = await timedRun(ctx, workload, handle)
    st.samples.cachedCold.push(cachedCold)
    progress('cold kernel, warm cache dir', cachedCold)
  } finally {
    st.stops.push(target.close(handle))
    st.mounts.push({ variant: 'restart on the same cache dir', mountMs: handle.mountMs, readyBy: handle.readyBy, stop: handle.stopped })
  }
  if (i === 0) target.cacheBytes.push({ workload, ...fileTotals(cacheDir) })
}

function finishWorkload(ctx, target, workload, { samples, stops, mounts, check }) {
  const notes = []
  const all = Object.values(samples).flat()
  for (const w of new Set(all.map((s) => s.warning).filter(Boolean))) notes.push(`${target.name} ${workload}: ${w}`)
  const busy = contention(`${target.name} ${workload}`, all)
  if (busy) notes.push(busy)
  const unclean = stops.filter((s) => s && !s.clean)
  if (unclean.length) notes.push(`${target.name}: ${unclean.length} of ${stops.length} mounts did not stop cleanly on SIGTERM (${[...new Set(unclean.map((s) => s.how))].join(', ')})`)
  for (const n of notes) process.stderr.write(`  warning: ${n}\n`)
  const out = { notes }
  for (const [mode, list] of Object.entries(samples)) out[mode] = summarise(list, ctx, workload)
  const fresh = mounts.filter((m) => m.variant === 'fresh').map((m) => m.mountMs)
  const restarts = mounts.filter((m) => m.variant !== 'fresh').map((m) => m.mountMs)
  if (fresh.length) out.mountMs = median(fresh)
  if (restarts.length) out.cachedMountMs = median(restarts)
  if (check) out.check = check
  if (mounts.length) out.mounts = mounts
  out.samples = samples
  return out
}

function summarise(samples, ctx, workload) {
  const out = { runs: samples.length, ...medianFields(samples, ['wallMs', 'cpuS', 'clientCpuS', 'daemonCpuS', 'maxRssKiB', 'diskReadBytes', 'otherCpuS', 'stealS', 'tarBytes']) }
  const seconds = out.wallMs / 1000
  if (workload === 'read') out.mbPerS = ctx.corpus.uniqueBytes / MB / seconds
  else out.entriesPerS = ctx.corpus.entries / seconds
  return out
}

// ---------------------------------------------------------------------------------------------
// Report

function computeRatios(steps) {
  const ratios = []
  const ok = (name) => steps[name] && !steps[name].error
  // time ratios: above 1 means the first one is slower
  const pair = (workload, a, b, mode, modeB, target) => {
    const x = steps[a][workload][mode]?.wallMs
    const y = steps[b][workload][modeB]?.wallMs
    if (!x || !y) return
    const r = { workload, of: `${a} ${mode}`, to: `${b} ${modeB}`, ratio: x / y }
    if (target !== undefined) Object.assign(r, { target, met: x / y <= target })
    ratios.push(r)
  }
  if (ok('snapdir') && ok('native')) {
    pair('read', 'snapdir', 'native', 'warm', 'warm', 1.5)
    pair('read', 'snapdir', 'native', 'cold', 'cold')
  }
  if (ok('snapdir') && ok('squashfuse')) {
    pair('read', 'snapdir', 'squashfuse', 'cold', 'cold', 1.0)
    pair('read', 'snapdir', 'squashfuse', 'warm', 'warm')
    pair('read', 'snapdir', 'squashfuse', 'cachedCold', 'cold')
    pair('walk', 'snapdir', 'squashfuse', 'cold', 'cold', 2.0)
    pair('walk', 'snapdir', 'squashfuse', 'warm', 'warm', 2.0)
  }
  if (ok('snapdir') && ok('native')) {
    pair('walk', 'snapdir', 'native', 'cold', 'cold')
    pair('walk', 'snapdir', 'native', 'warm', 'warm')
  }
  if (ok('squashfuse') && ok('native')) {
    for (const w of ['read', 'walk']) for (const m of ['cold', 'warm']) pair(w, 'squashfuse', 'native', m, m)
  }
  // before/after: this checkout over the baseline, every mode (measured in the same rounds)
  if (ok('snapdir') && ok('baseline')) {
    for (const w of ['read', 'walk']) for (const m of ['cold', 'warm', 'cachedCold']) pair(w, 'snapdir', 'baseline', m, m)
  }
  return ratios
}

const MODE_LABEL = { cold: 'cold', warm: 'warm', cachedCold: 'cold kernel + warm cache dir' }

function report(result) {
  const { corpus, steps } = result
  const lines = []
  lines.push(`mount read, ${result.date}`)
  lines.push(`corpus: ${corpus.root}`)
  lines.push(
    `  ${fmtInt(corpus.entries)} entries: ${fmtInt(corpus.files)} regular files (${fmtInt(corpus.uniqueBytes)} bytes in ${fmtInt(corpus.uniqueFiles)} distinct inodes, ${fmt(corpus.uniqueBytes / MB)} MB), ${fmtInt(corpus.dirs)} dirs, ${fmtInt(corpus.symlinks)} symlinks, ${fmtInt(corpus.otherEntries)} other`,
  )
  lines.push(`machine: ${result.machine.cpu}, ${result.machine.cores} cores, kernel ${result.machine.kernel}, ${result.machine.fsType} under ${result.machine.scratchParent}`)
  lines.push(`medians of ${result.runs} runs; MB = 10^6 bytes; read MB/s = ${fmt(corpus.uniqueBytes / MB)} MB (what tar reads) / wall s; walk speed = ${fmtInt(corpus.entries)} entries / wall s`)
  const sq = steps.squashfuse
  if (sq?.build) {
    const b = sq.build
    lines.push(`squashfs image: ${fmtInt(b.imageBytes)} bytes (${fmt((b.imageBytes / corpus.uniqueBytes) * 100)}% of the file data), mksquashfs -comp zstd ${fmt(b.wallMs / 1000, 2)} s from a cold page cache, ${fmt(b.cpuS, 2)} CPU s`)
  }
  for (const name of ['snapdir', 'baseline']) {
    const push = steps[name]?.push
    if (push) lines.push(`${name} store: ${fmtInt(push.store.bytes)} bytes in ${fmtInt(push.store.files)} files, push ${fmt(push.wallMs / 1000, 2)} s, ID ${push.id}`)
  }
  if (result.baseline) lines.push(`baseline: ${result.baseline.root} at ${result.baseline.commit}, this checkout at ${result.machine.snapdirCommit}; all targets measured in turns`)

  for (const workload of ['read', 'walk']) {
    const w = WORKLOADS[workload]
    const speed = (s) => (workload === 'read' ? fmt(s?.mbPerS) : fmtInt(s?.entriesPerS))
    const rows = []
    for (const name of [...ALL_STEPS, 'baseline']) {
      const st = steps[name]
      if (!st || st.error || !st[workload]) continue
      const r = st[workload]
      const row = (label, cold, warm, mountMs) => [
        label,
        fmt(mountMs / 1000, 2),
        fmt(cold?.wallMs / 1000, 2),
        speed(cold),
        fmt(cold?.cpuS, 2),
        fmt(cold?.daemonCpuS, 2),
        fmt(cold?.diskReadBytes / MB),
        warm ? fmt(warm.wallMs / 1000, 2) : '-',
        warm ? speed(warm) : '-',
        warm ? fmt(warm.cpuS, 2) : '-',
        warm ? fmt(warm.daemonCpuS, 2) : '-',
      ]
      rows.push(row(name, r.cold, r.warm, r.mountMs))
      if (r.cachedCold) rows.push(row(`${name}, ${MODE_LABEL.cachedCold}`, r.cachedCold, null, r.cachedMountMs))
    }
    if (!rows.length) continue
    lines.push('')
    lines.push(`${w.title}: ${w.command}`)
    lines.push(
      table(['target', 'mount s', 'cold s', `cold ${w.unit}`, 'cold CPU s', 'daemon', 'disk MB', 'warm s', `warm ${w.unit}`, 'warm CPU s', 'daemon'], rows),
    )
  }

  const checks = Object.entries(steps).filter(([, s]) => s.read?.check)
  if (checks.length) {
    lines.push('')
    lines.push('checks (untimed, warm; the corpus itself read natively):')
    const ref = result.reference
    for (const [name, s] of checks) {
      const c = s.read.check
      const tarBytes = s.read.warm?.tarBytes
      const same = c.dataSha256 === ref.dataSha256 ? 'same file data as the corpus' : 'FILE DATA DIFFERS from the corpus'
      lines.push(`  ${name}: ${fmtInt(c.entries)} entries (corpus ${fmtInt(ref.entries)}), ${same}, tar stream ${fmtInt(tarBytes)} bytes`)
    }
  }

  if (result.ratios.length) {
    lines.push('')
    lines.push('ratios of wall times (above 1: the first is slower):')
    const rows = result.ratios.map((r) => [
      r.workload === 'read' ? 'full-tree read' : 'metadata walk',
      `${r.of.split(' ')[0]} ${MODE_LABEL[r.of.split(' ')[1]]}`,
      `${r.to.split(' ')[0]} ${MODE_LABEL[r.to.split(' ')[1]]}`,
      fmt(r.ratio, 2),
      r.target === undefined ? '' : `<= ${fmt(r.target, 1)}: ${r.met ? 'met' : 'NOT met'}`,
    ])
    lines.push(table(['workload', 'time of', 'over time of', 'ratio', 'target'], rows, 3))
  }
  for (const [name, s] of Object.entries(steps)) if (s.error) lines.push(`error: ${name}: ${s.error.split('\n')[0]}`)
  const stepNotes = Object.values(steps).flatMap((s) => [...(s.notes ?? []), ...(s.read?.notes ?? []), ...(s.walk?.notes ?? [])])
  for (const n of [...stepNotes, ...result.notes]) lines.push(`warning: ${n}`)
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------------
// Cleanup: every mount and child is tracked; this runs on success, error, signals and exit.

let scratchDir = null

function cleanupAll() {
  for (const child of runningCommands) {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL')
    } catch {}
  }
  stopAllDaemons()
  if (scratchDir && fs.existsSync(scratchDir)) {
    // never recurse into a mount (a hung one would hang rm, a live one would be emptied through)
    const left = mountsUnder(scratchDir)
    if (left.length) {
      process.stderr.write(`mount-read: NOT deleting ${scratchDir}: still mounted below it: ${left.map((m) => m.mountPoint).join(', ')}\n`)
    } else {
      process.stderr.write(`deleting ${scratchDir}\n`)
      fs.rmSync(scratchDir, { recursive: true, force: true })
      scratchDir = null
    }
  }
}

cleanupOnSignals('mount-read', cleanupAll)
process.on('exit', () => {
  if (runningDaemons() || runningCommands.size) cleanupAll()
})

// ---------------------------------------------------------------------------------------------

async function main() {
  const opts = parseOptions()

  const problems = [dropCachesProblem()].filter(Boolean)
  if (!fs.existsSync(opts.corpus)) problems.push(`corpus ${opts.corpus} does not exist: run bash bench/setup.sh, or pass --corpus DIR`)
  for (const tool of ['tar', 'find', 'wc', 'sha256sum', 'findmnt']) if (!which(tool)) problems.push(`${tool} is not installed`)
  const wantsFuse = opts.steps.some((s) => s !== 'native')
  if (wantsFuse) {
    if (!fs.existsSync('/dev/fuse')) problems.push('/dev/fuse is missing (modprobe fuse)')
    if (!fusermountBin) problems.push('neither fusermount3 nor fusermount is installed: run bash bench/setup.sh')
  }
  if (opts.steps.includes('squashfuse')) {
    for (const tool of ['mksquashfs', 'squashfuse']) if (!which(tool)) problems.push(`${tool} is not installed: run bash bench/setup.sh`)
  }
  const runNotes = []
  if (opts.steps.includes('snapdir')) {
    let missing = null
    if (!cliBuilt()) missing = 'bin/snapdir or dist/bundle is missing: run npm run build'
    else if (!/Usage: snapdir mount/.test(tryRun(snapdirBin, ['mount', '--help'], PROBE) ?? '')) missing = 'bin/snapdir has no mount command (is it built? npm run build)'
    if (missing && opts.explicit) problems.push(`${missing} (or leave snapdir out with --steps)`)
    else if (missing) {
      opts.steps = opts.steps.filter((s) => s !== 'snapdir')
      runNotes.push(`snapdir left out: ${missing}`)
      process.stderr.write(`warning: snapdir left out: ${missing}\n`)
    }
  }
  if (problems.length) fail(problems.join('\n'))
  if (!opts.steps.length) fail('no step left to run')

  // Mounts a killed earlier run left behind (its scratch directories are named mount-read-*).
  for (const m of mountTable()) {
    if (m.fstype.startsWith('fuse') && m.mountPoint.startsWith(path.join(benchDir, 'mount-read-'))) {
      process.stderr.write(`unmounting ${m.mountPoint}, left behind by an earlier run\n`)
      forceUnmount(m.mountPoint)
      if (mountAt(m.mountPoint)) fail(`could not unmount ${m.mountPoint}, left behind by an earlier run`)
    }
  }
  const leftovers = fs.existsSync(benchDir) ? fs.readdirSync(benchDir).filter((n) => n.startsWith('mount-read-')) : []
  if (leftovers.length) runNotes.push(`earlier runs left ${leftovers.map((n) => path.join(benchDir, n)).join(', ')}: delete them when nothing is being measured`)

  process.stderr.write(`walking ${opts.corpus}\n`)
  const corpus = describeCorpus(opts.corpus)
  if (corpus.uniqueBytes === 0) fail(`corpus ${opts.corpus} holds no file data`)

  fs.mkdirSync(benchDir, { recursive: true })
  scratchDir = fs.mkdtempSync(path.join(benchDir, 'mount-read-'))
  const ctx = {
    corpus,
    runs: opts.runs,
    timeoutMs: opts.timeoutMs,
    scratch: scratchDir,
    syncPaths: [...new Set([opts.corpus, scratchDir])],
    diskStats: diskStatFiles([opts.corpus, scratchDir]),
  }
  if (!ctx.diskStats.length) runNotes.push('no block device found for the corpus or the scratch directory: disk MB not measured')

  const buildBefore = buildFingerprint()
  const baselineBefore = opts.baseline && buildFingerprint(opts.baseline.root)
  const steps = {}
  let reference = null
  let exitCode = 0
  try {
    process.stderr.write('checking the corpus (file data digest)\n')
    reference = await checkTree(ctx, opts.corpus)
    const makers = { native: nativeTarget, squashfuse: squashfuseTarget, snapdir: snapdirTarget }
    const wanted = ALL_STEPS.filter((s) => opts.steps.includes(s)).map((name) => ({ name, make: () => makers[name](ctx) }))
    if (opts.baseline) wanted.push({ name: 'baseline', make: () => snapdirTarget(ctx, { name: 'baseline', bin: opts.baseline.bin }) })
    // every target set up first (images built, snapshots pushed), then measured in turns
    const targets = []
    for (const { name, make } of wanted) {
      process.stderr.write(`${name}\n`)
      steps[name] = {}
      try {
        const target = await make()
        if (target.build) steps[name].build = target.build
        if (target.push) steps[name].push = target.push
        targets.push(target)
      } catch (error) {
        // one broken target (a mount still being written) must not cost the others' numbers
        steps[name].error = error.stack ?? String(error)
        process.stderr.write(`  error: ${name}: ${error.message}\n`)
        stopAllDaemons()
      }
    }
    for (const workload of ['read', 'walk']) {
      process.stderr.write(`${WORKLOADS[workload].title}: ${targets.map((t) => t.name).join(', ')} in turns\n`)
      const figures = await measureWorkload(ctx, targets, workload)
      for (const [name, f] of Object.entries(figures)) {
        if (f.error) steps[name].error ??= f.error
        else steps[name][workload] = f
      }
    }
    for (const target of targets) {
      const step = steps[target.name]
      if (target.cacheBytes?.length) step.cacheDirs = target.cacheBytes
      if (step.error || !step.read) continue
      const check = step.read.check
      const notes = []
      if (check.entries !== reference.entries) notes.push(`${target.name} shows ${check.entries} entries, the corpus has ${reference.entries}`)
      if (check.dataSha256 !== reference.dataSha256) notes.push(`${target.name} serves different file data than the corpus holds (path+content digest differs): its times measure something else`)
      const nativeTar = steps.native?.read?.warm?.tarBytes
      if (nativeTar && step.read.warm.tarBytes !== nativeTar) notes.push(`${target.name}: tar stream ${step.read.warm.tarBytes} bytes, native ${nativeTar}: metadata differs (hardlinks shown with different inode numbers are archived, and read, once per path)`)
      for (const n of notes) process.stderr.write(`  warning: ${n}\n`)
      step.notes = notes
    }
    if (steps.baseline?.push && steps.snapdir?.push && steps.baseline.push.id !== steps.snapdir.push.id) {
      runNotes.push(`the baseline pushed the corpus as ${steps.baseline.push.id}, this checkout as ${steps.snapdir.push.id}: snapshot IDs changed between the two`)
    }
    if (Object.values(steps).some((s) => s.error)) exitCode = 1
  } finally {
    cleanupAll()
  }
  if (scratchDir) exitCode = 1
  const buildAfter = buildFingerprint()
  const buildChanged = buildChangedNote(buildBefore, buildAfter)
  // only snapdir runs the build; the other targets' numbers do not depend on it
  if (steps.snapdir && buildChanged) runNotes.push(buildChanged)
  const baselineChanged = opts.baseline && buildChangedNote(baselineBefore, buildFingerprint(opts.baseline.root))
  if (baselineChanged) runNotes.push(`the baseline's ${baselineChanged}`)
  runNotes.push(...mountNotes)
  if (mountNotes.some((n) => n.startsWith('could not unmount'))) exitCode = 1

  const result = {
    schema: 1,
    date: new Date().toISOString(),
    machine: {
      ...hostInfo(),
      fsType: fsTypeAt(benchDir, PROBE),
      scratchParent: benchDir,
      diskStats: ctx.diskStats,
      tar: tryRun('tar', ['--version'], PROBE)?.split('\n')[0] ?? null,
      squashfuse: opts.steps.includes('squashfuse') ? tryRun('squashfuse', ['--version'], PROBE)?.split('\n')[0] ?? null : null,
      mksquashfs: opts.steps.includes('squashfuse') ? tryRun('mksquashfs', ['-version'], PROBE)?.split('\n')[0] ?? null : null,
      fusermount: fusermountBin ? tryRun(fusermountBin, ['--version'], PROBE) : null,
      snapdirCommit: snapdirCommit(),
    },
    ...(opts.baseline ? { baseline: { root: opts.baseline.root, commit: opts.baseline.commit } } : {}),
    corpus,
    reference,
    workloads: Object.fromEntries(Object.entries(WORKLOADS).map(([k, w]) => [k, w.command])),
    runs: opts.runs,
    build: buildAfter,
    steps,
    ratios: computeRatios(steps),
    notes: runNotes,
  }
  writeResult(opts.out, result, report)
  process.exitCode = exitCode
}

main().catch((error) => {
  cleanupAll()
  fail(error.stack ?? String(error))
})
