#!/usr/bin/env node
// `snapdir diff` on a Debian root file system against the same root with one package more, checked
// against what the usual tools say. The root is the debian-rootfs corpus (bookworm minbase + python3,
// built by bench/setup.sh); a copy gets one package the root lacks (rsync, from the apt cache, or
// --deb FILE) unpacked as dpkg unpacks it (its data tar extracted over the root, following the
// root's directory symlinks: this root has merged /usr, lib -> usr/lib), and dpkg's database updated
// as dpkg would (the package's paragraph in var/lib/dpkg/status, info/PKG.list, its md5sums, conffiles
// and maintainer scripts). --plain-x unpacks with `dpkg-deb -x` instead, which (tar without
// --keep-directory-symlink) replaces such a symlink by a directory, as dpkg never does: then diff
// reports that type change and the files under it as added. Both are pushed to a fresh file store and
// diffed; then:
//   - the paths diff reports added are exactly the paths under those `diff -rq` says are only in the
//     copy (or under a path it says changed type, where diff -r does not descend), and none removed;
//   - the paths whose content, link target or type changed are exactly the ones `diff -rq` says differ
//     (device nodes aside: diff -r calls two equal ones different);
//   - every path `dpkg-deb -c` lists is reported (added or changed) unless it is a directory the root
//     already had, and every path reported is the package's, dpkg's database's, or a directory whose
//     times (or mode, owner) the unpacking set: diff compares metadata, diff -r does not;
//   - the bytes a sync would move are what `snapdir sync --json` copies to a store holding the root.
// Figures: entries, tree parts shared and decoded, diff wall time (median of --runs), paths reported,
// and the sync figures. Writes bench/results/diff-debian.txt (diff-debian-plain-x.txt with
// --plain-x; or --out FILE). Drives the built CLI.
//
//   node bench/diff-debian.mjs [--deb FILE] [--plain-x] [--runs N] [--keep] [--out FILE]

import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { benchDir, cliBuilt, corpusPath, hostInfo, repo, snapdirBin, snapdirCommit } from './lib/common.mjs'

const args = process.argv.slice(2)
const opt = (name, otherwise) => {
  const i = args.indexOf(name)
  return i < 0 ? otherwise : args[i + 1]
}
if (args.includes('-h') || args.includes('--help')) {
  console.log('usage: node bench/diff-debian.mjs [--deb FILE] [--plain-x] [--runs N] [--keep] [--out FILE]')
  process.exit(0)
}
const runs = Number(opt('--runs', '3'))
const plainX = args.includes('--plain-x')
const out = path.resolve(opt('--out', path.join(repo, `bench/results/diff-debian${plainX ? '-plain-x' : ''}.txt`)))
const fail = (why) => {
  console.error(`diff-debian: ${why}`)
  process.exit(1)
}
if (!cliBuilt()) fail('build the CLI first (npm run build)')
const root = corpusPath()
if (!fs.existsSync(`${root}.complete`)) execFileSync('bash', [path.join(repo, 'bench/setup.sh')], { stdio: 'inherit' })

const run = (cmd, argv, options = {}) => execFileSync(cmd, argv, { encoding: 'utf8', maxBuffer: 1 << 30, ...options })
const snapdir = (...argv) => run(snapdirBin, argv)
const installed = new Set([...fs.readFileSync(path.join(root, 'var/lib/dpkg/status'), 'utf8').matchAll(/^Package: (\S+)$/gm)].map((m) => m[1]))
const deb = opt('--deb', null) ?? (() => {
  for (const p of ['rsync', 'attr', 'jq', 'curl']) {
    const f = fs.readdirSync('/var/cache/apt/archives').find((n) => n.startsWith(`${p}_`) && n.endsWith('.deb'))
    if (f && !installed.has(p)) return path.join('/var/cache/apt/archives', f)
  }
  return fail('no .deb of a package the root lacks in /var/cache/apt/archives: give one with --deb FILE (apt-get download rsync)')
})()
const pkg = run('dpkg-deb', ['-f', deb, 'Package']).trim()
if (installed.has(pkg)) fail(`${pkg} is installed in the root already`)

const scratch = fs.mkdtempSync(path.join(benchDir, 'diff-debian-'))
const cleanup = () => {
  if (!args.includes('--keep')) fs.rmSync(scratch, { recursive: true, force: true })
}
process.on('exit', cleanup)
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(130))

