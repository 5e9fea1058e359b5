// `make demo` and `make test` run scripts/setup.sh first. On a fresh clone its `npm install` rewrote
// package-lock.json (npm adds the other platforms' optional packages the registry offers), so the clone
// showed the lock modified: setup must leave the tree as it was cloned, and a lock the user edited as
// the user left it. npm here is a stand-in that rewrites the lock on install as npm does (whatever
// --no-save asks) and puts the real native addons where the build would, so no registry is needed.
import { spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { expect, test } from 'vitest'
import { ROOT, tempDir } from '../helpers/cli.js'

function sh(cwd: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stdout}${r.stderr}`)
  return r.stdout
}

/** A clone holding what setup.sh reads (this tree's copies), and a PATH whose npm is the stand-in. */
function fakeClone(): { repo: string; env: NodeJS.ProcessEnv } {
  const t = tempDir()
  const repo = path.join(t, 'repo')
  mkdirSync(path.join(repo, 'scripts'), { recursive: true })
  for (const f of ['scripts/setup.sh', 'package.json', 'package-lock.json', '.gitignore']) copyFileSync(path.join(ROOT, f), path.join(repo, f))
  const git = ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid']
  sh(repo, 'git', ['init', '-q'])
  sh(repo, 'git', ['add', '.'])
  sh(repo, 'git', [...git, 'commit', '-q', '-m', 'clone'])
  const bin = path.join(t, 'bin')
  mkdirSync(bin)
  const release = path.join(ROOT, 'build', 'Release')
  writeFileSync(
    path.join(bin, 'npm'),
    [
      '#!/bin/sh',
      'if [ "$1" = install ]; then',
      // what npm does to a lock it finds other platforms' optional packages for: rewrites it
      `  sed -i 's/"lockfileVersion"/"rewrittenByNpm": true, "lockfileVersion"/' package-lock.json`,
      '  mkdir -p node_modules build/Release',
      `  cp '${release}/snapdir.node' '${release}/snapdir_fuse.node' build/Release/`,
      'fi',
      'exit 0', // npm run build / build:native
      '',
    ].join('\n'),
  )
  chmodSync(path.join(bin, 'npm'), 0o755)
  return { repo, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } }
}

test('setup on a fresh clone leaves the tree as cloned; a lock the user edited stays as the user left it', () => {
  const { repo, env } = fakeClone()
  sh(repo, 'bash', ['scripts/setup.sh'], env)
  expect(sh(repo, 'git', ['status', '--porcelain']), 'git status after setup').toBe('')

  // a lock edited by hand (a dependency being updated) is the user's: setup installs it and keeps it
  const lock = path.join(repo, 'package-lock.json')
  const edited = readFileSync(lock, 'utf8').replace('"lockfileVersion"', '"editedByUser": true, "lockfileVersion"')
  writeFileSync(lock, edited)
  sh(repo, 'bash', ['scripts/setup.sh'], env)
  expect(readFileSync(lock, 'utf8')).toContain('"editedByUser": true')
}, 60_000)
