import type { Command } from '@commander-js/extra-typings'
import { parseSnapshotRef, resolveSnapshot } from '../store/resolve-snapshot.js'
import { parsePlatform } from '../oci/platform.js'
import type { SnapshotDiff } from '../snapshot/diff.js'
import type { DiffCounts, PathDiff } from '../snapshot/tree-diff.js'
import { formatBytes, integerOption } from './numbers.js'
import { action } from './run-command.js'
import { ENDPOINT_HELP, STORE_HELP, storeFromOptions } from './store-options.js'

export function registerDiff(program: Command): void {
  program
    .command('diff')
    .description(
      'what changed from snapshot ID1 to ID2: one line per path, A added, D removed, M changed with what changed ' +
        '(type, content, mode, owner, times, xattrs, target, device); for images also per image (manifest, config) and per layer ' +
        '(matched by diff_id); then the counts and what a sync of ID2 to a store holding ID1 would move (objects and bytes)',
    )
    .argument('<id1>', 'the snapshot compared from: its ID, a unique prefix of at least 8 hex digits, or an image NAME:TAG the store records')
    .argument('<id2>', 'the snapshot compared to (the same)')
    .requiredOption('--store <url>', STORE_HELP)
    .option('--s3-endpoint <url>', ENDPOINT_HELP)
    .option('--platform <os/arch[/variant]>', "images: the image of a multi-platform index to compare (default: this machine's)")
    .option('--jobs <n>', 'store requests in flight at most', '16')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (id1: string, id2: string, opts: { store: string; s3Endpoint?: string; platform?: string; jobs: string; json?: true }) => {
        const { diffSnapshots } = await import('../snapshot/diff.js')
        const refs = [parseSnapshotRef(id1), parseSnapshotRef(id2)] as const
        const jobs = integerOption('--jobs', opts.jobs, 1, 1024)
        const platform = opts.platform === undefined ? undefined : parsePlatform(opts.platform)
        const store = storeFromOptions(opts)
        try {
          const from = await resolveSnapshot(store, refs[0])
          const to = await resolveSnapshot(store, refs[1])
          const d = await diffSnapshots(store, from, to, { jobs, ...(platform ? { platform } : {}) })
          process.stdout.write(opts.json ? JSON.stringify(d) + '\n' : formatDiff(d))
        } finally {
          await store.close()
        }
      }),
    )
}

function formatDiff(d: SnapshotDiff): string {
  const lines: string[] = []
  const paths = (list: PathDiff[], indent: string) => {
    for (const p of list) lines.push(`${indent}${p.status}  ${p.path}${describe(p)}`)
  }
  if (d.images.length === 0) paths(d.tree.paths, '')
  else {
    lines.push(`bundle (the image layout's files): ${counts(d.tree.counts)}`)
    paths(d.tree.paths, '    ')
    for (const img of d.images) {
      const name = img.ref ?? 'image'
      if (img.manifest[0] === null) lines.push(`${name}: added (manifest ${img.manifest[1]})`)
      else if (img.manifest[1] === null) lines.push(`${name}: removed (manifest ${img.manifest[0]})`)
      else if (img.manifest[0] === img.manifest[1]) lines.push(`${name}: manifest ${img.manifest[1]} unchanged`)
      else {
        const fields = img.configFields.length > 0 ? ` (${img.configFields.join(', ')})` : ''
        const config = img.config[0] === img.config[1] ? `config unchanged` : `config ${img.config[0]} -> ${img.config[1]}${fields}`
        lines.push(`${name}: manifest ${img.manifest[0]} -> ${img.manifest[1]}, ${config}`)
      }
      for (const l of img.layers) {
        const digest = l.status === 'changed' ? `${l.from!.diffId} -> ${l.to!.diffId}` : (l.to ?? l.from)!.diffId
        lines.push(`  layer ${l.index + 1} ${digest}: ${l.status}${l.diff ? `, ${counts(l.diff.counts)}` : ''}`)
        if (l.diff) paths(l.diff.paths, '    ')
      }
    }
  }
  const s = d.sync
  lines.push(`${counts(d.counts)}${kinds(d.counts)}`)
  lines.push(
    `a sync of ${d.to.slice(0, 16)}… to a store holding ${d.from.slice(0, 16)}… moves ${s.objects} objects, ${s.bytes} bytes (${formatBytes(s.bytes)}): ` +
      `chunks ${s.chunks.objects} (${s.chunks.bytes} bytes), tree parts ${s.treeParts.objects} (${s.treeParts.bytes}), ` +
      `trees ${s.trees.objects} (${s.trees.bytes}), recipes ${s.recipes.objects} (${s.recipes.bytes})` +
      (s.missingChunks > 0 ? `; ${s.missingChunks} chunks it names are missing from the store` : ''),
  )
  return lines.join('\n') + '\n'
}

function describe(p: PathDiff): string {
  if (p.status !== 'M') return p.size ? `  (${p.size[0] ?? p.size[1]} bytes)` : ''
  return '  ' + p.changes.map((k) => (k === 'content' && p.size ? `content (${p.size[0]} -> ${p.size[1]} bytes)` : k)).join(', ')
}

function counts(c: DiffCounts): string {
  return `${c.added} added, ${c.removed} removed, ${c.changed} changed`
}

function kinds(c: DiffCounts): string {
  const list = Object.entries(c.kinds).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`)
  return list.length > 0 ? ` (${list.join(', ')})` : ''
}
