// Test trees and their independent description, by the Python tools in test/tools/ (no build needed).
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const TOOLS = path.join(ROOT, 'test', 'tools')

/** Builds the edge-case tree of test/tools/make-edge-tree.py (every entry kind) at dir. */
export function makeEdgeTree(dir: string, variant = 0): void {
  const r = spawnSync('python3', [path.join(TOOLS, 'make-edge-tree.py'), dir, '--variant', String(variant)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`make-edge-tree.py failed: ${r.stderr}`)
}

/** The independent description of a tree (bytes and metadata) by test/tools/tree-manifest.py. */
export function manifest(dir: string): string {
  const r = spawnSync('python3', [path.join(TOOLS, 'tree-manifest.py'), dir], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  if (r.status !== 0) throw new Error(`tree-manifest.py failed: ${r.stderr}`)
  return r.stdout
}
