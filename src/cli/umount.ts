import type { Command } from '@commander-js/extra-typings'
import { action } from './run-command.js'

export function registerUmount(program: Command): void {
  program
    .command('umount')
    .description('unmount a snapdir mount; its `snapdir mount` process then exits')
    .argument('<mountpoint>', 'where the snapshot is mounted')
    .option('--lazy', 'detach now even if files are open there; they keep working until closed')
    .action(
      action(async (mountpoint: string, opts: { lazy?: true }) => {
        const { findSnapdirMount, unmount } = await import('../mount/unmount.js')
        const { path } = await findSnapdirMount(mountpoint)
        await unmount(path, { lazy: opts.lazy ?? false })
      }),
    )
}
