// Regenerating layer blobs from their recipes, timed, in a child process over dist/ as built (so the
// figures are those of the code under test, not of the benchmark's own process): every recipe named
// goes through oci/recipe-reader's writeRecipeBlob once, its pieces counted and dropped, one after the
// other. Shared by image-store.mjs and regenerate.mjs.

import fs from 'node:fs'
import path from 'node:path'
import { otherActivity, repo, runCommand, tail } from './common.mjs'

const REGEN_SCRIPT = `
import path from 'node:path'
import { pathToFileURL } from 'node:url'
const [dist, storeDir, ...ids] = process.argv.slice(1)
const load = (p) => import(pathToFileURL(path.join(dist, p)).href)
const { storeFromUrl } = await load('store/open-store.js')
const { writeRecipeBlob } = await load('oci/recipe-reader.js')
const store = storeFromUrl(storeDir)
await store.open()
const out = []
for (const id of ids) {
  const t0 = process.hrtime.bigint()
  const c0 = process.cpuUsage()
  let bytes = 0
  const recipe = await writeRecipeBlob(store, id, (piece) => { bytes += piece.length })
  const c = process.cpuUsage(c0)
  const { restarts, ...compression } = recipe.compression
  out.push({ id, digest: recipe.digest, compression: { ...compression, restarts: restarts?.length ?? 0 }, bytes, tarBytes: recipe.tarSize, ms: Number(process.hrtime.bigint() - t0) / 1e6, cpuMs: (c.user + c.system) / 1000 })
}
await store.close()
process.stdout.write(JSON.stringify(out) + '\\n')
`

/** The IDs of the recipes a file store holds (recipes/XX/ID). */
export function storedRecipes(store) {
  const dir = path.join(store, 'recipes')
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir).flatMap((d) => fs.readdirSync(path.join(dir, d)))
}

/**
 * Regeneration of recipes `ids` of file store `store`: { blobs: [{ id, digest, compression, bytes,
 * tarBytes, ms, cpuMs }], sample: { wallMs, cpuS, otherCpuS, stealS } }, or { reason } when there is
 * nothing to measure or it failed.
 */
export async function regenerateRecipes({ store, ids, env = process.env }) {
  if (ids.length === 0) return { reason: 'the store holds no recipes: every layer blob is kept as its chunks' }
  if (!fs.existsSync(path.join(repo, 'dist/oci/recipe-reader.js'))) return { reason: `the store holds ${ids.length} recipes but dist/oci/recipe-reader.js is missing` }
  const activity = otherActivity()
  try {
    const r = await runCommand([process.execPath, '--input-type=module', '-e', REGEN_SCRIPT, path.join(repo, 'dist'), store, ...ids], { env, cwd: repo, rusage: true })
    const blobs = JSON.parse(r.stdout.trim().split('\n').at(-1))
    const cpuS = r.userS === null ? null : r.userS + r.sysS
    return { blobs, sample: { wallMs: r.wallMs, cpuS, ...activity(cpuS) } }
  } catch (error) {
    return { reason: `regenerating through dist/oci/recipe-reader.js failed: ${tail(error.message, 3)}` }
  }
}
