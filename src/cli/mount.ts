import { Option, type Command } from '@commander-js/extra-typings'
import type { Command as UntypedCommand } from 'commander'
import { parsePlatform } from '../oci/platform.js'
import { VIEWS } from '../mount/view-names.js'
import type { Mount } from '../mount/mount.js'
import type { ViewOptions } from '../mount/views.js'
import fs from 'node:fs/promises'
import path from 'node:path'
import { viewKey } from '../mount/trace.js'
import { TRACE_VERSION, encodeTrace, readTrace, writeTrace, type AccessTrace } from '../store/traces.js'
import type { Store } from '../store/store.js'
import { UsageError } from '../util/errors.js'
import { resolveSnapshot } from '../store/resolve-snapshot.js'
import { DEFAULT_CACHE_BYTES, DiskCache, defaultCacheDir } from '../store/disk-cache.js'
import { FileStore } from '../store/file-store.js'
import { integerOption } from './numbers.js'
import { action } from './run-command.js'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'
import { ID_HELP, IMAGE_HELP, repeatable, snapshotRefOf } from './snapshot-options.js'

const MiB = 1024 * 1024

/**
 * The values of settled promises, or the first failure in their order once all have settled (a
 * disk cache opened beside a failed lookup is closed, not left open).
 */
async function settledOrThrow<T extends readonly unknown[]>(results: { [K in keyof T]: PromiseSettledResult<T[K]> }): Promise<T> {
  const failed = results.find((r) => r.status === 'rejected')
  if (failed) {
    for (const r of results) if (r.status === 'fulfilled' && r.value instanceof DiskCache) await r.value.close()
    throw failed.reason
  }
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T
}

function parseDiffId(value: string): string {
  if (!/^sha256:[0-9a-f]{64}$/.test(value)) throw new UsageError(`--layer ${value}: expected a diff_id, sha256: and 64 lowercase hex digits`)
  return value
}

/** The options `snapdir mount` and `snapdir trace record` share. */
export interface MountCliOptions {
  store: string
  s3Endpoint?: string
  id?: string
  image?: string
  layer?: string[]
  view: (typeof VIEWS)[number]
  ref?: string
  platform?: string
  cacheDir?: string
  cache: boolean
  cacheSize: string
  memoryCache: string
  jobs: string
  timeout: string
  readAhead: string
  prefetch: boolean
  prefetchJobs: string
  recordTrace?: true
  json?: true
}

/** What a mount does about access traces (mount/trace.ts). */
export interface TraceSetup {
  /** record, and on unmount store the trace if the store has none for this view */
  storeIfMissing: boolean
  /** record, and on unmount write the trace to this file */
  output?: string
  /** record, and on unmount store the trace, replacing any */
  push: boolean
}

/**
 * Adds the options of a mount to `cmd` (mount, trace record). Untyped: the two commands' actions
 * take MountCliOptions, which these options make.
 */
export function mountOptions(cmd: Command): UntypedCommand {
  return (cmd as unknown as UntypedCommand)
    .argument('<mountpoint>', 'an existing directory')
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option('--id <id>', ID_HELP)
    .option('--image <name:tag>', IMAGE_HELP)
    .option(
      '--layer <diff_id>',
      'instead of --id or --image: serve one expanded layer of a pushed image, by its diff_id, as an overlayfs lower directory; repeated, bottom first, the last is served and the ones below give the directories it implies their metadata',
      repeatable,
    )
    .addOption(
      new Option('--view <view>', 'tree: the snapshot as pushed; rootfs: an image flattened, /config.json and /rootfs/; layers: /config.json and /layers/N/ as overlayfs lower dirs')
        .choices(VIEWS)
        .default('tree' as const),
    )
    .option('--ref <ref>', 'for rootfs and layers: the image of a layout holding several (its ref name annotation or manifest digest)')
    .option('--platform <os/arch[/variant]>', 'for rootfs and layers: the image of a multi-platform index to show (default: this machine\'s)')
    .option('--cache-dir <dir>', `local chunk cache, shared by mounts (default ${defaultCacheDir()}; none for a store that is a local directory, unless given)`)
    .option('--no-cache', 'no disk cache: every chunk not in memory comes from the store')
    .option('--cache-size <MiB>', 'disk cache cap; least recently used chunks go first', String(DEFAULT_CACHE_BYTES / MiB))
    .option('--memory-cache <MiB>', 'chunks kept in memory', '256')
    .option('--jobs <n>', 'store requests in flight at most', '16')
    .option('--timeout <seconds>', 'a store request taking longer fails its read with EIO', '30')
    .option('--read-ahead <KiB>', 'how far past a sequential read chunks are fetched early', '4096')
    .option('--no-prefetch', 'do not fetch ahead the chunks of the access trace stored for this view (snapdir trace --help)')
    .option('--prefetch-jobs <n>', 'chunk fetches a stored trace\'s prefetch keeps in flight, beside those reads make', '8')
    .option('--json', 'on exit, print what was read and fetched as JSON')
}

