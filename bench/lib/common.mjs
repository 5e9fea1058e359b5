// What the benchmarks in bench/ (push-throughput, mount-read, sync-transfer) share: command line
// conventions, running and timing commands, walking trees, noticing a busy machine or a rebuild
// during a run, and printing the report. Plain ESM like the scripts, no build step. Only logic that
// really is the same in more than one script lives here; where scripts need it slightly differently,
// that is a parameter.

import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

/** The repository: the benchmarks drive its bin/ and dist/, so they measure exactly what ships. */
export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
/** Corpora and scratch data: on disk, outside the repository (bench/setup.sh builds the corpora here). */
export const benchDir = path.resolve(process.env.SNAPDIR_BENCH_DIR ?? '/var/tmp/snapdir-bench')
export const snapdirBin = path.join(repo, 'bin/snapdir')
export const MB = 1e6

// ---------------------------------------------------------------------------------------------
// Command line

/** `fail(message, exitCode = 1)` for script `name`: one line on stderr, named, then exit. */
export function failer(name) {
  return (message, exitCode = 1) => {
    process.stderr.write(`${name}: ${message}\n`)
    process.exit(exitCode)
  }
}

/**
 * parseArgs with the conventions every benchmark keeps: `-h`/`--help` (added to `options`) prints
 * `usage` and exits 0; a bad option fails with exit code 2 and the usage, as a usage error.
 */
