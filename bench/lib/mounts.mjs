// FUSE mounts for the benchmarks that make them (mount-read, lazy-start): reading the mount table,
// starting a FUSE daemon that stays in the foreground, and taking it down again so that its mount is
// gone, also when the daemon hangs. The stopping side is synchronous, because it also runs from
// signal handlers and on process exit, where nothing asynchronous gets to run.
//
// Every daemon started here is tracked until it is stopped: stopAllDaemons() stops what is left, and
// mountNotes collects what a report should say (a daemon that needed more than SIGTERM, a mount
// that could not be removed, an aborted FUSE connection).

import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { msSince, nowNs, readOr, tail, which } from './common.mjs'

/** fusectl: one directory per FUSE connection, with an `abort` file. */
export const FUSECTL = '/sys/fs/fuse/connections'
/** How long a daemon may take to unmount and exit after SIGTERM before it is unmounted by force. */
export const STOP_TIMEOUT_MS = 15_000
const READY_TIMEOUT_MS = 60_000
// snapdir announces readiness with a line containing "mounted" on stderr. When the mount shows up in
// mountinfo first, the line is waited for this long before mountinfo alone counts.
const READY_LINE_GRACE_MS = 2_000

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
/** A synchronous sleep, for the cleanup paths (signal handlers, process exit). */
export const sleepSync = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

/** Polls `condition` every 20 ms, synchronously, for up to `ms`; its last answer. */
export function waitSync(condition, ms) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (condition()) return true
    sleepSync(20)
  }
  return condition()
}

/** What a report should say about how mounts were taken down; scripts append it to their notes. */
export const mountNotes = []

// ---------------------------------------------------------------------------------------------
// The mount table

const unescapeMountinfo = (s) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)))

/**
 * /proc/self/mountinfo (proc(5)), in mount order: { mountPoint, majMin, fstype, source }. The
 * optional fields end at a lone '-', so fstype and source are counted from there.
 */
export function mountTable() {
  const out = []
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (!line) continue
    const f = line.split(' ')
    const sep = f.indexOf('-', 6)
    out.push({ mountPoint: unescapeMountinfo(f[4]), majMin: f[2], fstype: f[sep + 1], source: unescapeMountinfo(f[sep + 2]) })
  }
  return out
}

/** The topmost mount at exactly `dir`, or null. */
export const mountAt = (dir) => mountTable().filter((m) => m.mountPoint === dir).pop() ?? null
/** Mounts at `dir` or below it. */
export const mountsUnder = (dir) => mountTable().filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(`${dir}/`))
/** A FUSE mount (fuse, fuse.NAME, fuseblk) is at `dir`. */
export const fuseMountedAt = (dir) => mountAt(dir)?.fstype.startsWith('fuse') ?? false

// ---------------------------------------------------------------------------------------------
// Aborting a FUSE connection

let fusectlMountedHere = false

/**
 * The fusectl directory of a FUSE mount's connection. The kernel names it after the super block's
 * device number as a kernel dev_t (MKDEV: major << 20 | minor; FUSE mounts have major 0), which is
 * not the number stat(2) reports.
 */
export function fuseConnectionDir(entry) {
  const [major, minor] = entry.majMin.split(':').map(Number)
  return path.join(FUSECTL, String((major << 20) | minor))
}

/**
 * Aborts the FUSE connection of mount table entry `entry`: every pending and future request on it
 * fails with ENOTCONN at once, so processes blocked in it wake up and the mount can be detached.
 * Mounts fusectl first when it is not mounted (unmounted again by stopAllDaemons). Returns whether
 * the abort was written; either way mountNotes says what happened.
 */
export function abortFuse(entry) {
  if (!entry?.fstype.startsWith('fuse')) return false
  const abortFile = path.join(fuseConnectionDir(entry), 'abort')
  if (!fs.existsSync(abortFile) && !mountAt(FUSECTL) && fs.existsSync(FUSECTL)) {
    const r = spawnSync('mount', ['-t', 'fusectl', 'fusectl', FUSECTL], { timeout: 10_000, stdio: 'ignore' })
    if (r.status === 0) fusectlMountedHere = true
  }
  try {
    fs.writeFileSync(abortFile, '1')
    mountNotes.push(`aborted the FUSE connection of ${entry.mountPoint} (${abortFile})`)
    return true
  } catch (error) {
    mountNotes.push(`could not abort the FUSE connection of ${entry.mountPoint}: ${error.message}`)
    return false
  }
}

