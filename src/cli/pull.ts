import { Option, type Command } from '@commander-js/extra-typings'
import { resolveSnapshot } from '../store/resolve-snapshot.js'
import { parsePlatform } from '../oci/platform.js'
import { UsageError } from '../util/errors.js'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'
import { action } from './run-command.js'
import { ID_HELP, IMAGE_HELP, snapshotRefOf } from './snapshot-options.js'
import { progressBar } from './progress.js'

// the values of --format (snapshot/archive-format.ts ARCHIVE_FORMATS, kept here so that --help loads nothing)
const FORMATS = ['oci-archive', 'docker-archive'] as const

export function registerPull(program: Command): void {
  program
    .command('pull')
    .description(
      'materialise a snapshot (--id or --image) as DIR (which must not exist or be empty), or with --tar as one tar archive; ' +
        "every chunk is verified, and an image layout's blobs against their digests",
    )
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option('--id <id>', ID_HELP)
    .option('--image <name:tag>', IMAGE_HELP)
    .option('--tar', "write a tar archive at TARGET ('-' for stdout) instead of a directory: for docker load, skopeo docker-archive: or oci-archive:, ctr import")
    .addOption(
      new Option('--format <format>', 'with --tar, for an image: oci-archive (an OCI image layout) or docker-archive (what docker load reads, layers uncompressed); default: as pushed').choices(
        FORMATS,
      ),
    )
    .option('--platform <os/arch[/variant]>', "with --format docker-archive: the image of a multi-platform index to write (default: this machine's)")
    .argument('<target>', 'target directory (or archive file with --tar)')
    .action(
      action(async (dir: string, opts: { store: string; s3Endpoint?: string; id?: string; image?: string; tar?: true; format?: (typeof FORMATS)[number]; platform?: string }) => {
        const { pull } = await import('../snapshot/pull.js')
        const { pullArchive } = await import('../snapshot/pull-archive.js')
        if (opts.format !== undefined && !opts.tar) throw new UsageError('--format is for an archive: add --tar')
        if (opts.platform !== undefined && opts.format !== 'docker-archive') throw new UsageError('--platform picks the image a docker-archive holds: add --tar --format docker-archive')
        const ref = snapshotRefOf(opts)
        const format = {
          ...(opts.format !== undefined ? { format: opts.format } : {}),
          ...(opts.platform !== undefined ? { platform: parsePlatform(opts.platform) } : {}),
        }
        const store = storeFromOptions(opts)
        const bar = progressBar('bytes')
        const progress = { onTree: (total: number) => bar.start(total, 'pull'), onBytes: (n: number) => bar.add(n) }
        try {
          const id = await resolveSnapshot(store, ref)
          if (opts.tar) await pullArchive(store, id, dir, { ...progress, ...format })
          else await pull(store, id, dir, progress)
        } finally {
          bar.stop()
          await store.close()
        }
      }),
    )
}
