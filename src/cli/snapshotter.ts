import type { Command } from '@commander-js/extra-typings'
import { integerOption } from './numbers.js'
import { action } from './run-command.js'
import { STANDBY_ENV } from './standby.js'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'

export function registerSnapshotter(program: Command): void {
  program
    .command('snapshotter')
    .description(
      "serve containerd's snapshots API on a unix socket, as a proxy snapshotter. In containerd's config.toml:\n\n" +
        '  [proxy_plugins.snapdir]\n' +
        '    type = "snapshot"\n' +
        '    address = "SOCK"\n\n' +
        'then `ctr image pull --snapshotter snapdir …` and `ctr run --snapshotter snapdir …` use it. ' +
        "Snapshots are overlayfs directories under --root, made and mounted as containerd's overlayfs snapshotter makes them; " +
        'their metadata is on disk before each call answers, so a restart (or a kill) loses nothing containerd was told.\n\n' +
        'With --store, a layer the store holds is not unpacked: when containerd prepares it (naming the snapshot it will ' +
        'commit, as `snapdir containerd pull` and remote-snapshotter-aware clients do), the snapshot is committed at once ' +
        'as a lazy FUSE mount of that layer, served by a `snapdir mount` process of its own that outlives a restart of the ' +
        'snapshotter; one such process is kept started ahead, its code loaded, so that a new layer waits for the store alone. A layer whose mount is gone (a reboot) is mounted again at start, behind the calls (the snapshotter serves at once), or by the first call that needs it ' +
        'if the store is down then: until it is back such calls fail (Unavailable), and other snapshots work.\n\n' +
        'Runs in the foreground; Ctrl-C or SIGTERM lets calls in flight finish, then exits (the layer mounts stay).',
    )
    .requiredOption('--root <dir>', 'where snapshots and their metadata live (created if missing)')
    .requiredOption('--address <socket>', 'the unix socket to serve on (a stale one there is replaced)')
    .option('--store <url>', `serve the layers this store holds lazily; ${STORE_HELP}`)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option('--cache-dir <dir>', "the layer mounts' shared chunk cache (default: snapdir mount's)")
    .option('--timeout <seconds>', 'a layer read the store does not answer in time fails with EIO', '30')
    .option('--record-traces', "each layer mount records which chunks are read and, when unmounted, stores that access trace unless the store has one for the layer (snapdir mount --record-trace): a container's first run records, later layer mounts fetch those chunks ahead")
    .option('--verbose', 'log every call with its outcome and time')
    .action(
      action(async (opts) => {
        const path = await import('node:path')
        const { Snapshotter } = await import('../snapshotter/snapshotter.js')
        const { serveSnapshots } = await import('../snapshotter/grpc-service.js')
        const log = (line: string) => process.stderr.write(`snapdir snapshotter: ${line}\n`)
        const root = path.resolve(opts.root)
        const address = path.resolve(opts.address)
        const timeout = integerOption('--timeout', opts.timeout, 1, 86400)
        let layers
        let store = null
        if (opts.store !== undefined) {
          const { LayerMounts } = await import('../snapshotter/layer-mounts.js')
          store = storeFromOptions({ store: opts.store, ...(opts.s3Endpoint !== undefined ? { s3Endpoint: opts.s3Endpoint } : {}) })
          // the store may be down, or take connections and never answer: the snapshotter serves all
          // the same after --timeout (layers already mounted still work, and each call tries again)
          const opening = store.open().then(
            () => null,
            (err: Error) => err.message,
          )
          let timer: NodeJS.Timeout | undefined
          const late = new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`no answer within ${timeout} s`), timeout * 1000)))
          const problem = await Promise.race([opening, late])
          clearTimeout(timer)
          if (problem !== null) log(`store ${opts.store} cannot be opened now: ${problem}`)
          const mountArgs = ['--timeout', String(timeout)]
          if (opts.s3Endpoint !== undefined) mountArgs.push('--s3-endpoint', opts.s3Endpoint)
          if (opts.cacheDir !== undefined) mountArgs.push('--cache-dir', path.resolve(opts.cacheDir))
          if (opts.recordTraces) mountArgs.push('--record-trace')
          layers = new LayerMounts(store, {
            store: opts.store,
            mountArgs,
            command: [process.execPath, process.argv[1]!],
            logDir: path.join(root, 'logs'),
            timeoutMs: (timeout + 30) * 1000,
            standbyEnv: { [STANDBY_ENV]: '1' },
          })
          await layers.open()
        }
        const sn = await Snapshotter.open(root, { ...(layers ? { layers } : {}), log })
        const server = await serveSnapshots(sn, address, opts.verbose ? log : () => {})
        log(`serving containerd's snapshots API on ${address} (root ${root})`)
        const signal = await new Promise<NodeJS.Signals>((resolve) => {
          process.once('SIGINT', resolve)
          process.once('SIGTERM', resolve)
        })
        log(`${signal}: finishing calls in flight`)
        await server.close()
        await layers?.close()
        await store?.close()
        log('stopped')
      }),
    )
}
