// Debian's containerd (with runc) and `snapdir snapshotter` for the benchmarks that start containers
// (lazy-start-link), each on its own root, state and socket under a directory of the benchmark's, as
// the tests start them (test/helpers/snapshotter.ts): containerd with snapdir as a proxy
// snapshotter beside its own overlayfs one. Each is up when its log says so; stopping takes down
// what it left mounted, including the snapshotter's layer mounts, which outlive it by design.

import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { readOr, runCommand, snapdirBin } from './common.mjs'
import { forceUnmount, mountsUnder, processAlive, waitSync } from './mounts.mjs'
import { startServer, waitReady } from './servers.mjs'

/** How containerd's config names the snapdir proxy snapshotter, and so `--snapshotter`. */
export const SNAPSHOTTER = 'snapdir'

/** A container ID no other run has: runc keeps its state machine-wide (/run/containerd/runc). */
export const containerId = (tag) => `${tag}-${randomBytes(4).toString('hex')}`

const logSays = (log, needle) => async () => readOr(log).includes(needle)

/**
 * A unix socket path for `name` in a fresh directory under the system's temporary directory: a
 * benchmark's scratch paths are longer than a socket's 108 bytes allow (containerd adds ".ttrpc").
 * { address, remove() }.
 */
function socketPath(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'snapdir-bench-'))
  return { address: path.join(dir, name), remove: () => fs.rmSync(dir, { recursive: true, force: true }) }
}

/** `server.stop()`, then the socket's directory removed. */
const stopper = (server, socket) => async () => {
  await server.stop()
  socket.remove()
}

/**
 * `snapdir snapshotter --root DIR/root --address SOCK ARGS…` (socketPath), log DIR/snapshotter.log;
 * up once it prints "serving containerd". { address, stop() }.
 */
export async function startSnapshotter(dir, args, { env = process.env } = {}) {
  fs.mkdirSync(dir, { recursive: true })
  const socket = socketPath('snapshotter.sock')
  const { address } = socket
  const log = path.join(dir, 'snapshotter.log')
  const server = startServer([snapdirBin, 'snapshotter', '--root', path.join(dir, 'root'), '--address', address, ...args], { log, env })
  try {
    await waitReady('snapdir snapshotter', server, logSays(log, 'serving containerd'), log)
  } catch (error) {
    await stopper(server, socket)()
    throw error
  }
  return { address, log, stop: stopper(server, socket) }
}

/**
 * containerd on root and state under `dir` and a socket of its own (socketPath), CRI off, with `snapshotterAddress` (when given)
 * as the proxy snapshotter SNAPSHOTTER; up once it logs "containerd successfully booted".
 * { address, ctr(args) (a runCommand of ctr against it), stop() }.
 */
export async function startContainerd(dir, { snapshotterAddress = null } = {}) {
  fs.mkdirSync(dir, { recursive: true })
  const socket = socketPath('containerd.sock')
  const { address } = socket
  const config = path.join(dir, 'config.toml')
  const lines = [
    'version = 2',
    `root = "${path.join(dir, 'root')}"`,
    `state = "${path.join(dir, 'state')}"`,
    // the CRI plugin wants a CNI set-up a benchmark has no use for
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${address}"`,
  ]
  if (snapshotterAddress) lines.push('[proxy_plugins]', `  [proxy_plugins.${SNAPSHOTTER}]`, '    type = "snapshot"', `    address = ${JSON.stringify(snapshotterAddress)}`)
  fs.writeFileSync(config, `${lines.join('\n')}\n`)
  const log = path.join(dir, 'containerd.log')
  const server = startServer(['containerd', '--config', config], { log })
  try {
    await waitReady('containerd', server, logSays(log, 'containerd successfully booted'), log)
  } catch (error) {
    await stopper(server, socket)()
    throw error
  }
  return {
    address,
    log,
    ctr: (args, options = {}) => runCommand(['ctr', '--address', address, ...args], options),
    stop: stopper(server, socket),
  }
}

/**
 * What a run under `dir` left behind, taken down: every mount at or below it (deepest first), and
 * then every process whose command line names it (a snapshotter's layer mounts that did not exit
 * with their mount). Returns what it had to do, for the report's notes; [] when nothing was left.
 * Synchronous: it also runs from signal handlers.
 */
export function takeDown(dir) {
  const done = []
  for (const m of mountsUnder(dir).reverse()) {
    if (m.fstype.startsWith('fuse')) forceUnmount(m.mountPoint)
    else spawnSync('umount', ['-l', m.mountPoint], { timeout: 10_000, stdio: 'ignore' })
    done.push(`unmounted ${m.fstype} ${m.mountPoint}`)
  }
  const pids = []
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)) {
    if (readOr(`/proc/${pid}/cmdline`).split('\0').some((a) => a.startsWith(dir))) pids.push(Number(pid))
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM')
      done.push(`stopped process ${pid} (${readOr(`/proc/${pid}/cmdline`).split('\0').slice(0, 3).join(' ')})`)
    } catch {}
  }
  waitSync(() => pids.every((pid) => !processAlive(pid)), 5_000)
  for (const pid of pids.filter(processAlive)) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  }
  return done
}
