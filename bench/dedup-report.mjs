#!/usr/bin/env node
// Dedup report on related Debian images: what the same images cost stored deduplicated by whole
// layer, by whole file and by chunk (what snapdir stores), next to what a registry stores for them
// (the sum of their distinct compressed layers).
//
//   node bench/dedup-report.mjs [options]      (runs bash bench/setup.sh for its four corpora)
//
// The images, built with umoci from the corpora bench/setup.sh makes (each its own mmdebstrap run):
//   base              debian-base as one layer
//   base-rebuilt      debian-base-rebuilt as one layer: the same packages, another layer digest
//   python3           base's layer (the same blob) + a layer taking it to debian-rootfs (python3)
//   python3-less      base's layer + a layer taking it to debian-python3-rebuilt (python3 + less,
//                     another mmdebstrap run, so regenerated files differ too)
// Each image is its own OCI layout, pushed with its name into one fresh local store; then
// `snapdir stats --json` on that store gives every level. Beside it, a count made here without
// snapdir: each distinct layer tar read with python's tarfile, every regular file hashed with sha256,
// for the exact whole-file figure (snapdir's whole-file level is an upper bound, see README.md).
// Prints a table and writes bench/results/dedup-report.json and .txt; bench/README.md says what each
// number means. Needs root (bench/setup.sh, and umoci repacking trees owned by other users).

import fs from 'node:fs'
import path from 'node:path'
import {
  MB, benchDir, buildChangedNote, buildFingerprint, cleanupOnSignals, cliBuilt, corpusMarker, defaultOut, failer, fmt, fmtInt,
  fsTypeAt, hostInfo, measureTree, parseCommandLine, repo, runCommand, snapdirBin, snapdirCommit, table, tryRun, writeResult,
} from './lib/common.mjs'
import { buildLayout, layoutLayers } from './lib/layouts.mjs'

const CORPORA = ['debian-base', 'debian-base-rebuilt', 'debian-rootfs', 'debian-python3-rebuilt']

/** The images, in push order. `layers`: the corpora whose trees the image's layers take the rootfs to, bottom first. */
const IMAGES = [
  { name: 'base', what: 'debian-base, 1 layer', layers: ['debian-base'] },
  { name: 'base-rebuilt', what: 'debian-base-rebuilt (same packages, own run), 1 layer', layers: ['debian-base-rebuilt'] },
  { name: 'python3', what: "base's layer + python3 (to debian-rootfs)", layers: ['debian-base', 'debian-rootfs'], on: 'base' },
  { name: 'python3-less', what: "base's layer + python3, less (to debian-python3-rebuilt)", layers: ['debian-base', 'debian-python3-rebuilt'], on: 'base' },
]

const usage = `usage: node bench/dedup-report.mjs [options]

  --keep         keep the scratch directory (layouts, bundles, store) for inspection
  --out FILE     JSON report (default bench/results/dedup-report.json; the table goes beside it as .txt)
  -h, --help     this text

Corpora: ${CORPORA.join(', ')} under $SNAPDIR_BENCH_DIR (default /var/tmp/snapdir-bench),
built or checked by running bash bench/setup.sh first. Layouts, bundles and the store go into a fresh
$SNAPDIR_BENCH_DIR/dedup-report-XXXXXX, deleted at the end of the run.`

const fail = failer('dedup-report')

function parseOptions() {
  const values = parseCommandLine({ keep: { type: 'boolean' }, out: { type: 'string', default: defaultOut('dedup-report') } }, usage, fail)
  return { keep: values.keep ?? false, out: path.resolve(values.out) }
}

const run = (argv) => runCommand(argv, { cwd: repo })

/** Builds every image as its own layout under `scratch`; returns name -> layout. */
async function buildImages(scratch) {
  const layouts = new Map()
  for (const image of IMAGES) {
    const t0 = Date.now()
    const base = image.on ? IMAGES.find((i) => i.name === image.on) : null
    const layout = path.join(scratch, 'layouts', image.name)
    await buildLayout({
      layout,
      bundle: path.join(scratch, 'bundles', image.name),
      // on a copy of the image it is built on, so the shared layer is the very same blob
      on: base ? layouts.get(base.name) : null,
      corpora: image.layers.slice(base ? base.layers.length : 0).map((c) => path.join(benchDir, c)),
    })
    layouts.set(image.name, layout)
    process.stderr.write(`  built ${image.name} (${image.what}) in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`)
  }
  return layouts
}

