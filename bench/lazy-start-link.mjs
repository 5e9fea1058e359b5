#!/usr/bin/env node
// Lazy start over a network link: from nothing local to the first output of a program in the python
// image, when the image comes from a registry or a snapdir store behind an emulated link
// (bandwidth-limited and delayed on loopback, lib/link.mjs), pulled whole the usual ways or mounted
// lazily by snapdir. Issue 18's benchmark.
//
//   node bench/lazy-start-link.mjs [options]   (as root: drops the page cache, mounts, chroots, runs containerd)
//
// The image: the debian-rootfs corpus as one umoci layer ($SNAPDIR_BENCH_DIR/lazy-start-layout, as
// lazy-start.mjs builds it), pushed with skopeo to a docker-registry and with snapdir push to an S3
// store (s3rver), each behind a proxy carrying the link. Per link and run, from a dropped page cache
// and fresh local state, one of:
//   skopeo            skopeo copy docker:// -> oci:, umoci unpack, chroot ROOTFS PROGRAM
//   ctr               ctr image pull (containerd's overlayfs snapshotter), ctr run IMAGE PROGRAM
//   mount             snapdir mount --view rootfs from the S3 store, chroot MNT/rootfs PROGRAM
//   containerd        snapdir containerd pull (snapdir snapshotter on the S3 store), ctr run --snapshotter snapdir
//   mount-trace       mount, with the trace a first run recorded (snapdir trace)
//   containerd-trace  containerd, with that trace
// Prints a table and writes bench/results/lazy-start-link.json and .txt; bench/README.md explains them.

import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import {
  MB, benchDir, buildChangedNote, buildFingerprint, cleanupOnSignals, cliBuilt, corpusMarker, defaultOut, dropCaches,
  dropCachesProblem, failer, fmt, fmtInt, hostInfo, median, msSince, nowNs, parseCommandLine, parseRuns, parseSteps, privateEnv,
  readOr, repo, runCommand, snapdirBin, snapdirCommit, table, tail, tryRun, walk, which, writeResult,
} from './lib/common.mjs'
import { SNAPSHOTTER, containerId, startContainerd, startSnapshotter, takeDown } from './lib/containerd.mjs'
import { TAG, layoutLayers, pythonImageLayout } from './lib/layouts.mjs'
import { emulatedLink, parseLinks } from './lib/link.mjs'
import { mountNotes, startFuseDaemon, stopAllDaemons, stopFuseDaemonAsync } from './lib/mounts.mjs'
import { S3_ENV, startS3rver } from './lib/s3.mjs'
import { startRegistry } from './lib/servers.mjs'
import { newWireCounts, startTcpProxy } from './lib/tcp-proxy.mjs'

const ALL_STEPS = ['skopeo', 'ctr', 'mount', 'containerd', 'mount-trace', 'containerd-trace']
const FULL = ['skopeo', 'ctr']
const LAZY = ['mount', 'containerd', 'mount-trace', 'containerd-trace']
const PROGRAM = ['/usr/bin/python3', '-c', 'print(42)']
const EXPECTED = '42\n'
const DEFAULT_LINKS = '100:20,20:50'
const BUCKET = 'bench'
const STORE_PREFIX = 'python'
const REPO_NAME = 'bench/python'

const usage = `usage: node bench/lazy-start-link.mjs [options]

  --runs N        cold runs per method and link, medians reported (default 3)
  --links LIST    links as MBIT:RTT_MS,... (default ${DEFAULT_LINKS}: 100 Mbit/s 20 ms, 20 Mbit/s 50 ms)
  --steps LIST    a subset of ${ALL_STEPS.join(',')} (default all; the
                  -trace steps need \`snapdir trace\` and say so when this build has none)
  --check-link    only measure the emulated links (round trip, throughput) and exit
  --keep          keep the scratch directory (registry, store, runs)
  --out FILE      JSON report (default bench/results/lazy-start-link.json; the table goes beside it as .txt)
  -h, --help      this text

As root. The image is built from $SNAPDIR_BENCH_DIR/debian-rootfs (bash bench/setup.sh) and cached as
$SNAPDIR_BENCH_DIR/lazy-start-layout; everything else goes into a fresh
$SNAPDIR_BENCH_DIR/lazy-start-link-XXXXXX, deleted at the end of the run.`

const fail = failer('lazy-start-link')

