// Background servers for the benchmarks that need them (image-store, registry-sync, serve): a free
// loopback port, a server process whose output goes to a log and that stops on SIGTERM, waiting until
// one is ready, the CPU seconds one has used, a docker-registry 2.8 (Debian's docker-registry) on
// loopback with its own storage, and `snapdir serve` on a store.

import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { CLK_TCK, readOr, snapdirBin, tail } from './common.mjs'
import { procStat, sleep } from './mounts.mjs'

/** A free TCP port on 127.0.0.1 (asked of the kernel, then released for the server that takes it). */
export async function freePort() {
  const server = net.createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** A background server process, output to `log`; `stop()` sends SIGTERM and waits for it to exit (SIGKILL after `graceMs`). */
export function startServer(argv, { log, env = process.env }) {
  const fd = fs.openSync(log, 'w')
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', fd, fd], env })
  fs.closeSync(fd)
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)))
  child.on('error', () => {})
  let done = false
  void exited.then(() => (done = true))
  return {
    child,
    alive: () => !done,
    async stop(graceMs = 30_000) {
      if (done) return
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      await exited
      clearTimeout(timer)
    },
  }
}

/** Polls `probe` (an async function, true when ready) until it answers true; fails after `ms` or when `server` exits. */
export async function waitReady(label, server, probe, log, ms = 60_000) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (!server.alive()) throw new Error(`${label} exited before it was ready:\n${tail(readOr(log))}`)
    if (await probe()) return
    await sleep(200)
  }
  throw new Error(`${label} not ready after ${ms / 1000} s:\n${tail(readOr(log))}`)
}

/** CPU seconds (user + system) a process has used so far, or 0 when it is gone. */
export function cpuSeconds(pid) {
  const st = procStat(pid)
  if (!st) return 0
  // fields 14 and 15 of /proc/PID/stat (utime, stime), counted here from field 3 (the state)
  return (Number(st[11]) + Number(st[12])) / CLK_TCK
}

/**
 * docker-registry (distribution 2.8) on 127.0.0.1 at a free port, blobs and manifests under
 * `dir/storage`, its config and log beside them; ready when /v2/ answers 200. Returns { host
 * ("127.0.0.1:PORT"), server (see startServer), stop() }.
 */
export async function startRegistry(dir) {
  for (const sub of ['storage']) fs.mkdirSync(path.join(dir, sub), { recursive: true })
  const host = `127.0.0.1:${await freePort()}`
  const config = path.join(dir, 'registry.yml')
  fs.writeFileSync(config, ['version: 0.1', 'log:', '  level: warn', 'storage:', '  filesystem:', `    rootdirectory: ${path.join(dir, 'storage')}`, 'http:', `  addr: ${host}`, ''].join('\n'))
  const log = path.join(dir, 'registry.log')
  const server = startServer(['docker-registry', 'serve', config], { log })
  try {
    await waitReady('docker-registry', server, async () => {
      try {
        return (await fetch(`http://${host}/v2/`)).ok
      } catch {
        return false
      }
    }, log)
  } catch (error) {
    await server.stop()
    throw error
  }
  return { host, server, stop: () => server.stop() }
}

/**
 * `bin/snapdir serve --store STORE` on 127.0.0.1 at a port of its choosing (--listen 127.0.0.1:0),
 * `extra` more options; its log (stdout and the access log on stderr) in `log`; ready once the log
 * holds its "listening on URL" line. Returns { host ("127.0.0.1:PORT"), server, stop() }.
 */
export async function startServe(store, { log, extra = [], env = process.env }) {
  const server = startServer([process.execPath, snapdirBin, 'serve', '--store', store, '--listen', '127.0.0.1:0', ...extra], { log, env })
  let host = null
  try {
    await waitReady('snapdir serve', server, async () => {
      host = /listening on https?:\/\/(\S+)\n/.exec(readOr(log))?.[1] ?? null
      return host !== null
    }, log)
  } catch (error) {
    await server.stop()
    throw error
  }
  return { host, server, stop: () => server.stop() }
}
