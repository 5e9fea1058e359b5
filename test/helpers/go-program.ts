// Reference programs in Go, built at test time from Debian's golang-go (scripts/setup.sh installs it):
// the compressors snapdir must reproduce byte for byte are checked against the Go code itself.
import { execFileSync, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import path from 'node:path'

/**
 * Builds `source` (a main package, GOPATH mode so Debian's /usr/share/gocode packages resolve) in `dir`
 * (the caller's temporary directory, which it removes) and returns the binary's path. Throws, never
 * skips, when Go is missing.
 */
export function buildGoProgram(dir: string, name: string, source: string): string {
  const go = spawnSync('go', ['version'], { encoding: 'utf8' })
  if (go.status !== 0) throw new Error(`the Go toolchain is missing (${go.error?.message ?? go.stderr}): run scripts/setup.sh`)
  writeFileSync(path.join(dir, 'main.go'), source)
  const bin = path.join(dir, name)
  execFileSync('go', ['build', '-o', bin, 'main.go'], {
    cwd: dir,
    env: { ...process.env, GO111MODULE: 'off', GOPATH: '/usr/share/gocode', GOCACHE: path.join(dir, 'cache'), GOFLAGS: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  return bin
}
