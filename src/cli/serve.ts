import type { Command } from '@commander-js/extra-typings'
import { UsageError } from '../util/errors.js'
import { integerOption } from './numbers.js'
import { action } from './run-command.js'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'

function parseSeconds(value: string): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--upload-timeout ${value}: expected a number of seconds above 0`)
  return n
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description(
      'make a store a container registry: the OCI Distribution API (v1.1) over the images the store names, so docker, podman, ' +
        'skopeo, crane and containerd pull from it directly. A repository is an image name of the store and its tags are that ' +
        "name's tags (what `push --image NAME:TAG` and `sync` record); manifests are served byte for byte with their stored media " +
        'type, blobs streamed from the chunks (layers regenerated from their recipes), each hashed as it goes: a blob that does not ' +
        'match its digest, or a store that fails mid-blob, breaks the response (the client sees a failed transfer, never wrong ' +
        'bytes) and is logged naming the blob.\n\n' +
        'Pushes (docker push, skopeo copy, snapdir sync to it) become snapshots as `snapdir push` makes them, layers expanded and ' +
        'kept as recipes, named NAME:TAG in the store, written last: uploads are staged on local disk (--state-dir) and nothing is ' +
        'in the store until a manifest naming them is pushed whole. DELETE of a tag or digest removes those tags (as `rm --image`).\n\n' +
        'Prints "listening on URL" on stdout once it takes connections; one access log line per request on stderr. Runs in the ' +
        'foreground; Ctrl-C or SIGTERM stops taking connections, lets requests in flight finish, then exits 0 (a second signal ' +
        'ends them at once).\n\n' +
        'Access: on a loopback address, anyone on this machine, without auth. --htpasswd FILE asks for basic auth with the users ' +
        'of FILE (bcrypt hashes, as `htpasswd -B` writes them). Any other address needs --htpasswd, or --insecure-public to serve ' +
        'the store to anyone who can reach it. Basic auth sends passwords in the clear: use --tls-cert/--tls-key beyond this machine.',
    )
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option('--listen <host:port>', 'the address to listen on ([v6]:PORT for IPv6; port 0 picks a free one)', '127.0.0.1:5000')
    .option('--htpasswd <file>', 'ask for basic auth: users and bcrypt hashes, one user:hash a line (htpasswd -B)')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM, with its chain); needs --tls-key')
    .option('--tls-key <file>', "the certificate's private key (PEM)")
    .option('--read-only', 'answer every write (push, delete) with 405 UNSUPPORTED')
    .option(
      '--state-dir <dir>',
      'where pushes are staged on local disk until a manifest takes them into the store: uploads in progress, and blobs no manifest ' +
        'names yet (default: a new directory under the OS temp dir, removed at exit). Emptied at start and at exit: one server\'s alone',
    )
    .option('--upload-timeout <seconds>', 'remove an upload no request touched for this long, and a pushed blob no manifest named for 4 times as long', parseSeconds, 900)
    .option('--cache-dir <dir>', 'where blobs regenerated from the store are kept for the next pulls (default: a new directory under the OS temp dir, removed at exit); emptied at start')
    .option('--cache-size <MiB>', 'how much --cache-dir keeps, least recently used evicted first; 0 reads the store for every request', '4096')
    .option('--insecure-public', 'allow a non-loopback --listen without --htpasswd: anyone who reaches it reads the store')
    .option('--json', 'the log as JSON lines (one object per request, and per warning)')
    .action(
      action(async (opts) => {
        const { mkdtemp, readFile } = await import('node:fs/promises')
        const os = await import('node:os')
        const path = await import('node:path')
        const { isLoopback, parseListen } = await import('../serve/listen-address.js')
        const { RegistryServer } = await import('../serve/server.js')
        const { createServerLog } = await import('../serve/server-log.js')
        const { checkStoreFormat } = await import('../store/store-config.js')
        const { WriteSide } = await import('../serve/write-side.js')
        const { ROUTES, routesWithWrites } = await import('../serve/route-table.js')
        const listen = parseListen(opts.listen)
        if (!isLoopback(listen.host) && opts.htpasswd === undefined && !opts.insecurePublic) {
          throw new UsageError(`--listen ${opts.listen} is not a loopback address: give --htpasswd FILE for basic auth, or --insecure-public to serve the store to anyone who reaches it`)
        }
        if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) throw new UsageError('--tls-cert and --tls-key go together')
        const readPem = async (flag: string, file: string): Promise<Buffer> =>
          readFile(file).catch((err: Error) => {
            throw new UsageError(`${flag} ${file}: ${err.message}`)
          })
        const tls = opts.tlsCert !== undefined && opts.tlsKey !== undefined ? { cert: await readPem('--tls-cert', opts.tlsCert), key: await readPem('--tls-key', opts.tlsKey) } : undefined
        const htpasswd = opts.htpasswd !== undefined ? await (await import('../serve/htpasswd.js')).Htpasswd.load(opts.htpasswd) : undefined
        const log = createServerLog({ json: opts.json === true })
        const store = storeFromOptions({ store: opts.store, ...(opts.s3Endpoint !== undefined ? { s3Endpoint: opts.s3Endpoint } : {}) })
        // what pushes stage on local disk (uploads, blobs no manifest names yet); none when read-only
        const write = opts.readOnly
          ? null
          : new WriteSide({
              stateDir: opts.stateDir ?? (await mkdtemp(path.join(os.tmpdir(), 'snapdir-serve-'))),
              removeDir: opts.stateDir === undefined,
              uploadIdleMs: opts.uploadTimeout * 1000,
              stagedTtlMs: opts.uploadTimeout * 4000,
            })
        // a layer stored as a recipe is compressed again once, then served from local disk
        const cacheMiB = integerOption('--cache-size', opts.cacheSize, 0, 1 << 30)
        const { BlobCache } = await import('../serve/blob-cache.js')
        const blobCache =
          cacheMiB === 0
            ? null
            : new BlobCache({
                dir: opts.cacheDir ?? (await mkdtemp(path.join(os.tmpdir(), 'snapdir-serve-cache-'))),
                maxBytes: cacheMiB * 1024 * 1024,
                removeDir: opts.cacheDir === undefined,
              })
        try {
          await store.open()
          await checkStoreFormat(store)
          await write?.open()
          await blobCache?.open()
          const routes = write ? routesWithWrites(write) : ROUTES
          const server = new RegistryServer({ store, listen, log, routes, ...(htpasswd ? { htpasswd } : {}), ...(tls ? { tls } : {}), ...(blobCache ? { blobCache } : {}), readOnly: opts.readOnly === true })
          const signal = new Promise<NodeJS.Signals>((resolve) => {
            process.once('SIGINT', resolve)
            process.once('SIGTERM', resolve)
          })
          await server.open()
          process.stdout.write(`listening on ${server.url}\n`)
          log.info(`serving ${store.url} on ${server.url}${opts.readOnly ? ' (read-only)' : ''}${htpasswd ? ' with basic auth' : ''}`)
          const got = await signal
          // no new connections from here on
          const closed = server.close()
          log.info(`${got}: finishing ${server.active} request(s) in flight`)
          const again = () => {
            log.info('second signal: ending requests in flight')
            server.closeNow()
          }
          // (on, not once: a third signal must not kill the process with Node's default action midway)
          process.on('SIGINT', again)
          process.on('SIGTERM', again)
          await closed
          log.info('stopped')
        } finally {
          await write?.close()
          await blobCache?.close()
          await store.close()
        }
      }),
    )
}