export function registerMount(program: Command): void {
  mountOptions(
    program
      .command('mount')
      .description(
        'serve a snapshot (--id or --image) read-only at MOUNTPOINT through FUSE, in the foreground, without pulling it: metadata comes\n' +
          'from the tree, file bytes chunk by chunk on first read, each chunk verified. Ctrl-C, SIGTERM or\n' +
          "'snapdir umount MOUNTPOINT' unmounts. A chunk that is missing, damaged or not delivered in time is EIO on that read.\n" +
          'When the store holds an access trace for the view (snapdir trace), its chunks are fetched ahead in its order once the mount is up.',
      ),
  )
    .option('--record-trace', 'record which chunks reads ask for and, on unmount, store that access trace for this view unless the store has one: the first mount of an image records it, later mounts prefetch it')
    .action(action(async (mountpoint: string, opts: MountCliOptions) => runMount(mountpoint, opts, { storeIfMissing: opts.recordTrace === true, push: false })))
}

/** Runs a mount in the foreground until it is unmounted (snapdir mount, snapdir trace record). */
export async function runMount(mountpoint: string, opts: MountCliOptions, traceSetup: TraceSetup): Promise<void> {
  const { Mount, describeMount } = await import('../mount/mount.js')
  const layer = opts.layer
  if (layer !== undefined && (opts.id !== undefined || opts.image !== undefined)) throw new UsageError('--layer serves a layer, not a snapshot: give --layer, or --id or --image')
  const ref = layer === undefined ? snapshotRefOf(opts) : null
  if (opts.view === 'tree' && (opts.ref !== undefined || opts.platform !== undefined)) {
    throw new UsageError('--ref and --platform pick the image of a rootfs or layers view; add --view rootfs or --view layers')
  }
  let view: ViewOptions
  if (layer !== undefined) {
    if (opts.view !== 'tree' || opts.ref !== undefined || opts.platform !== undefined) throw new UsageError('--layer serves one layer: it takes no --view, --ref or --platform')
    view = { view: 'layer', chain: layer.map(parseDiffId) }
  } else {
    view = {
      view: opts.view,
      ...(opts.ref !== undefined ? { image: opts.ref } : {}),
      ...(opts.platform !== undefined ? { platform: parsePlatform(opts.platform) } : {}),
    }
  }
  const memoryBytes = integerOption('--memory-cache', opts.memoryCache, 1, 1 << 20) * MiB
  const cacheBytes = integerOption('--cache-size', opts.cacheSize, 1, 1 << 30) * MiB
  const jobs = integerOption('--jobs', opts.jobs, 1, 1024)
  const timeoutMs = integerOption('--timeout', opts.timeout, 1, 86400) * 1000
  const readAheadBytes = integerOption('--read-ahead', opts.readAhead, 0, 1 << 20) * 1024
  const prefetchJobs = integerOption('--prefetch-jobs', opts.prefetchJobs, 1, 1024)
  if (traceSetup.output !== undefined) await checkOutputDir(traceSetup.output)
  const store = storeFromOptions(opts)
  const log = (line: string) => process.stderr.write(`snapdir mount: ${line}\n`)
  // The first signal unmounts, detaching and failing pending reads if files are still open there.
  // Handled from before the mount is up: without a handler a signal kills the process, which
  // would leave a dead mount behind (and one sent as soon as the "mounted" line is read could
  // come before a handler installed after it). One that comes while mounting unmounts once up.
  let mount: Mount | null = null
  let stopping: string | null = null
  const stop = (m: Mount, signal: string) => {
    log(`${signal}: unmounting ${m.mountpoint}`)
    m.close({ force: true }).catch((err: Error) => log(err.message))
  }
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = signal
    if (mount) stop(mount, signal)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  let diskCache: DiskCache | null = null
  try {
    // The store's open (for S3, a GET of its config) and its format check are not waited for before
    // the reads below and the mount's own: they go in the same round trip. The mount counts as up only
    // once both passed, and when either fails, its error is the one reported, whatever the reads made
    // of the store (a bucket that is not there, a format this snapdir does not read).
    const formatChecked = import('../store/store-config.js').then((m) => m.checkStoreFormat(store))
    formatChecked.catch(() => {}) // waited for through checking
    const checking = store.open().then(() => formatChecked)
    // a store on local disk needs no second copy of its chunks on local disk
    const wantCache = opts.cache && (opts.cacheDir !== undefined || !(store instanceof FileStore))
    const resolving = ref !== null ? resolveSnapshot(store, ref) : Promise.resolve(view.view === 'layer' ? view.chain.at(-1)!.slice('sha256:'.length) : '')
    // the stored trace is read as soon as the ID is known, beside the store's config and the mount's
    // metadata, and handed over as a promise: the mount fetches its chunks from when it comes, and
    // does not wait for it
    const viewName = viewKey(view)
    const stored = opts.prefetch || traceSetup.storeIfMissing ? resolving.then((id) => readTrace(store, id, viewName, (key, why) => log(`ignoring the access trace ${key}: ${why}`))) : null
    stored?.catch(() => {}) // a trace that cannot be read is no trace; the mount's own reads say why the store fails
    checking.catch(() => {}) // waited for below, before the mount counts as up or as failed
    // a failure below is reported as the open's or the format check's when either failed too
    const checkedFirst = async (err: unknown): Promise<never> => {
      await checking
      throw err
    }
    // independent of each other, so at once: every store round trip before the mount is up counts
    const [id, cache] = await Promise.allSettled([
      resolving.catch(checkedFirst),
      wantCache ? DiskCache.open(opts.cacheDir ?? defaultCacheDir(), cacheBytes) : null,
    ]).then(settledOrThrow)
    diskCache = cache
    const recordTrace = traceSetup.storeIfMissing || traceSetup.push || traceSetup.output !== undefined
    const prefetch = opts.prefetch && stored ? { prefetch: stored.then((t) => t?.chunks ?? null), prefetchJobs } : {}
    mount = await Mount.open({ store, id, view, mountpoint, diskCache, memoryBytes, jobs, timeoutMs, readAheadBytes, log, recordTrace, ...prefetch, onMounted: () => checking }).catch(checkedFirst)
    log(describeMount(mount, id, view.view))
    if (stopping) stop(mount, stopping)
    await mount.ended
    log(`unmounted ${mount.mountpoint}`)
    // fetches from a store that stopped answering are aborted, so nothing keeps the process alive
    await mount.close()
    if (recordTrace) await saveTrace({ snapdirTrace: TRACE_VERSION, snapshot: id, view: viewName, chunks: mount.trace() }, store, traceSetup, stored, log)
    const summary = opts.json ? JSON.stringify({ id, ...mount.stats }) + '\n' : ''
    await new Promise<void>((resolve) => process.stdout.write(summary, () => resolve()))
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await diskCache?.close() // the mount's reader closed it already, unless the mount never came up
    await store.close()
  }
}

/** A trace file's directory must exist before the mount (a typo found after the run would lose the trace). */
async function checkOutputDir(file: string): Promise<void> {
  const dir = path.dirname(path.resolve(file))
  const st = await fs.stat(dir).catch(() => null)
  if (!st?.isDirectory()) throw new UsageError(`--output ${file}: ${dir} is not a directory`)
}

/** Writes a recorded trace where `setup` says: to a file (temp file + rename), to the store. */
async function saveTrace(trace: AccessTrace, store: Store, setup: TraceSetup, stored: Promise<AccessTrace | null> | null, log: (line: string) => void): Promise<void> {
  const what = `access trace of ${trace.chunks.length} chunks`
  if (setup.output !== undefined) {
    const tmp = `${setup.output}.tmp-${process.pid}`
    await fs.writeFile(tmp, encodeTrace(trace))
    await fs.rename(tmp, setup.output)
    log(`${what} written to ${setup.output}`)
  }
  if (trace.chunks.length === 0 && !setup.push) return log('no chunk was read: no access trace stored')
  const storeIt = setup.push || (setup.storeIfMissing && (await stored?.catch(() => undefined)) === null)
  if (storeIt) log(`${what} stored as ${await writeTrace(store, trace)}`)
}
