import type { Command } from '@commander-js/extra-typings'
import { parsePlatform } from '../oci/platform.js'
import { ENDPOINT_HELP, storeFromOptions } from './store-options.js'
import { action } from './run-command.js'

export function registerId(program: Command): void {
  program
    .command('id')
    .description('print the ID push would print for DIR or ARCHIVE (an image layout, or a tar of one or of a directory), computed locally (nothing is stored)')
    .option('--store <url>', "use this store's chunker parameters (default: the built-in ones every new store gets)")
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option(
      '--platform <os/arch[/variant]>',
      'for a multi-platform image: the ID push --platform would print (repeat, or separate by commas, for several)',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .argument('<source>', 'directory, OCI image layout, or archive (tar, gzip or zstd)')
    .action(
      action(async (source: string, opts: { store?: string; s3Endpoint?: string; platform?: string[] }) => {
        const platforms = opts.platform?.flatMap((p) => p.split(',')).map((p) => parsePlatform(p))
        const { localId } = await import('../snapshot/local-id.js')
        const { readStoreConfig } = await import('../store/store-config.js')
        let params
        if (opts.store !== undefined) {
          const store = storeFromOptions({ ...opts, store: opts.store })
          try {
            await store.open()
            params = await readStoreConfig(store)
          } finally {
            await store.close()
          }
        }
        process.stdout.write((await localId(source, { ...(params ? { params } : {}), ...(platforms ? { platforms } : {}) })) + '\n')
      }),
    )
}
