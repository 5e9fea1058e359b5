#!/usr/bin/env node
// gc: what issue 15 must show. Five related Debian images (image-store's corpus: umoci's base, python
// and rebuilt-base images, docker's base and python images) in one store; two of them removed with
// `snapdir rm` (umoci's rebuilt-base image and docker's python image); then `snapdir gc --grace 0`:
// objects and bytes freed per kind, and how long it took, on a file store and on an S3 store (s3rver
// on loopback, filled by `snapdir sync --all` from the file store). After gc, every remaining image
// verifies whole and a second gc frees nothing.
//
//   node bench/gc.mjs [--keep] [--out FILE]   (the images: bash bench/setup.sh --images, as image-store.mjs)
//
// Writes bench/results/gc.json and gc.txt. Counts are exact; the times depend on the machine and
// on what else it runs (reported as contention when others took more than 5% of it).

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {
  MB, benchDir, cleanupOnSignals, cliBuilt, contention, defaultOut, failer, fmt, fmtInt, hostInfo, otherActivity, parseCommandLine, runCommand,
  snapdirBin, snapdirCommit, table, writeResult,
} from './lib/common.mjs'
import { S3_ENV, startS3rver } from './lib/s3.mjs'

const IMAGES = ['umoci/base', 'umoci/python', 'umoci/rebuilt', 'docker/base', 'docker/python']
const REMOVED = ['umoci/rebuilt', 'docker/python']
const KINDS = ['revision', 'layer-ref', 'tree', 'recipe', 'tree-part', 'chunk', 'temporary', 'lease']
const BUCKET = 'gc-bench'

const usage = `usage: node bench/gc.mjs [options]

  --keep      keep the scratch directory (stores, s3rver's directory) for inspection
  --out FILE  JSON report (default bench/results/gc.json; the table goes beside it as .txt)
  -h, --help  this text

Images: ${IMAGES.join(', ')} from $SNAPDIR_BENCH_DIR/image-store-images (default
/var/tmp/snapdir-bench), built by bash bench/setup.sh --images (or node bench/image-store.mjs).`

const fail = failer('gc')

