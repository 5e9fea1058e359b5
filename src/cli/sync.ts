import type { Command } from '@commander-js/extra-typings'
import { parseImageName } from '../format/image-name.js'
import { parseSnapshotId, resolveSnapshot } from '../store/resolve-snapshot.js'
import { storeFromUrl } from '../store/open-store.js'
import { integerOption } from './numbers.js'
import { discardIfCreated } from './store-options.js'
import { progressBar } from './progress.js'
import { action } from './run-command.js'
import { UsageError } from '../util/errors.js'
import { repeatable } from './snapshot-options.js'

export function registerSync(program: Command): void {
  program
    .command('sync')
    .description(
      'copy snapshots from one store to another, streaming, skipping what --to already has; every chunk re-hashed in transit. ' +
        'The image names and tags the source records for a snapshot come with it, written last (a tag --to has moves to it)',
    )
    .option('--id <id>', 'snapshot ID or a unique prefix of at least 8 hex digits (repeat for several, synced in the order given)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--image <name:tag>', 'an image name and tag the source records (repeat for several; after the --id ones)', repeatable)
    .option('--all', 'every snapshot the source lists in its revisions, oldest first')
    .option('--from <url>', 'source store: a path, file:///path, s3://bucket/prefix or gs://bucket/prefix')
    .option('--to <url>', 'destination store (created if missing)')
    .option('--config <file>', 'many sources to many targets, as a YAML or JSON file says (docs/sync-config.md); no --from, --to, --id')
    .option('--platform <os/arch[/variant]>', 'with --config: copy only these platforms of multi-platform images (repeat for several; replaces the platforms in the file)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--jobs <n>', 'objects checked or copied at once (with --config: images at once, default 4 or the file\'s defaults.jobs)')
    .option('--dry-run', 'report what would be copied; write nothing')
    .option('--json', 'print a JSON summary (objects and bytes checked, copied, skipped)')
    .option('--s3-endpoint <url>', 'S3-compatible endpoint for both stores (default: AWS_ENDPOINT_URL)')
    .option('--from-s3-endpoint <url>', 'endpoint for the source only')
    .option('--to-s3-endpoint <url>', 'endpoint for the destination only')
    .option('--from-profile <name>', 's3:// or gs:// source: sign with this profile of the AWS config files (default: AWS_PROFILE, the environment)')
    .option('--to-profile <name>', 's3:// or gs:// destination: sign with this profile (a sync between providers needs one set of keys each)')
    .action(
      action(async (opts: { id: string[]; image?: string[]; all?: true; from?: string; to?: string; config?: string; platform: string[]; jobs?: string; dryRun?: true; json?: true; s3Endpoint?: string; fromS3Endpoint?: string; toS3Endpoint?: string; fromProfile?: string; toProfile?: string }) => {
        if (opts.config !== undefined) {
          const extra = (['from', 'to', 'all', 'image', 'fromS3Endpoint', 'toS3Endpoint', 'fromProfile', 'toProfile'] as const).find((k) => opts[k] !== undefined)
          if (extra !== undefined || opts.id.length > 0) throw new UsageError(`--config names the sources and targets; give it without --${(extra ?? 'id').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`)
          const { syncFromConfig } = await import('./sync-config.js')
          return syncFromConfig({ ...opts, config: opts.config })
        }
        if (opts.platform.length > 0) throw new UsageError('--platform is for --config (a store snapshot is copied whole)')
        if (opts.from === undefined) throw new UsageError("required option '--from <url>' (or --config) not specified")
        if (opts.to === undefined) throw new UsageError("required option '--to <url>' (or --config) not specified")
        const { sync } = await import('../sync/sync.js')
        const { listRevisions } = await import('../store/revisions.js')
        const { listImageNames } = await import('../store/image-names.js')
        const images = opts.image ?? []
        if (opts.all && opts.id.length + images.length > 0) throw new UsageError('--all syncs every snapshot; give it without --id or --image')
        if (!opts.all && opts.id.length + images.length === 0) throw new UsageError("required option '--id <id>' (or --image, or --all) not specified")
        const given = [...opts.id.map((id) => parseSnapshotId(id)), ...images.map((i) => ({ image: parseImageName(i) }))]
        const jobs = integerOption('--jobs', opts.jobs ?? '16', 1, 1024)
        // each side its own endpoint and credentials, and its errors say which side it is
        const side = (role: string, own?: string, profile?: string) => {
          const e = own ?? opts.s3Endpoint
          return { role, ...(e === undefined ? {} : { s3Endpoint: e }), ...(profile === undefined ? {} : { profile }) }
        }
        const from = storeFromUrl(opts.from, side('source', opts.fromS3Endpoint, opts.fromProfile))
        const to = storeFromUrl(opts.to, side('destination', opts.toS3Endpoint, opts.toProfile))
        const bar = progressBar('items')
        try {
          await from.open()
          let ids: string[] = []
          if (opts.all) ids = [...new Set((await listRevisions(from)).map((r) => r.id))]
          else for (const ref of given) ids.push(await resolveSnapshot(from, ref))
          ids = [...new Set(ids)]
          // the source's names, listed once for all the snapshots: each goes with the snapshot it names
          const names = await listImageNames(from)
          // one after the other: each is committed (tree, then revision) before the next starts, so a
          // failure leaves the ones before it complete at the destination
          for (const id of ids) {
            const s = await sync(from, to, id, {
              jobs,
              images: names.filter((n) => n.id === id),
              ...(opts.dryRun ? { dryRun: true } : {}),
              onPlan: (n) => bar.start(n, opts.dryRun ? 'check' : 'sync'),
              onObject: () => bar.add(1),
            })
            bar.stop()
            if (opts.json) process.stdout.write(JSON.stringify(s) + '\n')
            else {
              const verb = opts.dryRun ? 'would copy' : 'copied'
              const which = ids.length > 1 ? `${id}: ` : ''
              const tagged = s.images.length > 0 ? `; ${opts.dryRun ? 'would tag' : 'tagged'} ${s.images.join(', ')}` : ''
              process.stdout.write(
                s.alreadyComplete
                  ? `${id} is already complete in ${to.url}${tagged}\n`
                  : `${which}${verb} ${s.objects.copied} objects (${s.bytes.copied} bytes), skipped ${s.objects.skipped} already in ${to.url}${tagged}\n`,
              )
            }
          }
        } catch (err) {
          await discardIfCreated(to)
          throw err
        } finally {
          bar.stop()
          await from.close()
          await to.close()
        }
      }),
    )
}