function parseOptions() {
  const values = parseCommandLine(
    {
      runs: { type: 'string', default: '3' },
      links: { type: 'string', default: DEFAULT_LINKS },
      steps: { type: 'string' },
      'check-link': { type: 'boolean' },
      keep: { type: 'boolean' },
      out: { type: 'string', default: defaultOut('lazy-start-link') },
    },
    usage,
    fail,
  )
  const links = parseLinks(values.links)
  if (!links) fail(`--links ${values.links}: expected MBIT:RTT_MS,... e.g. ${DEFAULT_LINKS}`, 2)
  return {
    runs: parseRuns(values.runs, fail),
    links,
    steps: parseSteps(values.steps, ALL_STEPS, fail, { allowEmpty: false }).steps,
    checkLink: values['check-link'] ?? false,
    keep: values.keep ?? false,
    out: path.resolve(values.out),
  }
}

const run = (argv, options = {}) => runCommand(argv, { cwd: repo, ...options })
const seconds = (ms) => ms / 1000
const progress = (text) => process.stderr.write(`${text}\n`)

/**
 * Runs `argv` to its end; resolves with { firstOutputMs (from `t0` to its first byte on stdout),
 * wallMs (its own run time), stdout }. Rejects when it fails or prints anything but EXPECTED.
 */
function runProgram(argv, t0, { env = process.env } = {}) {
  return new Promise((resolve, reject) => {
    const start = nowNs()
    const child = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let firstOutputMs = null
    const out = []
    const err = []
    child.stdout.on('data', (b) => {
      firstOutputMs ??= msSince(t0)
      out.push(b)
    })
    child.stderr.on('data', (b) => err.push(b))
    child.on('error', reject)
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8')
      if (code !== 0 || stdout !== EXPECTED) {
        reject(new Error(`${argv.join(' ')} exited with ${signal ?? code}, printed ${JSON.stringify(stdout)}:\n${tail(Buffer.concat(err).toString('utf8'))}`))
        return
      }
      resolve({ firstOutputMs, wallMs: msSince(start), stdout })
    })
  })
}

// ---------------------------------------------------------------------------------------------
// What the program reads: the regular files it opens (and the one it executes), run under strace
// once in a local copy of the image, their sizes summed: what a lazy start cannot do without.

/** `p` (absolute, as seen inside `root`) resolved inside `root`, following symlinks as the chrooted program would. */
function resolveInRoot(root, p, depth = 0) {
  if (depth > 40) return null
  const parts = p.split('/').filter(Boolean)
  let inside = []
  for (let i = 0; i < parts.length; i++) {
    if (parts[i] === '.') continue
    if (parts[i] === '..') {
      inside.pop()
      continue
    }
    const here = path.join(root, ...inside, parts[i])
    let st
    try {
      st = fs.lstatSync(here)
    } catch {
      return null
    }
    if (st.isSymbolicLink()) {
      const target = fs.readlinkSync(here)
      const base = target.startsWith('/') ? '' : `/${inside.join('/')}`
      return resolveInRoot(root, `${base}/${target}/${parts.slice(i + 1).join('/')}`, depth + 1)
    }
    inside = [...inside, parts[i]]
  }
  return path.join(root, ...inside)
}

async function programReads(layout, scratch) {
  const bundle = path.join(scratch, 'reference')
  await run(['umoci', 'unpack', '--image', `${layout}:${TAG}`, bundle])
  const rootfs = path.join(bundle, 'rootfs')
  const traceFile = path.join(scratch, 'reference.strace')
  // -y: each descriptor returned with the file it names, as the kernel resolves it (from strace's root)
  await run(['strace', '-f', '-qq', '-y', '-e', 'trace=execve,open,openat,openat2', '-o', traceFile, 'chroot', rootfs, ...PROGRAM])
  const files = new Map()
  const add = (file) => {
    if (!file || files.has(file)) return
    const st = fs.statSync(file, { throwIfNoEntry: false })
    if (st?.isFile()) files.set(file, st.size)
  }
  let chrooted = false
  for (const line of readOr(traceFile).split('\n')) {
    const exec = /execve\("([^"]+)".*\) = 0$/.exec(line)
    if (exec) {
      // the first execve is chroot's own; the ones after it run inside the root
      if (chrooted) add(resolveInRoot(rootfs, exec[1]))
      chrooted = true
      continue
    }
    const open = /= \d+<([^>]+)>$/.exec(line)
    if (open && open[1].startsWith(`${rootfs}/`)) add(open[1])
  }
  fs.rmSync(bundle, { recursive: true, force: true })
  const list = [...files].map(([file, size]) => ({ path: file.slice(rootfs.length), size }))
  return { files: list.length, bytes: list.reduce((a, f) => a + f.size, 0), list }
}