// the copy, with the package unpacked and dpkg's database updated as dpkg --unpack + --configure would
const copy = path.join(scratch, 'copy')
run('cp', ['-a', root, copy])
if (plainX) run('dpkg-deb', ['-x', deb, copy])
else run('sh', ['-c', 'dpkg-deb --fsys-tarfile "$1" | tar -x --keep-directory-symlink -C "$2"', 'sh', deb, copy])
const control = path.join(scratch, 'control')
run('dpkg-deb', ['-e', deb, control])
const info = path.join(copy, 'var/lib/dpkg/info')
const dbFiles = ['var/lib/dpkg/status']
for (const f of fs.readdirSync(control)) {
  if (f === 'control') continue
  fs.copyFileSync(path.join(control, f), path.join(info, `${pkg}.${f}`))
  dbFiles.push(`var/lib/dpkg/info/${pkg}.${f}`)
}
const contents = run('dpkg-deb', ['-c', deb]).trim().split('\n').map((l) => ({ dir: l.startsWith('d'), path: /\.\/(\S*?)\/?(?: -> .*)?$/.exec(l)[1] })).filter((e) => e.path !== '')
const listed = contents.map((e) => e.path)
fs.writeFileSync(path.join(info, `${pkg}.list`), ['/.', ...listed.map((p) => `/${p}`)].join('\n') + '\n')
// where each listed path is in the copy: through the root's directory symlinks, unless --plain-x replaced them
const at = ({ dir, path: p }) => {
  const real = path.relative(copy, path.join(fs.realpathSync(path.join(copy, path.dirname(p))), path.basename(p)))
  return dir && fs.lstatSync(path.join(copy, real)).isSymbolicLink() ? path.relative(copy, fs.realpathSync(path.join(copy, p))) : real
}
const placed = contents.map(at)
dbFiles.push(`var/lib/dpkg/info/${pkg}.list`)
const statusFile = path.join(copy, 'var/lib/dpkg/status')
const paragraphs = fs.readFileSync(statusFile, 'utf8').trim().split(/\n\n+/)
const fields = fs.readFileSync(path.join(control, 'control'), 'utf8').trim().split('\n')
paragraphs.push([fields[0], 'Status: install ok installed', ...fields.slice(1)].join('\n'))
paragraphs.sort((a, b) => (a.split('\n')[0] < b.split('\n')[0] ? -1 : 1))
fs.writeFileSync(statusFile, paragraphs.join('\n\n') + '\n\n')

const store = path.join(scratch, 'store')
const t0 = Date.now()
const id1 = snapdir('push', '--store', store, root).trim()
const id2 = snapdir('push', '--store', store, copy).trim()
const pushSeconds = (Date.now() - t0) / 1000

const times = []
let d
for (let i = 0; i < runs; i++) {
  const t = process.hrtime.bigint()
  d = JSON.parse(snapdir('diff', '--json', '--store', store, id1, id2))
  times.push(Number(process.hrtime.bigint() - t) / 1e9)
}
times.sort((a, b) => a - b)
const human = snapdir('diff', '--store', store, id1, id2)
const tr = process.hrtime.bigint()
const diffR = run('sh', ['-c', `diff -rq --no-dereference '${root}' '${copy}'; test $? -le 1`]).trim().split('\n').filter(Boolean)
const diffRSeconds = Number(process.hrtime.bigint() - tr) / 1e9

// the checks
const problems = []
const check = (ok, what) => {
  if (!ok) problems.push(what)
}
const rel = (p) => path.relative(copy, p)
const isDevice = (p) => {
  const [a, b] = [root, copy].map((top) => fs.lstatSync(path.join(top, p), { throwIfNoEntry: false }))
  return a && b && (a.isCharacterDevice() || a.isBlockDevice()) && (b.isCharacterDevice() || b.isBlockDevice()) && a.rdev === b.rdev
}
const typeChanged = []
const devices = []
const onlyInCopy = []
const onlyInRoot = []
const differ = []
for (const l of diffR) {
  let m = /^Only in (.*): (.*)$/.exec(l)
  if (m) (m[1].startsWith(copy) ? onlyInCopy : onlyInRoot).push(path.join(m[1], m[2]))
  else if ((m = /^(?:Files|Symbolic links) (.*) and (.*) differ$/.exec(l))) (isDevice(rel(m[2])) ? devices : differ).push(rel(m[2]))
  else if ((m = /^File (.*) is a .* while file (.*) is a .*$/.exec(l))) {
    // diff -r says this of two device nodes too ("a character special file while … a character special file")
    if (isDevice(rel(m[2]))) devices.push(rel(m[2]))
    else {
      differ.push(rel(m[2]))
      typeChanged.push(m[2])
    }
  }
  else problems.push(`diff -rq said something this script does not read: ${l}`)
}
const addedByDiffR = [
  ...onlyInCopy.flatMap((top) => run('find', [top]).trim().split('\n').map(rel)),
  ...typeChanged.flatMap((top) => run('find', [top, '-mindepth', '1']).trim().split('\n').filter(Boolean).map(rel)),
].sort()
const paths = d.tree.paths
const added = paths.filter((p) => p.status === 'A').map((p) => p.path).sort()
const removed = paths.filter((p) => p.status === 'D').map((p) => p.path)
const contentChanged = paths.filter((p) => p.changes.some((k) => k === 'content' || k === 'target' || k === 'type')).map((p) => p.path).sort()
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i])
check(same(added, addedByDiffR), `added: snapdir ${added.length} paths, diff -rq ${addedByDiffR.length} (${added.filter((p) => !addedByDiffR.includes(p)).slice(0, 5).join(' ')} / ${addedByDiffR.filter((p) => !added.includes(p)).slice(0, 5).join(' ')})`)
check(removed.length === 0 && onlyInRoot.length === 0, `removed: snapdir ${removed.length}, diff -rq ${onlyInRoot.length}`)
check(same(contentChanged, differ.sort()), `content: snapdir ${contentChanged.join(' ')}; diff -rq ${differ.join(' ')}`)
const reported = new Map(paths.map((p) => [p.path, p]))
for (const p of placed) {
  const wasDir = fs.lstatSync(path.join(root, p), { throwIfNoEntry: false })?.isDirectory() ?? false
  check(reported.has(p) || wasDir, `${p} is in the package and not reported`)
}
const mine = new Set([...placed, ...dbFiles])
for (const p of paths) {
  const metadataOnly = p.type === 'dir' && p.status === 'M' && p.changes.every((k) => k === 'times' || k === 'mode' || k === 'owner')
  check(mine.has(p.path) || metadataOnly, `${p.status} ${p.path} (${p.changes.join(', ')}) is neither the package's nor dpkg's nor a directory's metadata`)
}
for (const f of dbFiles) check(reported.has(f), `dpkg's ${f} not reported`)

