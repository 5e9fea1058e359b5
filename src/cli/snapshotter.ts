import type { Command } from '@commander-js/extra-typings'
import { action } from './run-command.js'

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
        'Runs in the foreground; Ctrl-C or SIGTERM lets calls in flight finish, then exits.',
    )
    .requiredOption('--root <dir>', 'where snapshots and their metadata live (created if missing)')
    .requiredOption('--address <socket>', 'the unix socket to serve on (a stale one there is replaced)')
    .option('--verbose', 'log every call with its outcome and time')
    .action(
      action(async (opts) => {
        const path = await import('node:path')
        const { Snapshotter } = await import('../snapshotter/snapshotter.js')
        const { serveSnapshots } = await import('../snapshotter/grpc-service.js')
        const log = (line: string) => process.stderr.write(`snapdir snapshotter: ${line}\n`)
        const root = path.resolve(opts.root)
        const address = path.resolve(opts.address)
        const sn = await Snapshotter.open(root)
        const server = await serveSnapshots(sn, address, opts.verbose ? log : () => {})
        log(`serving containerd's snapshots API on ${address} (root ${root})`)
        const signal = await new Promise<NodeJS.Signals>((resolve) => {
          process.once('SIGINT', resolve)
          process.once('SIGTERM', resolve)
        })
        log(`${signal}: finishing calls in flight`)
        await server.close()
        log('stopped')
      }),
    )
}
