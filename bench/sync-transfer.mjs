#!/usr/bin/env node
// Sync transfer on the Debian image corpora, in one run: what `snapdir sync` sends to an S3 store
// when the images it already holds share most of their content with the new one. A base image
// (bookworm minbase), then the same base plus python3, then that image rebuilt from scratch with one
// package more, each synced to the same S3 store; then a no-op re-sync of the last one.
//
//   node bench/sync-transfer.mjs [options]      (runs bash bench/setup.sh for its three corpora)
//
// For each sync: objects and bytes sync says it copied (`--json`) against the objects of that
// snapshot the destination did not have yet, computed without asking sync (target: at most 1.1x the
// new bytes), and every HTTP request it made, counted by a proxy in front of the server (target for
// the no-op re-sync: 1 request). For context, the file data that is really new and what a registry
// would move. Prints a table on stdout and writes bench/results/sync-transfer.json; bench/README.md
// says what each number means.
//
// The S3 server is s3rver (a devDependency: the real S3 HTTP API, objects kept in a directory) on
// 127.0.0.1, started in this process. Plain ESM that needs no compilation: it drives the built CLI
// (bin/snapdir -> dist/), so it measures exactly what ships. Needs root only for bench/setup.sh.

import { execFileSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {
  MB, benchDir, buildChangedNote, buildFingerprint, cleanupOnSignals, cliBuilt, corpusMarker, defaultOut, failer, fmt, fmtInt,
  fsTypeAt, hostInfo, parseCommandLine, privateEnv, repo, runCommand, snapdirBin, snapdirCommit, table, walk, writeResult,
} from './lib/common.mjs'
import { S3_ENV, bucketLister, newCounts, startProxy, startS3rver } from './lib/s3.mjs'

const TARGET_RATIO = 1.1
const TARGET_NOOP_REQUESTS = 1
const BUCKET = 'bench'
const PREFIX = 'mirror'
// what snapdir itself inlines, packs and cuts (DEFAULT_CHUNKER in src/chunk/params.ts), used only to
// split "new file data" by how push stores it
const INLINE_MAX = 4096
const PACK_MAX = 64 * 1024

/** The syncs, in order; each corpus is built by bench/setup.sh. `parent`: the image it is built on, for the registry's changed-files layer. */
const STEPS = [
  { corpus: 'debian-base', what: 'base: bookworm minbase, into an empty store', parent: null },
  { corpus: 'debian-rootfs', what: 'the base + python3 (its own mmdebstrap run)', parent: 'debian-base' },
  { corpus: 'debian-python3-rebuilt', what: 'debian-rootfs rebuilt from scratch + less', parent: 'debian-rootfs' },
]

const usage = `usage: node bench/sync-transfer.mjs [options]

  --jobs N       passed to snapdir sync --jobs (default: sync's own default)
  --no-registry  leave out the tar | gzip figures (saves about half a minute)
  --keep         keep the scratch directory (stores, s3rver's directory) for inspection
  --out FILE     JSON report (default bench/results/sync-transfer.json)
  -h, --help     this text

SYNC_TRANSFER_DEBUG=1 lets s3rver log every request it serves on stderr.

Corpora: ${STEPS.map((s) => s.corpus).join(', ')} under $SNAPDIR_BENCH_DIR (default
/var/tmp/snapdir-bench), built or checked by running bash bench/setup.sh first. Stores and the S3
server's directory go into a fresh $SNAPDIR_BENCH_DIR/sync-transfer-XXXXXX, deleted at the end.`

const fail = failer('sync-transfer')

function parseOptions() {
  const values = parseCommandLine(
    {
      jobs: { type: 'string' },
      'no-registry': { type: 'boolean' },
      keep: { type: 'boolean' },
      out: { type: 'string', default: defaultOut('sync-transfer') },
    },
    usage,
    fail,
  )
  if (values.jobs !== undefined && !(/^[1-9][0-9]{0,3}$/.test(values.jobs) && Number(values.jobs) <= 1024)) fail(`--jobs ${values.jobs}: expected an integer 1..1024`, 2)
  return { jobs: values.jobs ?? null, registry: !values['no-registry'], keep: values.keep ?? false, out: path.resolve(values.out) }
}

/** Runs a command from the repository to completion; rejects with the tail of its stderr when it fails. */
const run = (argv, { env = process.env } = {}) => runCommand(argv, { env, cwd: repo })

// ---------------------------------------------------------------------------------------------
// The corpora, described without snapdir: content hashes of every regular file, symlink targets,
// directories, and the packages dpkg installed.

function describeCorpus(name) {
  const root = path.join(benchDir, name)
  const entries = new Map()
  const contents = new Map() // sha256 -> size
  let files = 0
  let bytes = 0
  let dirs = 0
  let symlinks = 0
  // walk() gives the root first and absolute paths; the corpus is described by paths relative to it
  for (const { path: abs, st } of walk(root).slice(1)) {
    const rel = path.relative(root, abs)
    if (st.isFile()) {
      const hash = crypto.createHash('sha256').update(fs.readFileSync(abs)).digest('hex')
      entries.set(rel, { type: 'file', hash, size: st.size })
      contents.set(hash, st.size)
      files++
      bytes += st.size
    } else if (st.isSymbolicLink()) {
      entries.set(rel, { type: 'symlink', target: fs.readlinkSync(abs) })
      symlinks++
    } else if (st.isDirectory()) {
      entries.set(rel, { type: 'dir' })
      dirs++
    } else entries.set(rel, { type: 'other', rdev: st.rdev, mode: st.mode })
  }
  return { name, root, entries, contents, files, bytes, dirs, symlinks, packages: dpkgPackages(root), marker: corpusMarker(root) }
}

/** package -> version, from the image's dpkg database */
function dpkgPackages(root) {
  const out = new Map()
  let text
  try {
    text = fs.readFileSync(path.join(root, 'var/lib/dpkg/status'), 'utf8')
  } catch {
    return out
  }
  for (const para of text.split(/\n\n+/)) {
    const pkg = /^Package: (.+)$/m.exec(para)?.[1]
    const version = /^Version: (.+)$/m.exec(para)?.[1]
    const arch = /^Architecture: (.+)$/m.exec(para)?.[1]
    if (pkg && version && /^Status: .* installed$/m.test(para)) out.set(arch && arch !== 'all' ? `${pkg}:${arch}` : pkg, version)
  }
  return out
}

function packageDiff(parent, child) {
  const added = []
  const removed = []
  const changed = []
  for (const [p, v] of child) {
    if (!parent.has(p)) added.push(`${p} ${v}`)
    else if (parent.get(p) !== v) changed.push(`${p} ${parent.get(p)} -> ${v}`)
  }
  for (const [p, v] of parent) if (!child.has(p)) removed.push(`${p} ${v}`)
  return { added, removed, changed }
}

/**
 * File data of `corpus` whose content no earlier corpus has (each distinct content once), split by
 * how push stores a file of that size: inline in the tree, packed with its neighbours, or cut alone.
 */
function newFileData(corpus, earlier) {
  const out = { bytes: 0, contents: 0, inline: 0, packed: 0, large: 0 }
  for (const [hash, size] of corpus.contents) {
    if (earlier.some((c) => c.contents.has(hash))) continue
    out.bytes += size
    out.contents++
    if (size <= INLINE_MAX) out.inline += size
    else if (size < PACK_MAX) out.packed += size
    else out.large += size
  }
  return out
}

/**
 * The entries of `child` that differ from `parent` at the same path (or are not in it): what one
 * image layer on top of `parent` would hold at best. Paths only in the parent would be whiteouts.
 */
function changedEntries(parent, child) {
  const changed = []
  const added = []
  for (const [rel, e] of child.entries) {
    const p = parent.entries.get(rel)
    if (!p) added.push(rel)
    else if (e.type !== 'dir' && JSON.stringify(e) !== JSON.stringify(p)) changed.push(rel)
  }
  const removed = [...parent.entries.keys()].filter((rel) => !child.entries.has(rel))
  return { added, changed, removed }
}

// ---------------------------------------------------------------------------------------------
// What a registry would move: one gzip'd tar per layer, re-sent whole when its digest differs.

async function gzipLayerBytes(root, list = null) {
  const script = list === null
    ? 'set -o pipefail; tar -C "$1" -cf - . | gzip -1 | wc -c'
    : 'set -o pipefail; tar -C "$1" --no-recursion --null -T "$2" -cf - | gzip -1 | wc -c'
  const r = await run(['bash', '-c', script, 'bash', root, ...(list === null ? [] : [list])])
  return Number(r.stdout.trim())
}

// ---------------------------------------------------------------------------------------------
// Snapdir's stores, read as files: a store's objects are chunks/XX/ID, trees/XX/ID and tree-parts/XX/ID, each a
// 16-byte header (magic, codec, reserved, raw length u64 LE) and a payload (src/format/object.ts).

function storeObjects(storeDir) {
  const objects = new Map() // key -> { size, raw }
  const header = Buffer.alloc(16)
  for (const top of ['chunks', 'trees', 'tree-parts']) {
    const dir = path.join(storeDir, top)
    if (!fs.existsSync(dir)) continue
    for (const fan of fs.readdirSync(dir)) {
      for (const name of fs.readdirSync(path.join(dir, fan))) {
        const file = path.join(dir, fan, name)
        const fd = fs.openSync(file, 'r')
        try {
          fs.readSync(fd, header, 0, 16, 0)
          objects.set(`${top}/${fan}/${name}`, { size: fs.fstatSync(fd).size, raw: Number(header.readBigUInt64LE(8)) })
        } finally {
          fs.closeSync(fd)
        }
      }
    }
  }
  return objects
}

// ---------------------------------------------------------------------------------------------
// One run

const isObjectKey = (k) => k.startsWith('chunks/') || k.startsWith('trees/') || k.startsWith('tree-parts/')
const sumSizes = (keys, sizes) => keys.reduce((a, k) => a + sizes.get(k).size, 0)
const sumRaw = (keys, sizes) => keys.reduce((a, k) => a + sizes.get(k).raw, 0)

async function syncOnce(ctx, step, label) {
  const before = await ctx.listBucket()
  ctx.proxy.counts = newCounts()
  const args = [ctx.bin, 'sync', '--id', step.id, '--from', step.store, '--to', `s3://${BUCKET}/${PREFIX}`, '--s3-endpoint', ctx.proxy.endpoint, '--json']
  if (ctx.jobs) args.push('--jobs', ctx.jobs)
  const r = await run(args, { env: ctx.env })
  const counts = ctx.proxy.counts
  const after = await ctx.listBucket()
  const lines = r.stdout.trim().split('\n')
  let summary
  try {
    summary = JSON.parse(lines.at(-1))
  } catch {
    throw new Error(`${label}: snapdir sync --json printed ${JSON.stringify(r.stdout)}, expected one JSON line`)
  }
  const appeared = [...after.keys()].filter((k) => !before.has(k)).sort()
  const resized = [...after.keys()].filter((k) => before.has(k) && before.get(k) !== after.get(k))
  process.stderr.write(`  ${label}: ${summary.objects.copied} objects copied, ${counts.requests} requests, ${(r.wallMs / 1000).toFixed(1)} s\n`)
  return { wallMs: r.wallMs, summary, counts, before, after, appeared, resized }
}

async function main() {
  const opts = parseOptions()

  // The corpora first: setup.sh is idempotent and takes a second when they are there.
  process.stderr.write(`bash bench/setup.sh ${STEPS.map((s) => s.corpus).join(' ')}\n`)
  try {
    execFileSync('bash', [path.join(repo, 'bench/setup.sh'), ...STEPS.map((s) => s.corpus)], { stdio: ['ignore', 'inherit', 'inherit'] })
  } catch {
    fail('bench/setup.sh failed (it needs root to build the corpora)')
  }
  const problems = []
  const bin = snapdirBin
  if (!cliBuilt()) problems.push('bin/snapdir or dist/bundle is missing: run npm run build')
  for (const mod of ['s3rver', '@aws-sdk/client-s3']) {
    if (!fs.existsSync(path.join(repo, 'node_modules', mod))) problems.push(`${mod} is not installed: run npm ci (it is a ${mod === 's3rver' ? 'devDependency' : 'dependency'})`)
  }
  if (problems.length) fail(problems.join('\n'))

  // Everything written goes beside the corpora, on disk, and is deleted only at the end: ext4
  // without a journal (as on these machines) allocates new files slowly for a while after many
  // were deleted.
  const scratch = fs.mkdtempSync(path.join(benchDir, 'sync-transfer-'))
  let server = null
  let proxy = null
  let listBucket = null
  const cleanup = async () => {
    await proxy?.close()
    await server?.close()
    listBucket?.close()
    if (opts.keep) process.stderr.write(`kept ${scratch}\n`)
    else fs.rmSync(scratch, { recursive: true, force: true })
  }
  cleanupOnSignals('sync-transfer', () => {
    if (!opts.keep) fs.rmSync(scratch, { recursive: true, force: true })
  })

  const buildBefore = buildFingerprint()
  const notes = []
  const steps = STEPS.map((s) => ({ ...s }))
  let noop
  let corpora
  try {
    process.stderr.write('describing the corpora (content hashes, packages)\n')
    corpora = new Map(steps.map((s) => [s.corpus, describeCorpus(s.corpus)]))

    // One store per snapshot, each pushed into a fresh directory: the files in it are exactly the
    // objects that snapshot needs, counted without asking sync or reading a tree.
    const home = path.join(scratch, 'home')
    fs.mkdirSync(home)
    const env = { ...privateEnv(home), ...S3_ENV }
    for (const k of ['AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_DEFAULT_REGION', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE']) delete env[k]
    for (const step of steps) {
      step.store = path.join(scratch, 'stores', step.corpus)
      const r = await run([bin, 'push', '--store', step.store, '--name', step.corpus, path.join(benchDir, step.corpus)], { env })
      step.id = r.stdout.trim()
      if (!/^[0-9a-f]{64}$/.test(step.id)) throw new Error(`snapdir push ${step.corpus} printed ${JSON.stringify(r.stdout)}, expected one snapshot ID`)
      step.pushMs = r.wallMs
      step.objects = storeObjects(step.store)
      process.stderr.write(`  push ${step.corpus}: ${step.id.slice(0, 12)}, ${step.objects.size} objects, ${(r.wallMs / 1000).toFixed(1)} s\n`)
    }

    server = await startS3rver({ directory: path.join(scratch, 's3rver'), bucket: BUCKET, debug: process.env.SYNC_TRANSFER_DEBUG === '1' })
    proxy = await startProxy(server.endpoint, { prefix: PREFIX })
    const lister = await bucketLister(server.endpoint, BUCKET)
    listBucket = Object.assign(() => lister(PREFIX), { close: lister.close })
    // the brief of issue 4 names AWS_ENDPOINT_URL; --s3-endpoint (set too) is what sync reads first
    const ctx = { bin, jobs: opts.jobs, proxy, listBucket, env: { ...env, AWS_ENDPOINT_URL: proxy.endpoint } }

    process.stderr.write(`syncing to s3://${BUCKET}/${PREFIX} on s3rver ${server.endpoint}, through the proxy ${proxy.endpoint}\n`)
    const held = new Set() // object keys the destination holds, by our own account
    for (const [i, step] of steps.entries()) {
      const s = await syncOnce(ctx, step, `sync ${i + 1} ${step.corpus}`)
      const needed = [...step.objects.keys()]
      const newKeys = needed.filter((k) => !held.has(k)).sort()
      const appearedObjects = s.appeared.filter(isObjectKey)
      const heldBefore = [...s.before.keys()].filter(isObjectKey)
      const treeKey = `trees/${step.id.slice(0, 2)}/${step.id}`
      const newChunks = newKeys.filter((k) => k.startsWith('chunks/'))
      step.sync = {
        wallMs: s.wallMs,
        summary: s.summary,
        requests: s.counts,
        needed: { objects: needed.length, bytes: sumSizes(needed, step.objects), rawBytes: sumRaw(needed, step.objects) },
        new: {
          objects: newKeys.length,
          bytes: sumSizes(newKeys, step.objects),
          rawBytes: sumRaw(newKeys, step.objects),
          chunks: newChunks.length,
          chunkBytes: sumSizes(newChunks, step.objects),
          chunkRawBytes: sumRaw(newChunks, step.objects),
        },
        tree: step.objects.has(treeKey) ? step.objects.get(treeKey) : null,
        appeared: {
          objects: appearedObjects.length,
          bytes: appearedObjects.reduce((a, k) => a + s.after.get(k), 0),
          other: s.appeared.filter((k) => !isObjectKey(k)),
        },
      }
      const v = step.sync
      v.ratio = { objects: s.summary.objects.copied / v.new.objects, bytes: s.summary.bytes.copied / v.new.bytes, uploadedBytes: s.counts.requestBodyBytes / v.new.bytes }
      // The cross-checks: our own account, the bucket and sync's summary must tell one story.
      const problem = (m) => {
        notes.push(`sync ${i + 1} (${step.corpus}): ${m}`)
        process.stderr.write(`  warning: ${m}\n`)
      }
      if (heldBefore.length !== held.size || heldBefore.some((k) => !held.has(k))) problem(`the bucket held ${heldBefore.length} objects before, ${held.size} expected`)
      if (appearedObjects.length !== newKeys.length || appearedObjects.some((k, j) => k !== newKeys[j])) {
        problem(`${appearedObjects.length} objects appeared in the bucket, ${newKeys.length} were new (${appearedObjects.filter((k) => !step.objects.has(k)).length} not of this snapshot)`)
      }
      if (s.resized.length) problem(`${s.resized.length} keys changed size in the bucket: ${s.resized.slice(0, 5).join(', ')}`)
      if (s.summary.objects.checked !== needed.length) problem(`sync checked ${s.summary.objects.checked} objects, the snapshot has ${needed.length}`)
      if (s.summary.objects.copied !== newKeys.length) problem(`sync copied ${s.summary.objects.copied} objects, ${newKeys.length} were new`)
      if (s.summary.bytes.copied !== v.new.bytes) problem(`sync copied ${s.summary.bytes.copied} bytes, the new objects hold ${v.new.bytes}`)
      if (s.counts.byStatus['proxy-error']) problem(`${s.counts.byStatus['proxy-error']} requests failed in the proxy`)
      for (const k of needed) held.add(k)

      // content view: the file data this image really adds, and what a registry would send
      const earlier = steps.slice(0, i).map((e) => corpora.get(e.corpus))
      const corpus = corpora.get(step.corpus)
      step.content = { newFileData: newFileData(corpus, earlier) }
      if (step.parent) {
        const parent = corpora.get(step.parent)
        step.content.packages = packageDiff(parent.packages, corpus.packages)
        const ce = changedEntries(parent, corpus)
        step.content.changedLayer = { added: ce.added.length, changed: ce.changed.length, removed: ce.removed.length, changedPaths: ce.changed.slice(0, 200) }
        step.content.changedEntries = ce
      }
    }

    const last = steps.at(-1)
    const s = await syncOnce(ctx, last, `no-op re-sync of ${last.corpus}`)
    noop = { corpus: last.corpus, id: last.id, wallMs: s.wallMs, summary: s.summary, requests: s.counts, appeared: s.appeared.length }
    if (s.appeared.length || s.resized.length) notes.push(`the no-op re-sync changed the bucket: ${s.appeared.length} keys appeared, ${s.resized.length} changed size`)
    if (!s.summary.alreadyComplete) notes.push('the no-op re-sync did not report alreadyComplete')

    if (opts.registry) {
      process.stderr.write('registry figures: tar | gzip -1 | wc -c\n')
      for (const step of steps) {
        const full = await gzipLayerBytes(path.join(benchDir, step.corpus))
        let changed = null
        const ce = step.content.changedEntries
        if (ce) {
          const list = path.join(scratch, `${step.corpus}.layer-list`)
          fs.writeFileSync(list, [...ce.added, ...ce.changed].map((p) => `./${p}\0`).join(''))
          changed = await gzipLayerBytes(path.join(benchDir, step.corpus), list)
        }
        step.registry = { fullLayerGzBytes: full, changedLayerGzBytes: changed }
        process.stderr.write(`  ${step.corpus}: full layer ${(full / MB).toFixed(1)} MB${changed === null ? '' : `, changed-files layer ${(changed / MB).toFixed(1)} MB`}\n`)
      }
    }
  } finally {
    await cleanup()
  }
  const buildAfter = buildFingerprint()
  const buildChanged = buildChangedNote(buildBefore, buildAfter)
  if (buildChanged) notes.push(buildChanged)

  // this report has never recorded the machine's memory (it measures requests and bytes, not speed)
  const host = hostInfo()
  delete host.memBytes
  const result = {
    schema: 1,
    date: new Date().toISOString(),
    machine: {
      ...host,
      fsType: fsTypeAt(benchDir),
      scratchDir: benchDir,
      snapdirCommit: snapdirCommit(),
      s3rver: JSON.parse(fs.readFileSync(path.join(repo, 'node_modules/s3rver/package.json'), 'utf8')).version,
    },
    store: { url: `s3://${BUCKET}/${PREFIX}`, server: 's3rver on 127.0.0.1, bucket made before the first sync', jobs: opts.jobs ?? 'default' },
    targets: { copiedOverNewBytes: TARGET_RATIO, noopRequests: TARGET_NOOP_REQUESTS },
    build: buildAfter,
    corpora: Object.fromEntries(
      [...corpora.values()].map((c) => [c.name, { root: c.root, files: c.files, bytes: c.bytes, distinctContents: c.contents.size, dirs: c.dirs, symlinks: c.symlinks, packages: c.packages.size, marker: c.marker }]),
    ),
    steps: steps.map((st) => ({
      corpus: st.corpus,
      what: st.what,
      parent: st.parent,
      id: st.id,
      pushMs: st.pushMs,
      sync: st.sync,
      content: { ...st.content, changedEntries: undefined },
      registry: st.registry ?? null,
    })),
    noop,
    verdict: {
      ratiosMet: steps.every((st) => st.sync.ratio.bytes <= TARGET_RATIO),
      noopMet: noop.requests.requests <= TARGET_NOOP_REQUESTS,
    },
    notes,
  }
  writeResult(opts.out, result, report)
}

// ---------------------------------------------------------------------------------------------
// Report

const mb = (x, digits = 2) => fmt(x / MB, digits)

function requestLine(c) {
  const order = ['HEAD', 'GET', 'PUT', 'LIST']
  const parts = Object.entries(c.byRequest).sort(([a], [b]) => order.indexOf(a.split(' ')[0]) - order.indexOf(b.split(' ')[0]) || a.localeCompare(b))
  const status = Object.entries(c.byStatus).map(([k, n]) => `${n}x ${k}`).join(', ')
  return `${parts.map(([k, n]) => `${k} ${fmtInt(n)}`).join(', ')}  (answers: ${status})`
}

function report(r) {
  const lines = []
  lines.push(`sync transfer, ${r.date}`)
  lines.push(`store: ${r.store.url} on s3rver ${r.machine.s3rver} (127.0.0.1), through a counting proxy; sync --jobs ${r.store.jobs}; MB = 10^6 bytes`)
  for (const [name, c] of Object.entries(r.corpora)) lines.push(`  ${name.padEnd(23)} ${fmtInt(c.files)} files, ${mb(c.bytes, 1)} MB, ${c.packages} packages`)
  lines.push('')

  const rows = r.steps.map((s, i) => [
    `${i + 1} ${s.corpus}`,
    fmtInt(s.sync.needed.objects),
    fmtInt(s.sync.summary.objects.copied),
    mb(s.sync.summary.bytes.copied),
    fmtInt(s.sync.new.objects),
    mb(s.sync.new.bytes),
    `${fmt(s.sync.ratio.bytes, 3)}${s.sync.ratio.bytes <= r.targets.copiedOverNewBytes ? '' : ' !'}`,
    mb(s.sync.requests.requestBodyBytes),
    fmtInt(s.sync.requests.requests),
    fmt(s.sync.wallMs / 1000),
  ])
  rows.push([`4 no-op re-sync of ${r.noop.corpus}`, '-', fmtInt(r.noop.summary.objects.copied), mb(r.noop.summary.bytes.copied), '0', '0.00', '-', mb(r.noop.requests.requestBodyBytes), `${r.noop.requests.requests}${r.noop.requests.requests <= r.targets.noopRequests ? '' : ' !'}`, fmt(r.noop.wallMs / 1000)])
  lines.push(table(['sync', 'snapshot obj', 'copied obj', 'copied MB', 'new obj', 'new MB', 'copied/new', 'uploaded MB', 'requests', 's'], rows))
  lines.push('')
  lines.push('requests by kind:')
  r.steps.forEach((s, i) => lines.push(`  ${i + 1}: ${requestLine(s.sync.requests)}`))
  lines.push(`  4: ${requestLine(r.noop.requests)}`)
  lines.push('')

  const crow = r.steps.map((s, i) => {
    const nd = s.content.newFileData
    const tree = s.sync.tree
    return [
      `${i + 1} ${s.corpus}`,
      mb(nd.bytes),
      `${mb(nd.inline)}/${mb(nd.packed)}/${mb(nd.large)}`,
      mb(s.sync.new.chunkRawBytes),
      tree ? `${mb(tree.raw)}/${mb(tree.size)}` : '-',
      tree ? `${fmt((tree.size / s.sync.summary.bytes.copied) * 100, 0)}%` : '-',
      fmt(s.sync.new.rawBytes / nd.bytes, 2),
      s.registry ? mb(s.registry.fullLayerGzBytes) : '-',
      s.registry?.changedLayerGzBytes != null ? mb(s.registry.changedLayerGzBytes) : s.registry ? mb(s.registry.fullLayerGzBytes) : '-',
      s.registry ? fmt(s.sync.summary.bytes.copied / s.registry.fullLayerGzBytes, 3) : '-',
    ]
  })
  lines.push(table(['content', 'new data MB', 'inline/packed/large', 'new chunks raw MB', 'tree raw/stored MB', 'tree of copied', 'new raw/new data', 'full layer gz MB', 'changed layer gz MB', 'copied/full layer'], crow))
  for (const [i, s] of r.steps.entries()) {
    const p = s.content.packages
    const cl = s.content.changedLayer
    if (!p) continue
    const fmtList = (xs) => (xs.length <= 6 ? xs.join(', ') : `${xs.slice(0, 6).join(', ')} and ${xs.length - 6} more`)
    lines.push(`  ${i + 1} vs ${s.parent}: packages +${p.added.length} -${p.removed.length} ~${p.changed.length}${p.added.length ? ` (added: ${fmtList(p.added.map((x) => x.split(' ')[0]))})` : ''}${p.changed.length ? `; version changed: ${fmtList(p.changed)}` : ''}`)
    lines.push(`     paths: ${fmtInt(cl.added)} added, ${fmtInt(cl.changed)} changed (content, target or type), ${fmtInt(cl.removed)} removed${cl.changed ? `; changed: ${fmtList(cl.changedPaths)}` : ''}`)
  }
  lines.push('')
  const worst = Math.max(...r.steps.map((s) => s.sync.ratio.bytes))
  lines.push(`targets: copied/new bytes <= ${r.targets.copiedOverNewBytes} in every sync: ${r.verdict.ratiosMet ? 'met' : 'NOT met'} (worst ${fmt(worst, 3)}); no-op re-sync <= ${r.targets.noopRequests} request: ${r.verdict.noopMet ? 'met' : 'NOT met'} (${r.noop.requests.requests})`)
  for (const n of r.notes) lines.push(`warning: ${n}`)
  return lines.join('\n')
}

main().catch((error) => fail(error.stack ?? String(error)))