const fusermount = which('fusermount3') ?? which('fusermount')
/** fusermount3 or fusermount, whichever is installed, or null. */
export const fusermountBin = fusermount

/**
 * Unmounts `mnt` without its daemon's help: fusermount -u; else abort the connection and detach
 * lazily. Returns what it took.
 */
export function forceUnmount(mnt) {
  let how = 'nothing'
  if (mountAt(mnt) && fusermount) {
    how = `${path.basename(fusermount)} -u`
    spawnSync(fusermount, ['-u', mnt], { timeout: 10_000, stdio: 'ignore' })
  }
  if (mountAt(mnt)) {
    how = 'abort + lazy unmount'
    abortFuse(mountAt(mnt))
    if (fusermount) spawnSync(fusermount, ['-u', '-z', mnt], { timeout: 10_000, stdio: 'ignore' })
    if (mountAt(mnt)) spawnSync('umount', ['-l', mnt], { timeout: 10_000, stdio: 'ignore' })
  }
  return how
}

// ---------------------------------------------------------------------------------------------
// Processes

/** /proc/PID/stat fields after the command name, which may itself hold spaces and parentheses; null when gone. */
export function procStat(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return text.slice(text.lastIndexOf(')') + 2).split(' ')
  } catch {
    return null
  }
}

/** Alive and not a zombie (a daemon that exited while the event loop was blocked is not yet reaped). */
export function processAlive(pid) {
  const st = procStat(pid)
  return st !== null && st[0] !== 'Z' && st[0] !== 'X'
}

// ---------------------------------------------------------------------------------------------
// FUSE daemons

const daemons = new Set()

/**
 * Starts a FUSE daemon that stays in the foreground (`argv`), in its own process group so that a
 * Ctrl-C reaches only the benchmark, which then stops it in order. Its stderr (and stdout, unless
 * `stdout` names a file for it) goes to the file `log`: not a pipe, which nobody would drain while a
 * cleanup waits synchronously, so the daemon could block on it.
 *
 * Ready when `mnt` is a FUSE mount in mountinfo and, with `expectLine`, the daemon has printed a
 * line containing "mounted"; when the line does not come, mountinfo alone counts after 2 s.
 * Returns the handle: { label, mnt, dir (= mnt), pid, log, entry, mountMs (until it could serve), readyBy }.
 * A daemon that exits first, or is not ready within 60 s, is stopped and the promise rejects.
 */
export async function startFuseDaemon({ label, argv, mnt, env = process.env, log, stdout = null, expectLine = false }) {
  if (mountAt(mnt)) throw new Error(`${mnt} is already a mount point`)
  const logFd = fs.openSync(log, 'w')
  const outFd = stdout === null ? logFd : fs.openSync(stdout, 'w')
  const t0 = nowNs()
  const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ['ignore', outFd, logFd], env })
  fs.closeSync(logFd)
  if (outFd !== logFd) fs.closeSync(outFd)
  const handle = { label, mnt, dir: mnt, pid: child.pid, log, exited: null, spawnError: null, entry: null, mountMs: null, readyBy: null, stopped: null }
  child.on('exit', (code, signal) => (handle.exited = { code, signal }))
  child.on('error', (error) => (handle.spawnError = error))
  daemons.add(handle)
  const logText = () => readOr(log)
  try {
    const deadline = Date.now() + READY_TIMEOUT_MS
    let lineAt = null
    let mountedAt = null
    for (;;) {
      const now = Date.now()
      if (lineAt === null && expectLine && /mounted/.test(logText())) lineAt = now
      const entry = mountAt(mnt)
      if (entry?.fstype.startsWith('fuse')) {
        handle.entry = entry
        mountedAt ??= now
        if (!expectLine || lineAt !== null) {
          handle.readyBy = expectLine ? 'stderr line and mountinfo' : 'mountinfo'
          break
        }
        if (now - mountedAt >= READY_LINE_GRACE_MS) {
          handle.readyBy = 'mountinfo (no "mounted" line on stderr)'
          break
        }
      } else if (lineAt !== null && now - lineAt > 5_000) {
        throw new Error(`${label} printed "mounted" but ${mnt} is not in /proc/self/mountinfo:\n${tail(logText())}`)
      }
      if (handle.spawnError) throw new Error(`${label}: ${handle.spawnError.message}`)
      if (handle.exited || !processAlive(handle.pid)) {
        await sleep(50) // let the exit event land, for its status
        const how = handle.exited ? (handle.exited.signal ?? `status ${handle.exited.code}`) : 'unknown status'
        throw new Error(`${label} exited (${how}) before ${mnt} was mounted:\n${tail(logText())}`)
      }
      if (now > deadline) throw new Error(`${label}: ${mnt} not mounted after ${READY_TIMEOUT_MS / 1000} s:\n${tail(logText())}`)
      await sleep(5)
    }
    // the time until the daemon could serve: the stderr line when there was one, else the mount
    handle.mountMs = msSince(t0) - (lineAt !== null || !expectLine ? 0 : Date.now() - mountedAt)
    return handle
  } catch (error) {
    stopFuseDaemon(handle)
    throw error
  }
}