// ---------------------------------------------------------------------------------------------
// The stores as set up: a run that adds to one (a trace recorded on first mount, say) must not
// help the runs after it. s3rver keeps each object as files under DIR/BUCKET/KEY.

/** The files under `dir` now; `reset()` deletes any added since and returns how many it deleted. */
function storeAsPushed(dir) {
  const files = () => walk(dir).filter((e) => !e.st.isDirectory()).map((e) => e.path)
  const kept = new Set(files())
  return {
    reset() {
      const added = files().filter((f) => !kept.has(f))
      for (const f of added) fs.rmSync(f, { force: true })
      return added.length
    },
  }
}

// ---------------------------------------------------------------------------------------------
// The link, measured: a ping-pong takes one round trip, a bulk transfer its bytes at the rate.

async function measureLink(spec) {
  const link = emulatedLink(spec)
  const bulk = Math.round((spec.mbit * 1e6) / 8) // a second's worth at the nominal rate
  const server = net.createServer((socket) => {
    socket.once('data', (b) => {
      if (b[0] === 0x42) {
        socket.end(Buffer.alloc(bulk, 1))
        return
      }
      socket.write(b)
      socket.on('data', (more) => socket.write(more))
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const proxy = await startTcpProxy(`127.0.0.1:${server.address().port}`, { link })
  const [host, port] = proxy.host.split(':')
  try {
    // ping-pong on one connection, after its handshake: one round trip each
    const pings = await new Promise((resolve, reject) => {
      const socket = net.connect(Number(port), host)
      const times = []
      let t = 0
      socket.on('error', reject)
      socket.on('data', () => {
        times.push(performance.now() - t)
        if (times.length === 6) {
          socket.destroy()
          resolve(times.slice(1)) // the first one includes the handshake
          return
        }
        t = performance.now()
        socket.write('p')
      })
      t = performance.now()
      socket.write('p')
    })
    // a bulk transfer: first byte to last
    const transfer = await new Promise((resolve, reject) => {
      const socket = net.connect(Number(port), host)
      let first = null
      let bytes = 0
      socket.on('error', reject)
      socket.on('data', (b) => {
        first ??= performance.now()
        bytes += b.length
      })
      socket.on('end', () => resolve({ bytes, ms: performance.now() - first }))
      socket.write(Buffer.from([0x42]))
    })
    const rttMs = median(pings)
    const mbit = (transfer.bytes * 8) / (transfer.ms / 1000) / 1e6
    return { link: link.name, nominal: spec, rttMs, mbit, bulkBytes: transfer.bytes, ok: Math.abs(rttMs - spec.rttMs) <= Math.max(2, spec.rttMs * 0.1) && Math.abs(mbit - spec.mbit) <= spec.mbit * 0.1 }
  } finally {
    await proxy.close()
    await new Promise((resolve) => server.close(resolve))
  }
}

// ---------------------------------------------------------------------------------------------
// `snapdir trace`: the -trace steps run only when this build has it

/** Why this build cannot run the -trace steps, or null. */
function traceProblem() {
  const help = tryRun(snapdirBin, ['trace', '--help'], { outputOnFailure: true }) ?? ''
  if (!/^Usage: snapdir trace/m.test(help)) return 'not available in this build (no `snapdir trace`)'
  const record = tryRun(snapdirBin, ['trace', 'record', '--help'], { outputOnFailure: true }) ?? ''
  if (!/^Usage: snapdir trace record/m.test(record) || !record.includes('--push')) return 'not available in this build (no `snapdir trace record --push`)'
  return null
}

/**
 * Records the program's traces into the traced store once, before the timed runs, as a user's
 * first start would: `snapdir trace record --push` mounts, the program runs once on the mount, and
 * on SIGTERM the mount stores what was read. A trace belongs to a view, so two: the rootfs view
 * (what mount-trace mounts) and the layer view of the image's top layer (what the snapshotter's
 * layer mounts serve; the image has one layer, so that is all the program reads). Untimed and not
 * on a link: what is measured is the start with a trace, not its recording.
 */
async function recordTrace(ctx) {
  const layers = ctx.layers.flatMap((l) => ['--layer', l.diffId])
  const views = [
    { view: 'rootfs', args: ['--id', ctx.id, '--view', 'rootfs'], root: 'rootfs' },
    { view: 'layer', args: layers, root: '.' },
  ]
  const recorded = []
  for (const { view, args, root } of views) {
    const dir = path.join(ctx.scratch, `trace-${view}`)
    const mnt = path.join(dir, 'mnt')
    fs.mkdirSync(mnt, { recursive: true })
    const log = path.join(dir, 'trace.log')
    const argv = [snapdirBin, 'trace', 'record', '--store', ctx.tracedStoreUrl, '--s3-endpoint', ctx.s3.endpoint, ...args, '--cache-dir', path.join(dir, 'cache'), '--push', mnt]
    const daemon = await startFuseDaemon({ label: `snapdir trace record (${view})`, argv, mnt, env: ctx.env, log })
    const t0 = nowNs()
    await runProgram(['chroot', path.join(mnt, root), ...PROGRAM], t0)
    // the trace is stored as the mount goes down, in s3rver, which runs in this process
    const stopped = await stopFuseDaemonAsync(daemon)
    if (!stopped.clean) throw new Error(`snapdir trace record (${view}) did not store its trace and exit on SIGTERM (${stopped.how}):\n${tail(readOr(log))}`)
    recorded.push({ view, wallMs: msSince(t0), log: tail(readOr(log), 3) })
  }
  const traces = path.join(ctx.s3Dir, BUCKET, `${STORE_PREFIX}-traced`, 'refs', 'traces')
  const stored = fs.existsSync(traces) ? walk(traces).filter((e) => e.path.endsWith('._S3rver_object')).length : 0
  if (stored < views.length) throw new Error(`snapdir trace record stored ${stored} traces under refs/traces/, expected ${views.length}`)
  return { recorded, stored }
}

// ---------------------------------------------------------------------------------------------
// The methods. Each gets its run directory and the link's proxies, and returns { firstOutputMs,
// phases (ms, in order), and what else it knows }. Whatever is started before t0 is local set-up
// that no method pays for (a containerd and a snapshotter already running, as on a host).

async function skopeoStart(ctx, dir, link) {
  const [copy, bundle] = [path.join(dir, 'layout'), path.join(dir, 'bundle')]
  link.registry.counts = newWireCounts()
  const t0 = nowNs()
  // an insecure source: containers/image tries HTTPS first, then HTTP (a round trip or two)
  const pull = await run(['skopeo', 'copy', '--quiet', '--src-tls-verify=false', `docker://${link.registry.host}/${REPO_NAME}:${TAG}`, `oci:${copy}:${TAG}`])
  const unpack = await run(['umoci', 'unpack', '--image', `${copy}:${TAG}`, bundle])
  const prog = await runProgram(['chroot', path.join(bundle, 'rootfs'), ...PROGRAM], t0)
  return { firstOutputMs: prog.firstOutputMs, phases: { pullMs: pull.wallMs, unpackMs: unpack.wallMs, programMs: prog.wallMs }, wire: link.registry.counts }
}

async function ctrStart(ctx, dir, link) {
  const ctd = await startContainerd(path.join(dir, 'containerd'))
  ctx.running.add(ctd)
  const image = `${link.registry.host}/${REPO_NAME}:${TAG}`
  try {
    dropCaches()
    link.registry.counts = newWireCounts()
    const t0 = nowNs()
    const pull = await ctd.ctr(['image', 'pull', '--plain-http', image])
    const prog = await runProgram(['ctr', '--address', ctd.address, 'run', '--rm', image, containerId('lsl-ctr'), ...PROGRAM], t0)
    return { firstOutputMs: prog.firstOutputMs, phases: { pullMs: pull.wallMs, runMs: prog.wallMs }, wire: link.registry.counts }
  } finally {
    ctx.running.delete(ctd)
    await ctd.stop()
  }
}

async function mountStart(ctx, dir, link, storeUrl) {
  const mnt = path.join(dir, 'mnt')
  fs.mkdirSync(mnt)
  link.s3.counts = newWireCounts()
  const t0 = nowNs()
  const daemon = await startFuseDaemon({
    label: 'snapdir mount',
    argv: [snapdirBin, 'mount', '--store', storeUrl, '--s3-endpoint', link.s3.endpoint, '--id', ctx.id, '--view', 'rootfs', '--cache-dir', path.join(dir, 'cache'), '--json', mnt],
    mnt,
    env: ctx.env,
    log: path.join(dir, 'mount.log'),
    stdout: path.join(dir, 'mount.json'),
  })
  const mountMs = msSince(t0)
  const prog = await runProgram(['chroot', path.join(mnt, 'rootfs'), ...PROGRAM], t0)
  const wire = link.s3.counts
  await stopFuseDaemonAsync(daemon)
  const counters = JSON.parse(readOr(path.join(dir, 'mount.json'), 'null'))
  return { firstOutputMs: prog.firstOutputMs, phases: { mountMs, programMs: prog.wallMs }, wire, counters }
}

async function containerdStart(ctx, dir, link, storeUrl) {
  const sn = await startSnapshotter(path.join(dir, 'snapshotter'), ['--store', storeUrl, '--s3-endpoint', link.s3.endpoint, '--cache-dir', path.join(dir, 'cache')], { env: ctx.env })
  ctx.running.add(sn)
  const ctd = await startContainerd(path.join(dir, 'containerd'), { snapshotterAddress: sn.address })
  ctx.running.add(ctd)
  const image = `snapdir.bench/${REPO_NAME}:${TAG}`
  try {
    dropCaches()
    link.s3.counts = newWireCounts()
    const t0 = nowNs()
    const pull = await run([snapdirBin, 'containerd', 'pull', '--store', storeUrl, '--s3-endpoint', link.s3.endpoint, '--id', ctx.id, '--address', ctd.address, '--snapshotter', SNAPSHOTTER, image], { env: ctx.env })
    const prog = await runProgram(['ctr', '--address', ctd.address, 'run', '--rm', '--snapshotter', SNAPSHOTTER, image, containerId('lsl-snapdir'), ...PROGRAM], t0)
    const wire = link.s3.counts
    await ctd.ctr(['image', 'rm', '--sync', image])
    return { firstOutputMs: prog.firstOutputMs, phases: { pullMs: pull.wallMs, runMs: prog.wallMs }, wire }
  } finally {
    for (const s of [ctd, sn]) {
      ctx.running.delete(s)
      await s.stop()
    }
  }
}

const METHODS = {
  skopeo: { run: skopeoStart, what: 'skopeo copy docker:// (registry over the link) -> oci:, umoci unpack, chroot', cold: true },
  ctr: { run: ctrStart, what: 'ctr image pull --plain-http (registry over the link; overlayfs snapshotter), ctr run --rm', cold: false },
  mount: { run: mountStart, what: 'snapdir mount --view rootfs (S3 store over the link), chroot MNT/rootfs', cold: true },
  containerd: { run: containerdStart, what: 'snapdir containerd pull (S3 store over the link), ctr run --rm --snapshotter snapdir', cold: false },
  'mount-trace': { run: mountStart, what: 'mount, on a store where snapdir trace record --push stored the rootfs view\'s trace', cold: true, trace: true },
  'containerd-trace': { run: containerdStart, what: 'containerd, on a store where snapdir trace record --push stored the layer view\'s trace', cold: false, trace: true },
}

// ---------------------------------------------------------------------------------------------

function checkMachine(opts, corpus) {
  const problems = [dropCachesProblem()].filter(Boolean)
  if (!cliBuilt()) problems.push('bin/snapdir or dist/bundle is missing: run npm run build')
  const tools = new Set(['chroot', 'strace', 'umoci'])
  if (opts.steps.includes('skopeo') || opts.steps.includes('ctr')) tools.add('skopeo').add('docker-registry')
  if (opts.steps.some((s) => s === 'ctr' || s.startsWith('containerd'))) tools.add('containerd').add('ctr').add('runc')
  for (const t of tools) if (!which(t)) problems.push(`${t} is not installed: run bash scripts/setup.sh and bash bench/setup.sh --images`)
  if (!fs.existsSync(`${corpus}.complete`)) problems.push(`corpus ${corpus} is missing: run bash bench/setup.sh`)
  if (!fs.existsSync('/dev/fuse')) problems.push('/dev/fuse is missing (modprobe fuse)')
  return problems
}

async function main() {
  const opts = parseOptions()
  if (opts.checkLink) {
    for (const spec of opts.links) {
      const m = await measureLink(spec)
      process.stdout.write(`${m.link}: round trip ${fmt(m.rttMs, 1)} ms, ${fmt(m.mbit, 1)} Mbit/s over ${fmt(m.bulkBytes / MB, 1)} MB${m.ok ? '' : '  (off by more than 10% or 2 ms)'}\n`)
    }
    return
  }
  const corpus = path.join(benchDir, 'debian-rootfs')
  const problems = checkMachine(opts, corpus)
  if (problems.length) fail(problems.join('\n'))

  const layout = await pythonImageLayout(corpus)
  const scratch = fs.mkdtempSync(path.join(benchDir, 'lazy-start-link-'))
  const servers = []
  const running = new Set()
  const cleanup = async () => {
    stopAllDaemons()
    for (const s of [...running]) await s.stop()
    for (const s of servers.reverse()) await s()
    const left = takeDown(scratch)
    if (left.length) mountNotes.push(`left behind and taken down: ${left.join('; ')}`)
    if (opts.keep) progress(`kept ${scratch}`)
    else fs.rmSync(scratch, { recursive: true, force: true })
  }
  // servers and mounts name the scratch directory: takeDown finds them all, synchronously
  cleanupOnSignals('lazy-start-link', () => {
    stopAllDaemons()
    takeDown(scratch)
    if (!opts.keep) fs.rmSync(scratch, { recursive: true, force: true })
  })

  const buildBefore = buildFingerprint()
  const notes = []
  let result
  try {
    const home = path.join(scratch, 'home')
    fs.mkdirSync(home)
    // a private HOME: no chunk cache of this user's takes part; s3rver's credentials
    const env = { ...privateEnv(home), ...S3_ENV }

    progress('what the program reads (strace, in a local copy of the image)')
    const reads = await programReads(layout, scratch)
    progress(`  it opens ${reads.files} files, ${fmt(reads.bytes / MB, 2)} MB`)

    progress('docker-registry: skopeo copy of the image')
    const registry = await startRegistry(path.join(scratch, 'registry'))
    servers.push(() => registry.stop())
    await run(['skopeo', 'copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:${TAG}`, `docker://${registry.host}/${REPO_NAME}:${TAG}`])

    progress('s3rver: snapdir push of the image')
    const s3Dir = path.join(scratch, 's3')
    const s3 = await startS3rver({ directory: s3Dir, bucket: BUCKET })
    servers.push(() => s3.close())
    const storeUrl = `s3://${BUCKET}/${STORE_PREFIX}`
    const push = await run([snapdirBin, 'push', '--json', '--store', storeUrl, '--s3-endpoint', s3.endpoint, '--name', 'python', layout], { env })
    const id = JSON.parse(push.stdout).id

    const ctx = { scratch, env, storeUrl, s3, s3Dir, layers: layoutLayers(layout), id, running, stores: { [storeUrl]: storeAsPushed(path.join(s3Dir, BUCKET, STORE_PREFIX)) } }
    const skipped = {}
    const traceWhy = opts.steps.some((s) => METHODS[s].trace) ? traceProblem() : null
    let traceRecord = null
    for (const step of opts.steps.filter((s) => METHODS[s].trace)) {
      if (traceWhy) skipped[step] = traceWhy
    }
    const steps = opts.steps.filter((s) => !skipped[s])
    if (steps.some((s) => METHODS[s].trace)) {
      // a store of their own, so that the trace serves the -trace steps alone
      ctx.tracedStoreUrl = `s3://${BUCKET}/${STORE_PREFIX}-traced`
      progress('snapdir push of the image to a second store, and snapdir trace record there (untimed, no link)')
      await run([snapdirBin, 'push', '--json', '--store', ctx.tracedStoreUrl, '--s3-endpoint', s3.endpoint, '--name', 'python', layout], { env })
      try {
        traceRecord = await recordTrace(ctx)
        ctx.stores[ctx.tracedStoreUrl] = storeAsPushed(path.join(s3Dir, BUCKET, `${STORE_PREFIX}-traced`))
      } catch (error) {
        // a build whose `snapdir trace record` takes other options: the -trace steps say so and the rest runs
        const why = `snapdir trace record failed: ${error.message.split('\n').slice(0, 3).join(' ')}`
        for (const step of steps.filter((s) => METHODS[s].trace)) skipped[step] = why
      }
    }
    const timed = steps.filter((s) => !skipped[s])

    const links = []
    for (const spec of opts.links) {
      const measured = await measureLink(spec)
      if (!measured.ok) notes.push(`link ${measured.link} measured ${fmt(measured.rttMs)} ms, ${fmt(measured.mbit)} Mbit/s: off by more than 10% or 2 ms (a busy machine?)`)
      const link = emulatedLink(spec)
      const registryProxy = await startTcpProxy(registry.host, { link })
      servers.push(() => registryProxy.close())
      const s3Proxy = await startTcpProxy(`127.0.0.1:${s3.port}`, { link })
      servers.push(() => s3Proxy.close())
      links.push({ spec, measured, name: link.name, registry: registryProxy, s3: s3Proxy })
    }

    // samples[link][step]: one per run. Rounds alternate the methods, each round starting one
    // further on, so that a slow spell of the machine falls on every method alike.
    const samples = Object.fromEntries(links.map((l) => [l.name, Object.fromEntries(timed.map((s) => [s, []]))]))
    for (let n = 1; n <= opts.runs; n++) {
      const order = timed.map((_, i) => timed[(i + n - 1) % timed.length])
      for (const link of links) {
        for (const step of order) {
          const dir = path.join(scratch, 'runs', `${link.name}-${step}-${n}`)
          fs.mkdirSync(dir, { recursive: true })
          // methods that start local servers first drop the cache themselves, once those are up
          if (METHODS[step].cold) dropCaches()
          const busy = tryRun('pgrep', ['-f', 'vitest'])
          const store = METHODS[step].trace ? ctx.tracedStoreUrl : ctx.storeUrl
          const s = await METHODS[step].run(ctx, dir, link, store)
          const added = ctx.stores[store]?.reset() ?? 0
          if (added) s.storeFilesAdded = added
          const left = takeDown(dir)
          if (left.length) s.leftBehind = left
          if (busy) s.otherActivity = 'vitest was running'
          fs.rmSync(dir, { recursive: true, force: true })
          samples[link.name][step].push(s)
          progress(`  ${link.name} ${step} run ${n}: first output ${fmt(seconds(s.firstOutputMs), 2)} s, ${fmt((s.wire.bytesDown + s.wire.bytesUp) / MB, 2)} MB over the link`)
        }
      }
    }
    const adding = Object.entries(samples).flatMap(([l, m]) => Object.entries(m).filter(([, list]) => list.some((x) => x.storeFilesAdded)).map(([step]) => `${l} ${step}`))
    if (adding.length) notes.push(`runs of ${adding.join(', ')} added to their store (removed again after each run, so every run starts from the store as set up)`)
    const busyRuns = Object.values(samples).flatMap((m) => Object.values(m).flat()).filter((s) => s.otherActivity).length
    if (busyRuns) notes.push(`a test suite (vitest) was running during ${busyRuns} runs: those times are inflated, run again when the machine is quiet`)

    const summary = {}
    for (const [linkName, bySteps] of Object.entries(samples)) {
      summary[linkName] = {}
      for (const [step, list] of Object.entries(bySteps)) {
        const phases = Object.fromEntries(Object.keys(list[0].phases).map((k) => [k, median(list.map((s) => s.phases[k]))]))
        const linkBytes = median(list.map((s) => s.wire.bytesDown + s.wire.bytesUp))
        summary[linkName][step] = {
          firstOutputMs: median(list.map((s) => s.firstOutputMs)),
          phases,
          linkBytes,
          linkBytesDown: median(list.map((s) => s.wire.bytesDown)),
          requests: median(list.map((s) => s.wire.requests)),
          connections: median(list.map((s) => s.wire.connections)),
          linkToRead: linkBytes / reads.bytes,
        }
        if (list[0].counters) summary[linkName][step].mountFetchedBytes = median(list.map((s) => s.counters.fetchedBytes))
      }
    }
    const speedups = []
    for (const [linkName, bySteps] of Object.entries(summary)) {
      for (const lazy of LAZY.filter((s) => bySteps[s])) {
        for (const full of FULL.filter((s) => bySteps[s])) speedups.push({ link: linkName, lazy, full, speedup: bySteps[full].firstOutputMs / bySteps[lazy].firstOutputMs })
      }
    }

    result = {
      schema: 1,
      date: new Date().toISOString(),
      machine: {
        ...hostInfo(),
        snapdirCommit: snapdirCommit(),
        umoci: tryRun('umoci', ['--version']),
        skopeo: tryRun('skopeo', ['--version']),
        containerd: tryRun('containerd', ['--version']),
        runc: tryRun('runc', ['--version'])?.split('\n')[0] ?? null,
      },
      corpus: { root: corpus, marker: corpusMarker(corpus) },
      image: { layout, layers: layoutLayers(layout), storeUrl, id, pushWallMs: push.wallMs },
      program: PROGRAM,
      programReads: reads,
      runs: opts.runs,
      links: links.map((l) => ({ name: l.name, ...l.spec, measured: l.measured })),
      methods: Object.fromEntries(opts.steps.map((s) => [s, METHODS[s].what])),
      skipped,
      traceRecord,
      summary,
      speedups,
      samples,
      build: null,
      notes,
    }
  } finally {
    await cleanup()
  }
  notes.push(...mountNotes)
  result.build = buildFingerprint()
  const changed = buildChangedNote(buildBefore, result.build)
  if (changed) notes.push(changed)
  writeResult(opts.out, result, report, { text: true })
}

// ---------------------------------------------------------------------------------------------
// Report

const PHASE_LABEL = { pullMs: 'pull', unpackMs: 'unpack', programMs: 'program', runMs: 'run', mountMs: 'mount' }

function report(r) {
  const lines = []
  lines.push(`lazy start over an emulated link, ${r.date}`)
  lines.push(`image: ${r.corpus.root} as one umoci layer (${r.image.layers.map((l) => `${fmt(l.size / MB)} MB gzip`).join(', ')})`)
  lines.push(`machine: ${r.machine.cpu}, ${r.machine.cores} cores, kernel ${r.machine.kernel}; ${r.machine.containerd ?? 'no containerd'}`)
  lines.push(`program: ${r.program.map((a) => (a.includes(' ') || a.includes('(') ? `'${a}'` : a)).join(' ')}: opens ${r.programReads.files} files, ${fmt(r.programReads.bytes / MB, 2)} MB`)
  lines.push(`links (measured: round trip, throughput): ${r.links.map((l) => `${l.name} (${fmt(l.measured.rttMs)} ms, ${fmt(l.measured.mbit)} Mbit/s)`).join(', ')}`)
  lines.push(`time from nothing local to the program's first output; medians of ${r.runs} cold runs (page cache dropped, fresh local state)`)
  for (const l of r.links) {
    const by = r.summary[l.name]
    lines.push('')
    lines.push(`${l.name}:`)
    // phases are medians of their own, so they need not add up to the median exactly
    const rows = Object.entries(by).map(([step, s]) => [
      step,
      Object.entries(s.phases).map(([k, v]) => `${PHASE_LABEL[k]} ${fmt(seconds(v), 2)}`).join(', '),
      fmt(seconds(s.firstOutputMs), 2),
      fmt(s.linkBytes / MB, 2),
      fmt(s.linkToRead, 2),
      `${fmtInt(s.requests)} / ${fmtInt(s.connections)}`,
    ])
    lines.push(table(['method', 'phases s', 'first output s', 'link MB', 'link/read', 'requests / conns'], rows, 2))
    const sp = r.speedups.filter((x) => x.link === l.name)
    if (sp.length) lines.push(`speed-up (full / lazy, target >= 10): ${sp.map((x) => `${x.lazy} vs ${x.full} ${fmt(x.speedup, 1)}x`).join(', ')}`)
  }
  lines.push('')
  for (const [step, what] of Object.entries(r.methods)) lines.push(`  ${step}: ${r.skipped[step] ? `${r.skipped[step]}` : what}`)
  lines.push(`link/read: bytes over the link (both ways, HTTP included) / the ${fmt(r.programReads.bytes / MB, 2)} MB of the files the program opens (target <= 1.3 for the lazy methods)`)
  lines.push('requests / conns: HTTP requests and TCP connections over the link')
  for (const n of r.notes) lines.push(`warning: ${n}`)
  return lines.join('\n')
}

main().catch((error) => {
  stopAllDaemons()
  fail(error.stack ?? String(error))
})
