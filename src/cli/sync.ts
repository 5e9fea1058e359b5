import type { Command } from '@commander-js/extra-typings'
import { parseImageName } from '../format/image-name.js'
import { parseSnapshotId, resolveSnapshot } from '../store/resolve-snapshot.js'
import { storeFromUrl } from '../store/open-store.js'
import { integerOption } from './numbers.js'
import { addRegistryOptions, registryClientOptions, type RegistryCliOptions } from './registry-options.js'
import { discardIfCreated } from './store-options.js'
import { progressBar } from './progress.js'
import { action } from './run-command.js'
import { UsageError } from '../util/errors.js'
import { repeatable } from './snapshot-options.js'
import { parsePlatform } from '../oci/platform.js'
import type { ImageAt } from '../sync/sync-plan.js'

interface SyncFlags extends RegistryCliOptions {
  id: string[]
  image?: string[]
  all?: true
  from?: string
  to?: string
  config?: string
  jobs?: string
  dryRun?: true
  json?: true
  s3Endpoint?: string
  fromS3Endpoint?: string
  toS3Endpoint?: string
  fromProfile?: string
  toProfile?: string
  platform: string[]
}

export function registerSync(program: Command): void {
  const command = program
    .command('sync')
    .description(
      'copy snapshots from one store to another, or an image between a store and a registry or registry to registry (docker://HOST[:PORT]/REPO[:TAG]), ' +
        'streaming, skipping what --to already has; every chunk and blob re-hashed in transit. ' +
        'The image names and tags the source store records for a snapshot come with it, written last (a tag --to has moves to it)',
    )
    .option('--id <id>', 'snapshot ID or a unique prefix of at least 8 hex digits (repeat for several, synced in the order given)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--image <name:tag>', 'an image name and tag the source records (repeat for several; after the --id ones)', repeatable)
    .option('--all', 'every snapshot the source lists in its revisions, oldest first')
    .option('--from <url>', 'source: a store (a path, file:///path, s3://bucket/prefix or gs://bucket/prefix) or an image docker://HOST[:PORT]/REPO[:TAG|@DIGEST]')
    .option('--to <url>', 'destination: a store (created if missing) or docker://HOST[:PORT]/REPO[:TAG] (default tag: the source\'s)')
    .option('--config <file>', 'many sources to many targets, as a YAML or JSON file says (docs/sync-config.md); no --from, --to, --id')
    .option('--platform <os/arch[/variant]>', 'with --config or a docker:// destination: copy only these platforms of multi-platform images (repeat for several; with --config, replaces the platforms in the file)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--jobs <n>', 'objects checked or copied at once (with --config: images at once, default 4 or the file\'s defaults.jobs)')
    .option('--dry-run', 'report what would be copied; write nothing')
    .option('--json', 'print a JSON summary (objects and bytes checked, copied, skipped; image names written; access traces copied, skipped, malformed)')
    .option('--s3-endpoint <url>', 'S3-compatible endpoint for both stores (default: AWS_ENDPOINT_URL)')
    .option('--from-s3-endpoint <url>', 'endpoint for the source only')
    .option('--to-s3-endpoint <url>', 'endpoint for the destination only')
    .option('--from-profile <name>', 's3:// or gs:// source: sign with this profile of the AWS config files (default: AWS_PROFILE, the environment)')
    .option('--to-profile <name>', 's3:// or gs:// destination: sign with this profile (a sync between providers needs one set of keys each)')
  addRegistryOptions(command).action(
      action(async (opts: SyncFlags) => {
        if (opts.config !== undefined) {
          const extra = (['from', 'to', 'all', 'image', 'fromS3Endpoint', 'toS3Endpoint', 'fromProfile', 'toProfile'] as const).find((k) => opts[k] !== undefined)
          if (extra !== undefined || opts.id.length > 0) throw new UsageError(`--config names the sources and targets; give it without --${(extra ?? 'id').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`)
          const { syncFromConfig } = await import('./sync-config.js')
          return syncFromConfig({ ...opts, config: opts.config })
        }
        if (opts.from === undefined) throw new UsageError("required option '--from <url>' (or --config) not specified")
        if (opts.to === undefined) throw new UsageError("required option '--to <url>' (or --config) not specified")
        if (opts.from.startsWith('docker://') || opts.to.startsWith('docker://')) return syncImage({ ...opts, from: opts.from, to: opts.to })
        if (opts.platform.length > 0) throw new UsageError('--platform is for --config or a docker:// destination (a store snapshot is copied whole)')
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
              const traced = s.traces.copied > 0 ? `; ${opts.dryRun ? 'would copy' : 'copied'} ${s.traces.copied} access trace(s)` : ''
              process.stdout.write(
                s.alreadyComplete
                  ? `${id} is already complete in ${to.url}${tagged}${traced}\n`
                  : `${which}${verb} ${s.objects.copied} objects (${s.bytes.copied} bytes), skipped ${s.objects.skipped} already in ${to.url}${tagged}${traced}\n`,
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

/**
 * A sync with a registry on either side: registry to registry streams blob to blob, a store to a
 * registry sends one snapshot's image (pull docker://), a registry into a store is a push from it.
 * Each is snapshot/image-copy.ts's copy, the one sync --config runs too.
 */
async function syncImage(opts: SyncFlags & { from: string; to: string }): Promise<void> {
  const { parseImageRef } = await import('../registry/reference.js')
  const { RegistryClient } = await import('../registry/client.js')
  const { copyImageAt } = await import('../snapshot/image-copy.js')
  const { imageName, printSend } = await import('./image-send.js')
  if (opts.all) throw new UsageError('--all lists the snapshots of a store; with a registry, sync one image at a time')
  if (opts.dryRun) throw new UsageError('--dry-run with a registry is for sync --config (a plan of many images); a single image is checked by its one manifest request anyway')
  const jobs = integerOption('--jobs', opts.jobs ?? '4', 1, 64)
  const platforms = opts.platform.map((p) => parsePlatform(p))
  const fromRegistry = opts.from.startsWith('docker://')
  const toRegistry = opts.to.startsWith('docker://')
  const given = [...opts.id.map((id) => parseSnapshotId(id)), ...(opts.image ?? []).map((i) => ({ image: parseImageName(i) }))]
  if (fromRegistry && given.length > 0) throw new UsageError('--id and --image name snapshots of a store; a registry source is named by its docker:// reference')
  if (!fromRegistry && given.length !== 1) throw new UsageError('a sync from a store into a registry sends one snapshot: give --id or --image once')
  const registryAt = (text: string): ImageAt & { kind: 'registry' } => {
    const r = parseImageRef(text)
    return { kind: 'registry', host: r.registry, repository: r.repository, ...(r.tag !== undefined ? { tag: r.tag } : {}), ...(r.digest !== undefined ? { digest: r.digest } : {}) }
  }
  const storeOf = (url: string, role: 'source' | 'destination', own?: string, profile?: string) => {
    const e = own ?? opts.s3Endpoint
    return storeFromUrl(url, { role, ...(e === undefined ? {} : { s3Endpoint: e }), ...(profile === undefined ? {} : { profile }) })
  }
  const fromStore = fromRegistry ? null : storeOf(opts.from, 'source', opts.fromS3Endpoint, opts.fromProfile)
  const toStore = toRegistry ? null : storeOf(opts.to, 'destination', opts.toS3Endpoint, opts.toProfile)
  const clients = new Map<'source' | 'destination', InstanceType<typeof RegistryClient>>()
  const places = {
    store: (_url: string, side: 'source' | 'destination') => (side === 'source' ? fromStore : toStore)!,
    registry: (host: string, side: 'source' | 'destination') => {
      let c = clients.get(side)
      if (c === undefined) {
        c = new RegistryClient(host, registryClientOptions(opts, side))
        clients.set(side, c)
      }
      return c
    },
  }
  const bar = progressBar('bytes')
  try {
    let from: ImageAt
    if (fromStore === null) from = registryAt(opts.from)
    else {
      await fromStore.open()
      from = { kind: 'store', url: opts.from, id: await resolveSnapshot(fromStore, given[0]!) }
    }
    const to: ImageAt = toStore === null ? registryAt(opts.to) : { kind: 'store', url: opts.to }
    const r = await copyImageAt({ from, to, origin: from, platforms: platforms.length > 0 ? platforms : null, digest: null }, places, { jobs, progress: bar, label: 'sync' })
    bar.stop()
    const out = r.outcome
    if (out.kind === 'send' && r.at.kind === 'registry') printSend(imageName(r.at.host, r.at.repository, r.at.tag), out.summary, opts.json === true)
    else if (out.kind === 'push') {
      const { printPush } = await import('./push.js')
      printPush(out.result, opts.json === true, undefined)
    }
  } catch (err) {
    if (toStore !== null) await discardIfCreated(toStore)
    throw err
  } finally {
    bar.stop()
    for (const c of clients.values()) await c.close()
    await fromStore?.close()
    await toStore?.close()
  }
}
