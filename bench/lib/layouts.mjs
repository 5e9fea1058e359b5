// OCI image layouts for the benchmarks that push images (dedup-report, lazy-start): built from the
// corpora with umoci, the reference tool, and read back (index -> manifest -> config) to name their
// layers. image-spec: https://github.com/opencontainers/image-spec/blob/main/image-layout.md

import fs from 'node:fs'
import path from 'node:path'
import { benchDir, corpusMarker, repo, runCommand } from './common.mjs'

/** The one tag every benchmark layout has. */
export const TAG = 'latest'

const run = (argv) => runCommand(argv, { cwd: repo })

/**
 * Builds the OCI layout `layout` with umoci, one layer per corpus in `corpora` (bottom first): each
 * layer holds what it takes to turn the rootfs into that corpus (`umoci repack --refresh-bundle`
 * diffs against the layer before). `on`: an existing layout copied first, so its layers are the
 * very same blobs and `corpora` are stacked on top. `bundle`: umoci's scratch bundle (left for the caller to
 * keep or remove). Owners, modes, times, hardlinks and device nodes are kept (cp -a), hence root.
 */
export async function buildLayout({ layout, bundle, corpora, on = null }) {
  fs.mkdirSync(path.dirname(layout), { recursive: true })
  fs.mkdirSync(path.dirname(bundle), { recursive: true })
  if (on) {
    await run(['cp', '-a', on, layout])
  } else {
    await run(['umoci', 'init', '--layout', layout])
    await run(['umoci', 'new', '--image', `${layout}:${TAG}`])
  }
  await run(['umoci', 'unpack', '--image', `${layout}:${TAG}`, bundle])
  const rootfs = path.join(bundle, 'rootfs')
  for (const corpus of corpora) {
    await run(['find', rootfs, '-mindepth', '1', '-delete'])
    await run(['cp', '-a', `${corpus}/.`, `${rootfs}/`])
    await run(['umoci', 'repack', '--refresh-bundle', '--image', `${layout}:${TAG}`, bundle])
  }
  await run(['umoci', 'gc', '--layout', layout])
}

/**
 * The layers of a layout's only image, bottom first: { digest, size (compressed, as a registry
 * sends it), mediaType, diffId, blob (its file) }.
 */
export function layoutLayers(layout) {
  const blob = (digest) => path.join(layout, 'blobs', ...digest.split(':'))
  const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'))
  const index = readJson(path.join(layout, 'index.json'))
  if (index.manifests.length !== 1) throw new Error(`${layout}: expected one image in index.json, found ${index.manifests.length}`)
  const manifest = readJson(blob(index.manifests[0].digest))
  const config = readJson(blob(manifest.config.digest))
  return manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType, diffId: config.rootfs.diff_ids[i], blob: blob(l.digest) }))
}

/**
 * The python image of the lazy-start benchmarks: `corpus` (debian-rootfs) as one umoci layer, built
 * once as $SNAPDIR_BENCH_DIR/lazy-start-layout and reused while the corpus is the same build (its
 * setup.sh marker is copied beside the layout): umoci takes a minute and its gzip output is not
 * what is measured.
 */
export async function pythonImageLayout(corpus) {
  const layout = path.join(benchDir, 'lazy-start-layout')
  const marker = `${layout}.complete`
  const want = corpusMarker(corpus)
  if (fs.existsSync(layout) && fs.existsSync(marker) && fs.readFileSync(marker, 'utf8') === want) return layout
  process.stderr.write(`building ${layout} with umoci\n`)
  const partial = `${layout}.partial`
  const bundle = `${layout}.bundle`
  for (const p of [layout, marker, partial, bundle]) fs.rmSync(p, { recursive: true, force: true })
  await buildLayout({ layout: partial, bundle, corpora: [corpus] })
  fs.rmSync(bundle, { recursive: true, force: true })
  fs.renameSync(partial, layout)
  fs.writeFileSync(marker, want)
  return layout
}