// the sync figure against sync itself: a store holding the root, then the copy synced to it
const dest = path.join(scratch, 'dest')
snapdir('sync', '--id', id1, '--from', store, '--to', dest)
const s = JSON.parse(snapdir('sync', '--json', '--id', id2, '--from', store, '--to', dest))
check(s.objects.copied === d.sync.objects && s.bytes.copied === d.sync.bytes, `sync copied ${s.objects.copied} objects, ${s.bytes.copied} bytes; diff said ${d.sync.objects}, ${d.sync.bytes}`)

const kinds = Object.entries(d.counts.kinds).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ')
const dirsTimes = paths.filter((p) => p.type === 'dir' && p.status === 'M').length
const lines = [
  `snapdir diff: a Debian root against the same root with one package added (${path.basename(deb)})`,
  `commit ${snapdirCommit()}, ${new Date().toISOString()}, ${hostInfo().cores} cores (${hostInfo().cpu}), load average ${os.loadavg()[0].toFixed(1)} when done`,
  ``,
  `root                  ${root}: ${d.tree.entries.from} entries; with ${pkg}: ${d.tree.entries.to}`,
  `package               ${pkg}: ${listed.length} paths (dpkg-deb -c), ${dbFiles.length} dpkg database files written`,
  `tree parts            ${d.tree.parts.from} / ${d.tree.parts.to}, ${d.tree.parts.shared} shared, ${d.tree.parts.decoded} decoded`,
  `diff time             ${times.map((x) => x.toFixed(2)).join(' ')} s (median ${times[Math.floor(times.length / 2)].toFixed(2)} s, the CLI's start included); diff -rq: ${diffRSeconds.toFixed(2)} s (page cache warm)`,
  `paths reported        ${d.counts.added} added, ${d.counts.removed} removed, ${d.counts.changed} changed (${kinds}); ${dirsTimes} of the changed are directories`,
  `unpacked with         ${plainX ? 'dpkg-deb -x (replaces directory symlinks of the root)' : 'dpkg-deb --fsys-tarfile | tar -x --keep-directory-symlink (as dpkg: through the root\'s lib -> usr/lib)'}`,
  `diff -rq              ${onlyInCopy.length} 'Only in' the copy (${addedByDiffR.length} paths under them${typeChanged.length ? ' and under the type changes' : ''}), ${onlyInRoot.length} only in the root, ${differ.length} differ (${typeChanged.length} in type); ${devices.length} device nodes (same numbers) it calls different left out`,
  `sync would move       ${d.sync.objects} objects, ${d.sync.bytes} bytes: chunks ${d.sync.chunks.objects} (${d.sync.chunks.bytes}), tree parts ${d.sync.treeParts.objects} (${d.sync.treeParts.bytes}), trees ${d.sync.trees.objects} (${d.sync.trees.bytes}), recipes ${d.sync.recipes.objects}`,
  `sync --json copied    ${s.objects.copied} objects, ${s.bytes.copied} bytes (skipped ${s.objects.skipped})`,
  `push of both          ${pushSeconds.toFixed(1)} s`,
  ``,
  problems.length === 0 ? 'checks: all hold (added = diff -rq only-in-copy, content = diff -rq differ, package list covered, nothing else but directory metadata, sync figure = sync --json)' : `checks FAILED:\n${problems.map((p) => `  ${p}`).join('\n')}`,
  ``,
  `snapdir diff output:`,
  ...human.trimEnd().split('\n'),
]
fs.mkdirSync(path.dirname(out), { recursive: true })
fs.writeFileSync(out, lines.join('\n') + '\n')
console.log(lines.slice(0, 15).join('\n'))
if (problems.length > 0) process.exit(1)
