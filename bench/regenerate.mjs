#!/usr/bin/env node
// Regeneration speed (issue 14, "Must show: regeneration speed, per producer, in MB/s of blob bytes on
// this 2-core machine: target >= 125 MB/s"): how fast a store gives back layer blobs it keeps as
// recipes, per producer, in MB (10^6 bytes) of blob per second of wall time and per CPU second:
//   umoci    klauspost pgzip, 256 KiB blocks      (image-store's umoci base image)
//   skopeo   klauspost pgzip, 1 MiB blocks        (image-store's skopeo base image)
//   docker   Go compress/gzip level 6             (image-store's docker base image)
//   tar      uncompressed                          (the umoci base image as a Docker archive, skopeo copy)
// Each base image is pushed into a file store of its own (Go layers get restart points,
// docs/go-flate.md; the tar image's layer is the umoci one uncompressed: skopeo copy into a
// docker-archive writes layer tars, where an OCI layout keeps the gzip blobs as they are), then:
//   regenerate  every recipe regenerated once through oci/recipe-reader (a child process over dist/)
//   pull file   snapdir pull --store DIR --id ID to a directory
//   pull S3     the same from s3rver on loopback (the store synced there first)
// The machine is shared: the per-CPU-second figures say what the work costs whatever else runs, and
// each row notes what other processes used meanwhile.
//
//   node bench/regenerate.mjs [--keep] [--out FILE]
// Images: $SNAPDIR_BENCH_DIR/image-store-images (bash bench/setup.sh --images, then bench/image-store.mjs
// builds them once). Writes bench/results/regenerate.json and .txt.

import fs from 'node:fs'
import path from 'node:path'
import {
  MB, benchDir, cleanupOnSignals, contention, defaultOut, failer, fmt, hostInfo, measureTree, otherActivity, parseCommandLine, privateEnv, repo,
  runCommand, snapdirBin, snapdirCommit, table, writeResult,
} from './lib/common.mjs'
import { TAG, layoutLayers } from './lib/layouts.mjs'
import { regenerateRecipes, storedRecipes } from './lib/regeneration.mjs'
import { S3_ENV, startS3rver } from './lib/s3.mjs'

const TARGET_MBPS = 125
const BUCKET = 'bench'
const images = path.join(benchDir, 'image-store-images')
const PRODUCERS = [
  { name: 'umoci', what: 'klauspost pgzip, 256 KiB blocks', layout: () => path.join(images, 'umoci', 'base') },
  { name: 'skopeo', what: 'klauspost pgzip, 1 MiB blocks', layout: () => path.join(images, 'skopeo', 'base') },
  { name: 'docker', what: 'Go compress/gzip level 6', layout: () => path.join(images, 'docker', 'base') },
  { name: 'tar', what: 'uncompressed tar (Docker archive)', layout: (scratch) => path.join(scratch, 'tar-base.tar') },
]

const usage = `usage: node bench/regenerate.mjs [options]

  --keep      keep the scratch directory (store, s3rver's directory, pulls)
  --out FILE  JSON report (default bench/results/regenerate.json; the table goes beside it as .txt)
  -h, --help  this text

Images from ${images} (built by bench/image-store.mjs after bash bench/setup.sh --images).`

const fail = failer('regenerate')
const progress = (text) => process.stderr.write(`${text}\n`)

function parseOptions() {
  const values = parseCommandLine({ keep: { type: 'boolean' }, out: { type: 'string', default: defaultOut('regenerate') } }, usage, fail)
  return { keep: values.keep ?? false, out: path.resolve(values.out) }
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0)

/** A timed command: { wallMs, cpuS, otherCpuS, stealS }. */
async function timed(argv, env) {
  const activity = otherActivity()
  const r = await runCommand(argv, { env, cwd: repo, rusage: true })
  const cpuS = r.userS === null ? null : r.userS + r.sysS
  return { wallMs: r.wallMs, cpuS, ...activity(cpuS), stdout: r.stdout }
}

/** MB/s of `bytes` over a sample, wall and per CPU second. */
const speeds = (bytes, s) => ({ mbPerS: bytes / MB / (s.wallMs / 1000), mbPerCpuS: s.cpuS ? bytes / MB / s.cpuS : null })

