import type { Command } from '@commander-js/extra-typings'
import type { DedupStats } from '../oci/dedup-stats.js'
import { parseSnapshotRef, resolveSnapshot } from '../store/resolve-snapshot.js'
import { parsePlatform } from '../oci/platform.js'
import { SnapdirError } from '../util/errors.js'
import { integerOption } from './numbers.js'
import { progressBar } from './progress.js'
import { action } from './run-command.js'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'

export function registerStats(program: Command): void {
  program
    .command('stats')
    .description(
      'what the images of snapshots ID... (default: every image push the store records) cost stored, side by side:\n' +
        'in a registry (distinct layer blobs), deduplicated by whole layer, by whole file, and by chunk (what snapdir stores)',
    )
    .argument('[ids...]', 'snapshots of pushed images: IDs, unique prefixes of at least 8 hex digits, or image NAME:TAGs the store records')
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option('--platform <os/arch[/variant]>', "the image of a multi-platform index to count (default: this machine's)")
    .option('--jobs <n>', 'store requests in flight at most', '16')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (ids: string[], opts: { store: string; s3Endpoint?: string; platform?: string; jobs: string; json?: true }) => {
        const { dedupStats, imageSnapshotIds } = await import('../oci/dedup-stats.js')
        const given = ids.map(parseSnapshotRef)
        const jobs = integerOption('--jobs', opts.jobs, 1, 1024)
        const platform = opts.platform === undefined ? undefined : parsePlatform(opts.platform)
        const store = storeFromOptions(opts)
        const bar = progressBar('items')
        try {
          await store.open()
          const chosen: string[] = []
          for (const ref of given) chosen.push(await resolveSnapshot(store, ref))
          if (given.length === 0) chosen.push(...(await imageSnapshotIds(store)))
          if (chosen.length === 0) throw new SnapdirError('ERR_IMAGE', `${store.url} records no push of an image layout; push one, or name snapshot IDs`)
          const stats = await dedupStats(store, chosen, {
            jobs,
            ...(platform !== undefined ? { platform } : {}),
            onPlan: (n) => bar.start(n, 'stats'),
            onObject: () => bar.add(1),
          })
          bar.stop()
          process.stdout.write(opts.json ? JSON.stringify(stats) + '\n' : formatStats(stats))
        } finally {
          bar.stop()
          await store.close()
        }
      }),
    )
}

const count = (n: number): string => n.toLocaleString('en-US')
const plural = (n: number, word: string): string => `${count(n)} ${word}${n === 1 ? '' : 's'}`
const ratio = (n: number, of: number): string => (of > 0 ? (n / of).toFixed(3) : '-')

/** Plain-text columns: the first left-aligned, the rest right-aligned. */
function columns(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n'
}

/** The readable report: the images, then one line per level with its bytes and its ratio to the registry. */
export function formatStats(s: DedupStats): string {
  const images = [
    ['image', 'snapshot', 'layers', 'layer blob bytes', 'content bytes'],
    ...s.images.map((i) => [
      [i.name, i.ref].filter((x) => x !== null).join(' ') || i.manifest.slice(0, 19),
      `${i.id.slice(0, 16)}`,
      count(i.layers),
      count(i.layerBlobBytes),
      count(i.contentBytes),
    ]),
  ]
  const reg = s.registry.bytes
  const levels = [
    ['level', 'distinct', 'content bytes', 'stored bytes', 'stored/registry'],
    ['registry (layer blobs by digest)', plural(s.registry.layers, 'layer'), '', count(reg), ratio(reg, reg)],
    ['whole layer (by diff_id)', plural(s.wholeLayer.layers, 'layer'), count(s.wholeLayer.bytes), `~${count(s.wholeLayer.storedEstimate)}`, ratio(s.wholeLayer.storedEstimate, reg)],
    ['whole file (by content)', plural(s.wholeFile.files, 'file'), count(s.wholeFile.bytes), `~${count(s.wholeFile.storedEstimate)}`, ratio(s.wholeFile.storedEstimate, reg)],
    ['chunk (snapdir)', plural(s.chunk.chunks, 'chunk'), count(s.chunk.rawBytes + s.chunk.inlineBytes), count(s.chunk.storedBytes), ratio(s.chunk.storedBytes, reg)],
  ]
  return [
    columns(images),
    columns(levels),
    `chunk level: ${count(s.chunk.chunkStoredBytes)} bytes of chunks (${count(s.chunk.rawBytes)} raw) and ${count(s.chunk.treeStoredBytes)} of ${plural(s.chunk.trees, 'layer tree')} ` +
      // only format 1 trees (written before format 2) hold small files inline
      (s.chunk.inlineBytes > 0 ? `(with ${count(s.chunk.inlineBytes)} bytes of small files inline, each tree its own copy; ${count(s.wholeFile.inlineBytes)} distinct)` : '(root and parts)') + '\n',
    '~ estimates: each file counted at its share of the stored chunks it reads (inline files: of their tree);\n' +
      '  whole file is an upper bound (a packed small file with other neighbours has other chunks, so counts again)\n',
    `not in any level: the byte-exact layouts, ${count(s.bundles.treeStoredBytes)} bytes of ${plural(s.bundles.trees, 'tree')} and ` +
      `${count(s.bundles.chunkStoredBytes)} of ${plural(s.bundles.chunks, 'chunk')} no layer uses, and ` +
      `${count(s.blobs.recipeStoredBytes + s.blobs.framingStoredBytes)} bytes of layer recipes and their tar framing\n`,
    formatBlobs(s),
  ].join('\n')
}

/**
 * Which layer blobs are recipes (given back from their layer's files) and which are raw, and why; then
 * the hit rate per producer family.
 */
function formatBlobs(s: DedupStats): string {
  const b = s.blobs
  const names = new Map(b.producers.map((p) => [p.producer, p.name]))
  const lines = [
    `layer blobs: ${plural(b.recipes, 'recipe')} (${count(b.recipeStoredBytes)} bytes, and ${count(b.framingStoredBytes)} of tar framing in ` +
      `${plural(b.framingChunks, 'chunk')}), ${count(b.raw.length)} raw (${count(b.raw.reduce((a, r) => a + r.bytes, 0))} bytes)`,
    ...b.raw.map((r) => `  raw ${r.digest} (${count(r.bytes)} bytes, by its header ${names.get(r.producer) ?? r.producer}): ${r.reason}`),
  ]
  const percent = (n: number, of: number): string => (of > 0 ? `${Math.round((100 * n) / of)}%` : '-')
  const producers = [
    ['producer', 'blobs', 'recipes', 'raw', 'recipes/blobs', 'blob bytes', 'as recipes'],
    ...b.producers.map((p) => [p.name, count(p.blobs), count(p.recipes), count(p.raw), percent(p.recipes, p.blobs), count(p.bytes), percent(p.recipeBytes, p.bytes)]),
  ]
  return [
    lines.join('\n') + '\n',
    'layer blobs by producer (a recipe by its compressor; a raw blob by what its gzip or zstd header points at):\n' + columns(producers),
  ].join('\n')
}