export function parseCommandLine(options, usage, fail) {
  let values
  try {
    ;({ values } = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h' } } }))
  } catch (error) {
    fail(`${error.message}\n${usage}`, 2)
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`)
    process.exit(0)
  }
  return values
}

/** Where a benchmark writes its JSON report unless --out says otherwise. */
export const defaultOut = (name) => path.join(repo, 'bench/results', `${name}.json`)

/** --corpus, or the Debian tree bench/setup.sh builds. */
export const corpusPath = (value) => path.resolve(value ?? path.join(benchDir, 'debian-rootfs'))

/** --runs: cold and warm repetitions, whose medians are reported. */
export function parseRuns(text, fail) {
  const runs = Number(text)
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) fail(`--runs ${text}: expected an integer 1..50`, 2)
  return runs
}

/**
 * --steps: a comma-separated subset of `all` (all of them when the option is absent). `explicit`
 * says the user named them: a step whose tool is missing is then an error instead of being left
 * out. `allowEmpty` false rejects `--steps ''`, for a script that would then measure nothing.
 */
export function parseSteps(text, all, fail, { allowEmpty = true } = {}) {
  const steps = text === undefined ? null : text.split(',').map((s) => s.trim()).filter(Boolean)
  for (const s of steps ?? []) if (!all.includes(s)) fail(`--steps: unknown step '${s}', expected some of ${all.join(',')}`, 2)
  if (!allowEmpty && steps !== null && steps.length === 0) fail('--steps: empty list', 2)
  return { steps: steps ?? [...all], explicit: steps !== null }
}

// ---------------------------------------------------------------------------------------------
// Time, statistics, processes

export const nowNs = () => process.hrtime.bigint()
export const msSince = (t0) => Number(nowNs() - t0) / 1e6

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** The median of each of `keys` over the samples that hold a finite number there; keys none holds are left out. */
export function medianFields(samples, keys) {
  const out = {}
  for (const key of keys) {
    const xs = samples.map((s) => s[key]).filter((x) => typeof x === 'number' && Number.isFinite(x))
    if (xs.length) out[key] = median(xs)
  }
  return out
}

/** A file's text, or `otherwise` when it cannot be read. */
export function readOr(file, otherwise = '') {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return otherwise
  }
}

/**
 * Runs `cleanup` (synchronous) once on SIGINT, SIGTERM or SIGHUP, then exits with 128 + the
 * signal's number; `name` says on stderr which script is cleaning up.
 */
export function cleanupOnSignals(name, cleanup) {
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
    process.once(signal, () => {
      process.stderr.write(`\n${name}: ${signal}, cleaning up\n`)
      cleanup()
      process.exit(code)
    })
  }
}

/** The last lines of a command's stderr: enough to see why it failed, short enough for a report. */
export const tail = (text, lines = 15) => text.trim().split('\n').slice(-lines).join('\n')

/** The executable `cmd` on PATH, or null. */
export function which(cmd) {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir || '.', cmd)
    try {
      fs.accessSync(p, fs.constants.X_OK)
      return p
    } catch {}
  }
  return null
}

/**
 * A command's trimmed stdout, or null when it fails: for the versions and facts a report records.
 * `timeoutMs`: give up on a command that hangs. `outputOnFailure`: on failure return what it printed
 * on stdout and stderr instead (some tools, squashfuse --version, print their version and exit
 * non-zero).
 */
export function tryRun(cmd, args, { timeoutMs, outputOnFailure = false } = {}) {
  try {
    const stdio = ['ignore', 'pipe', outputOnFailure ? 'pipe' : 'ignore']
    return execFileSync(cmd, args, { encoding: 'utf8', stdio, ...(timeoutMs ? { timeout: timeoutMs } : {}) }).trim()
  } catch (error) {
    if (!outputOnFailure) return null
    return `${error.stdout ?? ''}${error.stderr ?? ''}`.trim() || null
  }
}

const timeBin = fs.existsSync('/usr/bin/time') ? '/usr/bin/time' : null

/**
 * `argv` wrapped in GNU time, when installed, for the CPU seconds of the command and every child it
 * waited for (so xargs + b3sum counts b3sum) and its peak RSS: wall time alone cannot tell one busy
 * core from two half-idle ones. `rusage()`, once the command has exited, reads them (nulls when
 * unknown) and removes the file GNU time wrote them to.
 */
export function withGnuTime(argv, tag) {
  const unknown = { userS: null, sysS: null, maxRssKiB: null }
  if (!timeBin) return { argv, rusage: () => unknown }
  const file = path.join(os.tmpdir(), `${tag}-${process.pid}-${Math.random().toString(36).slice(2)}.time`)
  return {
    argv: [timeBin, '-f', '%U %S %M', '-o', file, ...argv],
    rusage() {
      if (!fs.existsSync(file)) return unknown
      const fields = fs.readFileSync(file, 'utf8').trim().split('\n').pop().split(' ').map(Number)
      fs.rmSync(file, { force: true })
      return fields.length === 3 && fields.every(Number.isFinite) ? { userS: fields[0], sysS: fields[1], maxRssKiB: fields[2] } : unknown
    },
  }
}

/**
 * Runs a command to completion and times it; rejects with the tail of its stderr when it fails.
 * `input`: written to its stdin. `keepStdout` false: stdout discarded (a tool that writes out the
 * data it processes). `rusage`: under GNU time (see withGnuTime), adding userS, sysS and maxRssKiB.
 */
export function runCommand(argv, { env = process.env, cwd, input = null, keepStdout = true, rusage = false } = {}) {
  const timed = rusage ? withGnuTime(argv, 'bench') : null
  const full = timed ? timed.argv : argv
  return new Promise((resolve, reject) => {
    const t0 = nowNs()
    const child = spawn(full[0], full.slice(1), {
      env,
      cwd,
      stdio: [input === null ? 'ignore' : 'pipe', keepStdout ? 'pipe' : 'ignore', 'pipe'],
    })
    const out = []
    const err = []
    child.stdout?.on('data', (b) => out.push(b))
    child.stderr.on('data', (b) => err.push(b))
    child.on('error', reject)
    child.on('close', (code, signal) => {
      const wallMs = msSince(t0)
      const stdout = Buffer.concat(out).toString('utf8')
      const stderr = Buffer.concat(err).toString('utf8')
      if (code !== 0) {
        timed?.rusage()
        reject(new Error(`${argv.join(' ')} exited with ${signal ?? code}:\n${tail(stderr)}`))
        return
      }
      resolve({ wallMs, ...(timed ? timed.rusage() : {}), stdout, stderr })
    })
    if (input !== null) child.stdin.end(input)
  })
}

// ---------------------------------------------------------------------------------------------
// Page cache and writeback

/**
 * Writeback before a timed run, so that no run pays for the one before it. `paths` null: a global
 * sync(2). With paths: `sync -f` (syncfs) of just the file systems holding them, for a script with
 * FUSE mounts up, where a global sync would visit them and a hung daemon could hang the benchmark.
 */
export function settle(paths = null) {
  if (paths === null) execFileSync('sync')
  else execFileSync('sync', ['-f', ...paths], { timeout: 120_000 })
}

/** A cold page cache for the next run: writeback first (see settle), then drop clean pages, dentries and inodes. */
export function dropCaches(paths = null) {
  settle(paths)
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3')
}

/** Why cold runs are impossible here (not root), or null. Checked before anything is timed. */
export function dropCachesProblem() {
  try {
    fs.accessSync('/proc/sys/vm/drop_caches', fs.constants.W_OK)
    return null
  } catch {
    return 'cannot write /proc/sys/vm/drop_caches (cold runs need it): run as root'
  }
}

// ---------------------------------------------------------------------------------------------
// Trees

/**
 * Every entry below `root`, root first, as { path, st } (lstat: symlinks not followed), in sorted
 * depth-first order so that every run and every machine visits a tree in the same order.
 */
export function walk(root) {
  const entries = []
  const visit = (dir) => {
    for (const name of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, name)
      const st = fs.lstatSync(p)
      entries.push({ path: p, st })
      if (st.isDirectory()) visit(p)
    }
  }
  entries.push({ path: root, st: fs.lstatSync(root) })
  visit(root)
  return entries
}

/**
 * A corpus, counted: its regular files (path and size, in walk order), their bytes counted per path
 * (as tar reads them) and per distinct inode (hardlinks once), and every other kind of entry.
 */
export function scanCorpus(root) {
  const files = []
  const inodes = new Set()
  const c = { entries: 0, bytes: 0, uniqueBytes: 0, dirs: 0, symlinks: 0, otherEntries: 0 }
  for (const { path: p, st } of walk(root)) {
    c.entries++
    if (st.isFile()) {
      files.push({ path: p, size: st.size })
      c.bytes += st.size
      const key = `${st.dev}:${st.ino}`
      if (!inodes.has(key)) {
        inodes.add(key)
        c.uniqueBytes += st.size
      }
    } else if (st.isDirectory()) c.dirs++
    else if (st.isSymbolicLink()) c.symlinks++
    else c.otherEntries++
  }
  return { ...c, files, uniqueFiles: inodes.size }
}

/** A corpus as a report describes it: scanCorpus's counts (without the file list) and its setup.sh marker. */
export function describeCorpus(root) {
  const { files, ...counts } = scanCorpus(root)
  return { root, ...counts, files: files.length, marker: corpusMarker(root) }
}

/** What bench/setup.sh wrote beside a finished corpus (its parameters and counts), or null: recorded so a report says which build it measured. */
export function corpusMarker(root) {
  try {
    return fs.readFileSync(`${root}.complete`, 'utf8').trim()
  } catch {
    return null
  }
}

/** What a tree (a store, a cache) holds on disk; `objectFilter` picks which regular files count as objects. */
export function measureTree(root, { objectFilter = () => true } = {}) {
  const seen = new Set()
  let files = 0
  let fileBytes = 0
  let duApparent = 0
  let allocated = 0
  let objects = 0
  for (const { path: p, st } of walk(root)) {
    // du counts a hardlinked inode once; so does the disk
    const key = `${st.dev}:${st.ino}`
    const first = !seen.has(key)
    seen.add(key)
    if (first) {
      duApparent += st.size
      allocated += st.blocks * 512
    }
    if (st.isFile()) {
      files++
      fileBytes += st.size
      if (objectFilter(p)) objects++
    }
  }
  return { files, fileBytes, duApparentBytes: duApparent, allocatedBytes: allocated, objects }
}

// ---------------------------------------------------------------------------------------------
// The build and the machine

/** bin/snapdir and the dist/bundle it runs exist in checkout `dir`: `npm run build` has run there. */
export const cliBuilt = (dir = repo) => fs.existsSync(path.join(dir, 'bin/snapdir')) && fs.existsSync(path.join(dir, 'dist/bundle/main.js'))

/**
 * --baseline DIR: another snapdir checkout, built, measured as one more tool beside this one (a
 * before/after comparison in one run). { root, bin, commit, label }, or null without the option;
 * fails (exit 2) when DIR is no built checkout.
 */
export function baselineCheckout(dir, fail) {
  if (dir === undefined) return null
  const root = path.resolve(dir)
  if (!cliBuilt(root)) fail(`--baseline ${dir}: expected a built snapdir checkout (${path.join(root, 'bin/snapdir')} and dist/bundle/main.js); run npm run build there`, 2)
  if (root === repo) fail(`--baseline ${dir} is this checkout itself`, 2)
  const commit = snapdirCommit(root)
  return { root, bin: path.join(root, 'bin/snapdir'), commit, label: `baseline ${commit ? commit.slice(0, 7) : path.basename(root)}` }
}

/**
 * Files and newest mtime under bin/ and dist/: compared before and after the run, since a rebuild
 * in the middle (this machine is shared with development) would mix two versions in one report.
 */
export function buildFingerprint(checkout = repo) {
  let files = 0
  let newest = 0
  for (const dir of ['bin', 'dist']) {
    const root = path.join(checkout, dir)
    if (!fs.existsSync(root)) continue
    for (const { st } of walk(root)) {
      if (!st.isFile()) continue
      files++
      newest = Math.max(newest, st.mtimeMs)
    }
  }
  return { files, newest: newest ? new Date(newest).toISOString() : null }
}

/** The report's warning when two buildFingerprint()s differ, or null. */
export function buildChangedNote(before, after) {
  if (JSON.stringify(before) === JSON.stringify(after)) return null
  return `bin/ or dist/ changed during the run (${before.files} files, newest ${before.newest} -> ${after.files}, ${after.newest}): the numbers mix builds, run again`
}

/** The commit checked out in `dir` (this repository unless said otherwise), or null. */
export const snapdirCommit = (dir = repo) => tryRun('git', ['-C', dir, 'rev-parse', 'HEAD'])

/**
 * An environment with a private HOME and XDG_CACHE_HOME under `home`: no cache of the user's takes
 * part in a measured command, and nothing is left in it.
 */
export const privateEnv = (home, env = process.env) => ({ ...env, HOME: home, XDG_CACHE_HOME: path.join(home, '.cache') })

/**
 * What every report says of the machine it ran on. The CPU's family, model and stepping as well as
 * its name: clouds call every generation "AMD EPYC", and one generation runs a single-threaded tool
 * (casync) much faster than another.
 */
export function hostInfo() {
  const cpuinfo = readOr('/proc/cpuinfo')
  const field = (name) => new RegExp(`^${name}\\s*: (.*)$`, 'm').exec(cpuinfo)?.[1] ?? null
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpuFamily: field('cpu family'),
    cpuModel: field('model'),
    cpuStepping: field('stepping'),
    cores: os.cpus().length,
    memBytes: os.totalmem(),
    kernel: os.release(),
    node: process.version,
  }
}

/** The file system type at `dir` (ext4, tmpfs, ...), or null; `options` as for tryRun. */
export const fsTypeAt = (dir, options) => tryRun('findmnt', ['-n', '-o', 'FSTYPE', '--target', dir], options)

export const CLK_TCK = Number(tryRun('getconf', ['CLK_TCK'])) || 100

/**
 * CPU seconds since boot, all cores: `busy` is this machine's own work (idle and iowait
 * excluded), `steal` the time the hypervisor gave its cores to other guests.
 */
function machineCpu() {
  const [user, nice, system, , , irq, softirq, steal] = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  return { busy: (user + nice + system + irq + softirq) / CLK_TCK, steal: steal / CLK_TCK }
}

/**
 * Starts a measurement of what else the machine does (it is shared with builds and tests). The
 * function it returns takes the measured tool's CPU seconds (null: unknown) and gives
 * { otherCpuS, stealS }: CPU seconds spent on anything but that tool and this process, and stolen.
 */
export function otherActivity() {
  const m0 = machineCpu()
  const self0 = process.cpuUsage()
  return (toolCpuS) => {
    const m = machineCpu()
    const self = process.cpuUsage(self0)
    const otherCpuS = toolCpuS === null ? null : Math.max(0, m.busy - m0.busy - toolCpuS - (self.user + self.system) / 1e6)
    return { otherCpuS, stealS: m.steal - m0.steal }
  }
}

/** A warning when other processes or other guests took more than 5% of the machine while `samples` ran, or null. */
export function contention(name, samples) {
  const capacity = samples.reduce((a, s) => a + s.wallMs / 1000, 0) * os.cpus().length
  const sum = (key) => samples.reduce((a, s) => a + (s[key] ?? 0), 0)
  const other = sum('otherCpuS')
  const steal = sum('stealS')
  const parts = []
  // the absolute floors keep a stray daemon wakeup during a 0.1 s run from counting as contention
  if (other / capacity > 0.05 && other > 0.1) parts.push(`other processes used ${((other / capacity) * 100).toFixed(0)}% of the CPUs (${other.toFixed(1)} CPU s)`)
  if (steal / capacity > 0.05 && steal > 0.1) parts.push(`the hypervisor stole ${((steal / capacity) * 100).toFixed(0)}% of the CPUs`)
  return parts.length ? `during the ${name} runs ${parts.join(' and ')}: its speeds are understated` : null
}

// ---------------------------------------------------------------------------------------------
// Report

export const fmt = (x, digits = 1) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(digits) : '-')
/** A count with thousands separators; '-' when there is none. */
export const fmtInt = (x) => (typeof x === 'number' && Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-')

/** A plain-text table. `left`: how many leading columns are text, aligned left; the rest are numbers, aligned right. */
export function table(headers, rows, left = 1) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)))
  const line = (cells) => cells.map((c, i) => (i < left ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ').trimEnd()
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')
}

/**
 * Writes the JSON report to `out` first (kept even if the text report fails), then prints
 * `report(result)` and where the JSON went (relative when below the working directory).
 */
export function writeResult(out, result, report, { text = false } = {}) {
  fs.mkdirSync(path.dirname(out), { recursive: true })
  fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`)
  const table = report(result)
  // with text: the table goes beside the JSON as FILE.txt, as bench/results keeps both
  if (text) fs.writeFileSync(out.replace(/\.json$/, '') + '.txt', `${table}\n`)
  const shown = path.relative(process.cwd(), out)
  process.stdout.write(`${table}\n\nJSON: ${shown.startsWith('..') ? out : shown}\n`)
}