async function main() {
  const options = parseOptions()
  for (const p of PRODUCERS.slice(0, 3)) if (!fs.existsSync(path.join(p.layout(), 'index.json'))) fail(`${p.layout()} is missing: run bash bench/setup.sh --images, then node bench/image-store.mjs once`)
  fs.mkdirSync(benchDir, { recursive: true })
  const scratch = fs.mkdtempSync(path.join(benchDir, 'regenerate-'))
  let server = null
  const cleanup = () => {
    if (!options.keep) fs.rmSync(scratch, { recursive: true, force: true })
  }
  cleanupOnSignals('regenerate', cleanup)
  const env = privateEnv(path.join(scratch, 'home'))
  try {
    progress('the uncompressed image: the umoci base copied into a Docker archive')
    await runCommand(['skopeo', 'copy', '--quiet', `oci:${PRODUCERS[0].layout()}:${TAG}`, `docker-archive:${PRODUCERS[3].layout(scratch)}:base:${TAG}`])
    const rows = []
    for (const p of PRODUCERS) {
      const layout = p.layout(scratch)
      const store = path.join(scratch, `store-${p.name}`)
      const push = await timed([snapdirBin, 'push', '--json', '--store', store, '--name', p.name, layout], env)
      const id = JSON.parse(push.stdout.trim().split('\n').at(-1)).id
      const ids = storedRecipes(store)
      const archive = fs.statSync(layout).isFile()
      const layers = archive ? [] : layoutLayers(layout)
      progress(`${p.name}: pushed in ${fmt(push.wallMs / 1000)} s, ${ids.length} recipes`)
      if (ids.length === 0) fail(`${p.name}: the push kept no recipe, nothing to regenerate`)
      // what a pull writes: the layout's files, or the archive's (its size: a tar's framing around them)
      const layoutBytes = archive ? fs.statSync(layout).size : measureTree(layout).fileBytes
      rows.push({ ...p, layout, store, id, recipes: ids, layers: layers.map(({ blob: _, ...l }) => l), layoutBytes, push: { wallMs: push.wallMs, cpuS: push.cpuS } })
    }

    progress('regenerating every recipe once, producer by producer')
    for (const r of rows) {
      const regen = await regenerateRecipes({ store: r.store, ids: r.recipes, env })
      if (regen.reason) fail(regen.reason)
      const bytes = sum(regen.blobs.map((b) => b.bytes))
      r.regen = { blobs: regen.blobs, bytes, sample: regen.sample, ...speeds(bytes, { wallMs: sum(regen.blobs.map((b) => b.ms)), cpuS: sum(regen.blobs.map((b) => b.cpuMs)) / 1000 }) }
      progress(`  ${r.name}: ${fmt(r.regen.mbPerS)} MB/s, ${fmt(r.regen.mbPerCpuS)} MB per CPU s`)
    }

    progress('pull to a directory from the file store')
    for (const r of rows) {
      const dir = path.join(scratch, 'pulls', `${r.name}-file`)
      fs.mkdirSync(path.dirname(dir), { recursive: true })
      const s = await timed([snapdirBin, 'pull', '--store', r.store, '--id', r.id, dir], env)
      r.pullFile = { sample: s, ...speeds(r.layoutBytes, s) }
      fs.rmSync(dir, { recursive: true, force: true })
      progress(`  ${r.name}: ${fmt(r.pullFile.mbPerS)} MB/s, ${fmt(r.pullFile.mbPerCpuS)} MB per CPU s`)
    }

    progress('pull to a directory from S3 (s3rver on loopback)')
    server = await startS3rver({ directory: path.join(scratch, 's3rver'), bucket: BUCKET })
    const s3env = { ...env, ...S3_ENV, AWS_ENDPOINT_URL: server.endpoint }
    for (const r of rows) {
      const s3 = `s3://${BUCKET}/${r.name}`
      await runCommand([snapdirBin, 'sync', '--all', '--from', r.store, '--to', s3], { env: s3env, cwd: repo })
      const dir = path.join(scratch, 'pulls', `${r.name}-s3`)
      const s = await timed([snapdirBin, 'pull', '--store', s3, '--id', r.id, dir], s3env)
      r.pullS3 = { sample: s, ...speeds(r.layoutBytes, s) }
      fs.rmSync(dir, { recursive: true, force: true })
      progress(`  ${r.name}: ${fmt(r.pullS3.mbPerS)} MB/s, ${fmt(r.pullS3.mbPerCpuS)} MB per CPU s`)
    }

    const samples = (key) => rows.map((r) => r[key].sample)
    const result = {
      bench: 'regenerate',
      date: new Date().toISOString(),
      snapdir: snapdirCommit(),
      host: hostInfo(),
      targetMBps: TARGET_MBPS,
      producers: rows.map(({ layout: _, store: __, ...r }) => ({ ...r, regen: { ...r.regen }, pullFile: strip(r.pullFile), pullS3: strip(r.pullS3) })),
      warnings: [contention('regeneration', samples('regen')), contention('pull from the file store', samples('pullFile')), contention('pull from S3', samples('pullS3'))].filter(Boolean),
    }
    writeResult(options.out, result, (res) => {
      const text = report(res)
      fs.writeFileSync(options.out.replace(/\.json$/, '.txt'), `${text}\n`)
      return text
    })
  } finally {
    await server?.close()
    cleanup()
  }
}

const strip = ({ sample: { stdout: _, ...sample }, ...r }) => ({ ...r, sample })

function load(sample) {
  const capacity = (sample.wallMs / 1000) * hostInfo().cores
  return sample.otherCpuS === null || sample.otherCpuS === undefined ? '-' : `${fmt((sample.otherCpuS / capacity) * 100, 0)}%`
}

function report(r) {
  const cell = (x) => `${fmt(x.mbPerS, 1)} (${fmt(x.mbPerCpuS, 1)}/CPU s)${x.mbPerS >= r.targetMBps ? '' : ' !'}`
  const lines = [`regeneration speed (issue 14), ${r.date}; snapdir ${r.snapdir?.slice(0, 7)}; ${r.host.cores} CPUs; MB = 10^6 bytes of blob, wall (per CPU second)`, '']
  lines.push(
    table(
      ['producer', 'compression', 'blob MB', 'restart pts', 'regenerate MB/s', 'others', 'pull file MB/s', 'others', 'pull S3 MB/s', 'others'],
      r.producers.map((p) => [
        p.name, p.what, fmt(p.regen.bytes / MB, 1), String(sum(p.regen.blobs.map((b) => b.compression.restarts ?? 0))),
        cell(p.regen), load(p.regen.sample), cell(p.pullFile), load(p.pullFile.sample), cell(p.pullS3), load(p.pullS3.sample),
      ]),
      2,
    ),
  )
  lines.push(`target: ${r.targetMBps} MB/s of blob; ! marks a miss. "others": CPU other processes used meanwhile, as a share of the machine.`)
  for (const w of r.warnings) lines.push(`warning: ${w}`)
  return lines.join('\n')
}

main().catch((error) => fail(error.stack ?? String(error)))