// s3rver pages a listing of more than 1000 keys with a continuation token it encrypts with DES,
// which Node 20's OpenSSL 3 only has in its legacy provider: without it every such LIST is a 500
if (!process.execArgv.includes('--openssl-legacy-provider')) {
  const { spawnSync } = await import('node:child_process')
  const r = spawnSync(process.execPath, ['--openssl-legacy-provider', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' })
  process.exit(r.status ?? 1)
}

async function main() {
  const values = parseCommandLine({ keep: { type: 'boolean' }, out: { type: 'string', default: defaultOut('gc') } }, usage, fail)
  const out = path.resolve(values.out)
  const imagesDir = path.join(benchDir, 'image-store-images')
  for (const image of IMAGES) if (!fs.existsSync(path.join(imagesDir, image, 'index.json'))) fail(`no image ${image} under ${imagesDir}: run bash bench/setup.sh --images`)
  if (!cliBuilt()) fail('bin/snapdir is not built: run npm run build')
  const scratch = fs.mkdtempSync(path.join(benchDir, 'gc-'))
  const cleanup = () => {
    if (!values.keep) fs.rmSync(scratch, { recursive: true, force: true })
  }
  cleanupOnSignals('gc', cleanup)
  const s3 = await startS3rver({ directory: path.join(scratch, 's3rver'), bucket: BUCKET })
  const env = { ...process.env, ...S3_ENV, AWS_ENDPOINT_URL: s3.endpoint }
  const snapdir = (args) => runCommand([process.execPath, snapdirBin, ...args], { env, rusage: true })
  try {
    const fileStore = path.join(scratch, 'store')
    const s3Store = `s3://${BUCKET}/store`
    const ids = {}
    for (const image of IMAGES) {
      process.stderr.write(`gc: push ${image}\n`)
      ids[image] = (await snapdir(['push', '--store', fileStore, '--name', image, path.join(imagesDir, image)])).stdout.trim()
    }
    process.stderr.write('gc: sync --all to S3\n')
    await snapdir(['sync', '--all', '--from', fileStore, '--to', s3Store])
    const stores = []
    for (const [name, store] of [['file', fileStore], ['s3 (s3rver)', s3Store]]) {
      process.stderr.write(`gc: ${name}: rm ${REMOVED.join(', ')}, gc\n`)
      const before = JSON.parse((await snapdir(['gc', '--store', store, '--grace', '0', '--dry-run', '--json'])).stdout)
      await snapdir(['rm', '--store', store, ...REMOVED.map((i) => ids[i])])
      const dry = JSON.parse((await snapdir(['gc', '--store', store, '--grace', '0', '--dry-run', '--json'])).stdout)
      const activity = otherActivity()
      const run = await snapdir(['gc', '--store', store, '--grace', '0', '--json'])
      const sample = { wallMs: run.wallMs, ...activity(run.userS + run.sysS) }
      const report = JSON.parse(run.stdout)
      const again = JSON.parse((await snapdir(['gc', '--store', store, '--grace', '0', '--json'])).stdout)
      const verified = []
      for (const image of IMAGES.filter((i) => !REMOVED.includes(i))) {
        process.stderr.write(`gc: ${name}: verify ${image}\n`)
        await snapdir(['verify', '--store', store, '--id', ids[image]])
        verified.push(image)
      }
      const sameAsDry = KINDS.every((k) => dry.freed[k].objects === report.freed[k].objects && dry.freed[k].bytes === report.freed[k].bytes)
      stores.push({
        name, before: before.live, report, wallS: run.wallMs / 1000, cpuS: run.userS + run.sysS, maxRssKiB: run.maxRssKiB,
        sameAsDryRun: sameAsDry, secondRunFreed: KINDS.reduce((a, k) => a + again.freed[k].objects, 0), verified, sample,
      })
    }
    const result = {
      host: hostInfo(), commit: snapdirCommit(), loadavg: os.loadavg(), images: IMAGES, removed: REMOVED, ids,
      stores: stores.map(({ sample: _sample, ...s }) => s),
      contention: contention('gc', stores.map((s) => s.sample)),
    }
    writeResult(out, result, (r) => {
      const text = render(r)
      fs.writeFileSync(out.replace(/\.json$/, '.txt'), `${text}\n`)
      return text
    })
  } finally {
    await s3.close()
    cleanup()
  }
}

function render(r) {
  const lines = [`gc after rm of ${r.removed.join(' and ')}, of the five images ${r.images.join(', ')} (snapdir ${String(r.commit).slice(0, 12)})`, '']
  for (const s of r.stores) {
    const rows = KINDS.map((k) => [k, fmtInt(s.report.freed[k].objects), fmt(s.report.freed[k].bytes / MB, 2)])
    const total = KINDS.reduce((a, k) => [a[0] + s.report.freed[k].objects, a[1] + s.report.freed[k].bytes], [0, 0])
    rows.push(['total', fmtInt(total[0]), fmt(total[1] / MB, 2)])
    lines.push(`${s.name} store: before rm ${fmtInt(s.before.objects)} objects, ${fmt(s.before.bytes / MB, 1)} MB in use; after gc ${fmtInt(s.report.live.objects)} objects, ${fmt(s.report.live.bytes / MB, 1)} MB`)
    lines.push(table(['freed', 'objects', 'MB'], rows))
    lines.push(`gc took ${fmt(s.wallS, 2)} s wall, ${fmt(s.cpuS, 2)} CPU s, max RSS ${fmtInt(s.maxRssKiB / 1024)} MiB; dry run reported the same: ${s.sameAsDryRun}; ` +
      `a second gc freed ${s.secondRunFreed} objects; verified whole after gc: ${s.verified.join(', ')}`)
    lines.push('')
  }
  lines.push(`load average at the end: ${r.loadavg.map((x) => x.toFixed(2)).join(' ')}${r.contention ? `; ${r.contention}` : ''}`)
  return lines.join('\n')
}

await main()
