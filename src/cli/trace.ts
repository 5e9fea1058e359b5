import type { Command } from '@commander-js/extra-typings'
import fs from 'node:fs/promises'
import { readLayerRef } from '../store/layer-refs.js'
import { objectKey } from '../store/objects.js'
import { SnapdirError, UsageError, isErrno } from '../util/errors.js'
import { mountOptions, runMount, type MountCliOptions } from './mount.js'
import { action } from './run-command.js'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'

const TRACE_HELP =
  'access traces: which chunks a run read, in the order it first read them, stored beside the image ' +
  '(refs/traces/<snapshot ID>/<view>, docs/FORMAT.md). A mount of that view fetches them ahead, in that ' +
  'order, once it is up (mount --no-prefetch does not). Record one by running the program once on a ' +
  "'trace record' mount (or on a 'mount --record-trace', which stores it when the store has none)."

export function registerTrace(program: Command): void {
  const trace = program.command('trace').description(TRACE_HELP)
  mountOptions(
    trace
      .command('record')
      .description(
        'mount as snapdir mount does and record which chunks reads ask for; on unmount (snapdir umount, Ctrl-C, SIGTERM) ' +
          'write the trace to --output, store it with --push (replacing the one stored for this view), or both',
      ),
  )
    .option('--output <file>', 'write the trace to this file on unmount (JSON; snapdir trace push stores it)')
    .option('--push', 'store the trace in the store on unmount, replacing any stored for this view')
    .action(
      action(async (mountpoint: string, opts: MountCliOptions & { output?: string; push?: true }) => {
        if (opts.output === undefined && !opts.push) throw new UsageError('trace record needs --output FILE, --push, or both: the trace has to go somewhere')
        await runMount(mountpoint, opts, { storeIfMissing: false, push: opts.push === true, ...(opts.output !== undefined ? { output: opts.output } : {}) })
      }),
    )
  trace
    .command('push')
    .description('store a trace file (trace record --output) in the store, under the snapshot and view it was recorded for, replacing any there')
    .argument('<file>', 'a trace written by snapdir trace record --output')
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .action(
      action(async (file: string, opts: { store: string; s3Endpoint?: string }) => {
        const { parseTrace, writeTrace } = await import('../store/traces.js')
        let data: Buffer
        try {
          data = await fs.readFile(file)
        } catch (err) {
          if (isErrno(err, 'ENOENT')) throw new UsageError(`trace file '${file}' does not exist`)
          throw err
        }
        const parsed = parseTrace(data, `'${file}'`)
        const store = storeFromOptions(opts)
        try {
          await store.open()
          // a trace of a snapshot (or layer) the store lacks would never be read
          const known =
            parsed.view === 'layer' ? (await readLayerRef(store, `sha256:${parsed.snapshot}`)) !== null : await store.has(objectKey('tree', parsed.snapshot))
          if (!known) throw new SnapdirError('ERR_SNAPSHOT_NOT_FOUND', `'${file}' is a trace of ${parsed.view === 'layer' ? 'layer' : 'snapshot'} ${parsed.snapshot}, which is not in ${store.url}`)
          process.stdout.write(`${await writeTrace(store, parsed)}\n`)
        } finally {
          await store.close()
        }
      }),
    )
}
