#!/usr/bin/env node
// Memory of the containerd snapshotter and its lazy layer mounts (issue 18: "bounded memory, report
// RSS idle and serving"). The python image (lazy-start's layout) is pushed into a local store;
// containerd and `snapdir snapshotter --store` start on roots of their own; `snapdir containerd pull`
// brings the image in lazily. Then, for the snapshotter and each layer mount process (VmRSS and
// VmHWM of /proc/PID/status):
//   idle     after the pull, nothing read yet
//   serving  after a container read every regular file of the image once (tar of / piped to wc -c)
//
//   node bench/snapshotter-memory.mjs [--out FILE]     (as root)
//
// Writes bench/results/snapshotter-memory.{json,txt}.

import fs from 'node:fs'
import path from 'node:path'
import {
  benchDir, cleanupOnSignals, corpusPath, defaultOut, failer, fmt, hostInfo, parseCommandLine, readOr, runCommand, snapdirBin, snapdirCommit, table, writeResult,
} from './lib/common.mjs'
import { SNAPSHOTTER, containerId, startContainerd, startSnapshotter, takeDown } from './lib/containerd.mjs'
import { pythonImageLayout } from './lib/layouts.mjs'

const usage = `usage: node bench/snapshotter-memory.mjs [--out FILE]

  --out FILE   JSON report (default bench/results/snapshotter-memory.json; the table goes beside it as .txt)
  -h, --help   this text`

const fail = failer('snapshotter-memory')
const values = parseCommandLine({ out: { type: 'string' } }, usage, fail)
const out = values.out ?? defaultOut('snapshotter-memory')
if (process.getuid?.() !== 0) fail('run as root: containerd, runc and FUSE mounts need it', 2)

/** VmRSS and VmHWM of a process, MB. */
function memory(pid) {
  const status = readOr(`/proc/${pid}/status`)
  const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rssMB: kb('VmRSS') / 1024, peakMB: kb('VmHWM') / 1024 }
}

/** The snapshotter's process and its layer mount processes, by their command lines under `root`. */
function processes(root) {
  const found = []
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    const argv = readOr(`/proc/${pid}/cmdline`).split('\0')
    if (!argv.some((a) => a.startsWith(root))) continue
    if (argv.includes('snapshotter')) found.push({ pid, what: 'snapshotter' })
    else if (argv.includes('mount') && argv.includes('--layer')) found.push({ pid, what: `layer mount ${argv[argv.indexOf('--layer') + 1]?.slice(7, 19) ?? ''}` })
  }
  return found.sort((a, b) => a.what.localeCompare(b.what))
}

const dir = fs.mkdtempSync(path.join(benchDir, 'snapshotter-memory-'))
const cleanup = () => {
  takeDown(dir)
  fs.rmSync(dir, { recursive: true, force: true })
}
cleanupOnSignals('snapshotter-memory', cleanup)
try {
  const layout = await pythonImageLayout(corpusPath())
  const store = path.join(dir, 'store')
  const id = (await runCommand([process.execPath, snapdirBin, 'push', '--store', store, layout])).stdout.trim()
  const sn = await startSnapshotter(path.join(dir, 'sn'), ['--store', store, '--cache-dir', path.join(dir, 'cache')])
  const ctd = await startContainerd(path.join(dir, 'containerd'), { snapshotterAddress: sn.address })
  try {
    await runCommand([process.execPath, snapdirBin, 'containerd', 'pull', '--store', store, '--id', id, '--address', ctd.address, 'bench/python:1'])
    const samples = { idle: processes(dir).map((p) => ({ ...p, ...memory(p.pid) })) }
    await ctd.ctr(['run', '--rm', '--snapshotter', SNAPSHOTTER, 'bench/python:1', containerId('mem'), 'sh', '-c', 'tar -cf - --one-file-system / 2>/dev/null | wc -c'])
    samples.serving = processes(dir).map((p) => ({ ...p, ...memory(p.pid) }))
    const result = { when: new Date().toISOString(), host: hostInfo(), commit: snapdirCommit(), image: layout, samples }
    writeResult(out, result, report, { text: true })
  } finally {
    await ctd.stop()
    await sn.stop()
  }
} finally {
  cleanup()
}

function report(r) {
  const rows = []
  for (const [phase, list] of Object.entries(r.samples)) for (const p of list) rows.push([phase, p.what, fmt(p.rssMB), fmt(p.peakMB)])
  return [
    `snapdir snapshotter memory, ${r.when}, snapdir ${r.commit?.slice(0, 12) ?? '?'}`,
    `image: ${r.image} (the python image as one layer), store local, pulled lazily with snapdir containerd pull`,
    'idle: after the pull; serving: after a container read every regular file once (tar of / piped to wc -c)',
    '',
    table(['phase', 'process', 'RSS MB', 'peak RSS MB'], rows, 2),
    '',
    "a layer mount keeps at most --memory-cache MiB of chunks in memory (default 256), the snapshotter no file data",
  ].join('\n')
}
