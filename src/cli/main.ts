import './thread-pool.js'
import { Command, CommanderError } from '@commander-js/extra-typings'
import { registerContainerd } from './containerd.js'
import { registerDiff } from './diff.js'
import { registerGc } from './gc.js'
import { registerId } from './id.js'
import { registerMount } from './mount.js'
import { registerPull } from './pull.js'
import { registerPush } from './push.js'
import { registerRevisions } from './revisions.js'
import { registerRm } from './rm.js'
import { registerServe } from './serve.js'
import { registerSnapshotter } from './snapshotter.js'
import { registerStats } from './stats.js'
import { registerSync } from './sync.js'
import { registerTrace } from './trace.js'
import { registerUmount } from './umount.js'
import { registerVerify } from './verify.js'
import { installErrorBoundary, reportError } from './run-command.js'
import { STANDBY_ENV, standbyArguments } from './standby.js'

installErrorBoundary()

const program = new Command()
  .name('snapdir')
  .description(
    'Content-addressed, content-defined-chunked snapshots of directories, mounted lazily through FUSE.\n' +
      'Results go to stdout, progress and errors to stderr. Exit 0 success, 1 failure, 2 bad usage.',
  )
  .version('0.1.0')
  .exitOverride()
  // commander's own usage errors, in the same one-line form as ours
  .configureOutput({
    outputError: (str, write) => write(`snapdir: ${str.replace(/^error: /, '').trim()} (see --help)\n`),
  })

for (const register of [registerPush, registerPull, registerSync, registerVerify, registerId, registerRevisions, registerRm, registerGc, registerStats, registerDiff, registerMount, registerTrace, registerUmount, registerServe, registerSnapshotter, registerContainerd]) register(program)
for (const cmd of program.commands) cmd.exitOverride()

try {
  // a process started ahead of its work (standby.ts): the rest of its command line comes on stdin
  const rest = process.env[STANDBY_ENV] === undefined ? [] : await standbyArguments(process.argv.slice(2))
  // none: its parent went away; what it opened ahead (a store that does not answer, say) must not keep it
  if (rest === null) process.exit(0)
  await program.parseAsync([...process.argv, ...rest])
} catch (err) {
  if (err instanceof CommanderError) {
    const ok = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help'
    process.exitCode = ok ? 0 : 2
  } else reportError(err)
}