/** Distinct file contents of the distinct layers, by sha256 of each regular file of their tars (python's tarfile, not snapdir). */
async function exactFileLevel(layers) {
  const distinct = [...new Map(layers.map((l) => [l.diffId, l.blob])).values()]
  const script = [
    'import hashlib, json, sys, tarfile',
    'seen = {}; files = 0; total = 0',
    'for blob in sys.argv[1:]:',
    '    with tarfile.open(blob, "r:*") as t:',
    '        for m in t:',
    '            if not m.isreg(): continue',
    '            h = hashlib.sha256(); f = t.extractfile(m)',
    '            for b in iter(lambda: f.read(1 << 20), b""): h.update(b)',
    '            files += 1; total += m.size; seen[h.hexdigest()] = m.size',
    'print(json.dumps({"layers": len(sys.argv) - 1, "files": files, "bytes": total, "distinctFiles": len(seen), "distinctBytes": sum(seen.values())}))',
  ].join('\n')
  return JSON.parse((await run(['python3', '-c', script, ...distinct])).stdout)
}

async function main() {
  const opts = parseOptions()
  process.stderr.write(`bash bench/setup.sh ${CORPORA.join(' ')}\n`)
  try {
    await runCommand(['bash', path.join(repo, 'bench/setup.sh'), ...CORPORA], { cwd: repo })
  } catch (error) {
    fail(`bench/setup.sh failed (it needs root and the Debian mirror): ${error.message}`)
  }
  if (!cliBuilt()) fail('bin/snapdir or dist/bundle is missing: run npm run build')
  const help = tryRun(snapdirBin, ['stats', '--help'])
  if (help === null) fail('bin/snapdir has no stats command: run npm run build')
  for (const t of ['umoci', 'python3']) if (tryRun('sh', ['-c', `command -v ${t}`]) === null) fail(`${t} is not installed`)

  // Everything goes beside the corpora, on disk, and is deleted only at the end: ext4 here creates
  // files slowly for a while after many were deleted.
  const scratch = fs.mkdtempSync(path.join(benchDir, 'dedup-report-'))
  const cleanup = () => {
    if (opts.keep) process.stderr.write(`kept ${scratch}\n`)
    else fs.rmSync(scratch, { recursive: true, force: true })
  }
  cleanupOnSignals('dedup-report', cleanup)

  const buildBefore = buildFingerprint()
  const notes = []
  let result
  try {
    process.stderr.write('building the images with umoci\n')
    const layouts = await buildImages(scratch)
    const store = path.join(scratch, 'store')
    const pushes = []
    for (const image of IMAGES) {
      const r = await run([snapdirBin, 'push', '--json', '--store', store, '--name', image.name, layouts.get(image.name)])
      const out = JSON.parse(r.stdout)
      pushes.push({ name: image.name, id: out.id, wallMs: r.wallMs, layers: out.layers })
      process.stderr.write(`  pushed ${image.name}: ${out.id.slice(0, 12)} in ${(r.wallMs / 1000).toFixed(1)} s\n`)
    }
    process.stderr.write('snapdir stats --json\n')
    const statsRun = await run([snapdirBin, 'stats', '--json', '--store', store])
    const stats = JSON.parse(statsRun.stdout)
    const allLayers = IMAGES.flatMap((i) => layoutLayers(layouts.get(i.name)))
    process.stderr.write('exact whole-file count (sha256 of every file of the distinct layer tars)\n')
    const exact = await exactFileLevel(allLayers)

    // cross-checks: our own reading of the layouts and tars against stats
    const registryBytes = [...new Map(allLayers.map((l) => [l.digest, l.size])).values()].reduce((a, b) => a + b, 0)
    if (registryBytes !== stats.registry.bytes) notes.push(`registry: the manifests give ${registryBytes} bytes, stats says ${stats.registry.bytes}`)
    if (exact.bytes !== stats.wholeLayer.bytes) notes.push(`whole layer: the tars hold ${exact.bytes} bytes of files, stats says ${stats.wholeLayer.bytes}`)
    if (exact.distinctBytes > stats.wholeFile.bytes) notes.push(`whole file: sha256 finds ${exact.distinctBytes} distinct bytes, more than stats' ${stats.wholeFile.bytes} (an upper bound)`)
    const storeOnDisk = measureTree(store)
    const storeObjects = (dir) => measureTree(path.join(store, dir))
    const chunksOnDisk = storeObjects('chunks')
    // a tree is its root (trees/) and, in format 2, its parts (tree-parts/)
    const partsDir = path.join(store, 'tree-parts')
    const treesOnDisk = { fileBytes: storeObjects('trees').fileBytes + (fs.existsSync(partsDir) ? storeObjects('tree-parts').fileBytes : 0) }
    if (chunksOnDisk.fileBytes !== stats.chunk.chunkStoredBytes + stats.bundles.chunkStoredBytes) {
      notes.push(`the store's chunks/ holds ${chunksOnDisk.fileBytes} bytes; stats counts ${stats.chunk.chunkStoredBytes} (layers) + ${stats.bundles.chunkStoredBytes} (layouts)`)
    }
    if (treesOnDisk.fileBytes !== stats.chunk.treeStoredBytes + stats.bundles.treeStoredBytes) {
      notes.push(`the store's trees/ and tree-parts/ hold ${treesOnDisk.fileBytes} bytes; stats counts ${stats.chunk.treeStoredBytes} (layers) + ${stats.bundles.treeStoredBytes} (layouts)`)
    }

    result = {
      schema: 1,
      date: new Date().toISOString(),
      machine: { ...hostInfo(), fsType: fsTypeAt(benchDir), scratchDir: benchDir, snapdirCommit: snapdirCommit(), umoci: tryRun('umoci', ['--version']) },
      corpora: Object.fromEntries(CORPORA.map((c) => [c, corpusMarker(path.join(benchDir, c))])),
      images: IMAGES.map((image, i) => ({ ...image, layout: layoutLayers(layouts.get(image.name)).map(({ blob: _, ...l }) => l), push: pushes[i] })),
      stats,
      statsWallMs: statsRun.wallMs,
      exactWholeFile: exact,
      store: { files: storeOnDisk.files, fileBytes: storeOnDisk.fileBytes, chunks: chunksOnDisk, trees: treesOnDisk },
      build: null,
      notes,
    }
  } finally {
    cleanup()
  }
  result.build = buildFingerprint()
  const changed = buildChangedNote(buildBefore, result.build)
  if (changed) notes.push(changed)
  writeResult(opts.out, result, report)
  fs.writeFileSync(opts.out.replace(/\.json$/, '') + '.txt', `${report(result)}\n`)
}