/**
 * Stops a daemon and makes sure its mount is gone, synchronously: SIGTERM and wait for it to
 * unmount and exit; else `fusermount -u`; else abort the FUSE connection and detach lazily; SIGKILL
 * to its process group for whatever is left. Returns and keeps in `handle.stopped`
 * { how, clean (SIGTERM was enough), stale (still mounted) }; idempotent.
 */
export function stopFuseDaemon(handle) {
  if (!daemons.has(handle)) return handle.stopped
  const { mnt, pid, label } = handle
  const alive = () => handle.exited === null && processAlive(pid)
  if (alive()) {
    try {
      process.kill(pid, 'SIGTERM')
    } catch {}
  }
  waitSync(() => !alive() && !mountAt(mnt), STOP_TIMEOUT_MS)
  let how = mountAt(mnt) ? forceUnmount(mnt) : 'SIGTERM'
  if (alive()) {
    try {
      // its process group (started detached); never process.kill(-0), which would be this one's
      if (pid) process.kill(-pid, 'SIGKILL')
    } catch {}
    waitSync(() => !alive(), 5_000)
    how += ' + SIGKILL'
  }
  daemons.delete(handle)
  const stale = Boolean(mountAt(mnt))
  handle.stopped = { how, clean: how === 'SIGTERM' && !stale, stale }
  if (stale) mountNotes.push(`could not unmount ${mnt} (${label}): it is still mounted`)
  else if (how !== 'SIGTERM') mountNotes.push(`${label} did not unmount ${mnt} and exit within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM; needed ${how}`)
  return handle.stopped
}

/**
 * stopFuseDaemon for a daemon that talks to a server in this very process as it goes down (an
 * in-process s3rver it stores something in on unmount): SIGTERM, and its exit awaited without
 * blocking the event loop (up to STOP_TIMEOUT_MS), then stopFuseDaemon for whatever is left.
 */
export async function stopFuseDaemonAsync(handle) {
  if (!daemons.has(handle)) return handle.stopped
  const alive = () => handle.exited === null && processAlive(handle.pid)
  if (alive()) {
    try {
      process.kill(handle.pid, 'SIGTERM')
    } catch {}
  }
  const end = Date.now() + STOP_TIMEOUT_MS
  while ((alive() || mountAt(handle.mnt)) && Date.now() < end) await sleep(20)
  return stopFuseDaemon(handle)
}

/** Stops every daemon still running (see stopFuseDaemon) and unmounts fusectl if abortFuse mounted it. */
export function stopAllDaemons() {
  for (const handle of [...daemons]) stopFuseDaemon(handle)
  if (fusectlMountedHere && mountAt(FUSECTL)) {
    spawnSync('umount', [FUSECTL], { timeout: 10_000, stdio: 'ignore' })
    fusectlMountedHere = false
  }
}

/** Daemons started and not yet stopped. */
export const runningDaemons = () => daemons.size