// ---------------------------------------------------------------------------------------------
// Report

const mb = (x, digits = 1) => fmt(x / MB, digits)

function report(r) {
  const s = r.stats
  const reg = s.registry.bytes
  const ratio = (x) => fmt(x / reg, 3)
  const lines = []
  lines.push(`dedup report, ${r.date}; MB = 10^6 bytes`)
  lines.push('')
  lines.push(table(
    ['image', 'what', 'layers', 'layer blobs MB', 'content MB'],
    s.images.map((img, i) => [img.name ?? '-', r.images[i]?.what ?? '', img.layers, mb(img.layerBlobBytes), mb(img.contentBytes)]),
    2,
  ))
  lines.push('')
  const rows = [
    ['registry: distinct layer blobs (by digest), gzip', `${s.registry.layers} layers`, '-', mb(reg), ratio(reg)],
    ['whole layer: distinct diff_ids', `${s.wholeLayer.layers} layers`, mb(s.wholeLayer.bytes), `~${mb(s.wholeLayer.storedEstimate)}`, ratio(s.wholeLayer.storedEstimate)],
    ['whole file: distinct chunk lists', `${fmtInt(s.wholeFile.files)} files`, mb(s.wholeFile.bytes), `~${mb(s.wholeFile.storedEstimate)}`, ratio(s.wholeFile.storedEstimate)],
    ['  (exact: distinct sha256 of the tar files)', `${fmtInt(r.exactWholeFile.distinctFiles)} files`, mb(r.exactWholeFile.distinctBytes), '', ''],
    ['chunk: distinct chunks + layer trees (snapdir)', `${fmtInt(s.chunk.chunks)} chunks`, mb(s.chunk.rawBytes + s.chunk.inlineBytes), mb(s.chunk.storedBytes), ratio(s.chunk.storedBytes)],
  ]
  lines.push(table(['level', 'distinct', 'content MB', 'stored MB', 'stored/registry'], rows, 2))
  lines.push('')
  lines.push(`chunk level: ${mb(s.chunk.chunkStoredBytes)} MB of chunks (${mb(s.chunk.rawBytes)} MB raw) + ${mb(s.chunk.treeStoredBytes, 2)} MB of ${s.chunk.trees} layer trees (${mb(s.chunk.inlineBytes, 2)} MB of small files inline, each tree its own copy; ${mb(s.wholeFile.inlineBytes, 2)} MB distinct)`)
  lines.push('~ estimates: each file at its share of the stored (zstd -1) chunks it reads; whole layer and whole file')
  lines.push('  are what a store deduplicating only at that level would hold, compressed as snapdir compresses')
  lines.push(`not in any level: the byte-exact layouts push stores too, ${mb(s.bundles.chunkStoredBytes)} MB of chunks no layer uses + ${mb(s.bundles.treeStoredBytes, 2)} MB of trees;`)
  lines.push(`  the whole store on disk: ${mb(r.store.fileBytes)} MB in ${fmtInt(r.store.files)} files`)
  lines.push(`snapdir stats took ${fmt(r.statsWallMs / 1000)} s; pushes: ${r.images.map((i) => `${i.name} ${fmt(i.push.wallMs / 1000)} s`).join(', ')}`)
  for (const n of r.notes) lines.push(`warning: ${n}`)
  return lines.join('\n')
}

main().catch((error) => fail(error.stack ?? String(error)))
