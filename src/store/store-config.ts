// The store's `config`: format version and chunker parameters, fixed when the store is created so
// every push to it cuts the same way (and the same directory always gets the same ID there).
import { DEFAULT_CHUNKER, validateChunkerParams, type ChunkerParams } from '../chunk/params.js'
import { SnapdirError } from '../util/errors.js'
import type { ReadStore, Store } from './store.js'

/**
 * 2: trees in format 2 (format/tree.ts: a root naming parts, no file content inside), so chunker
 * `inlineMax` is always 0. A store of version 1 is read as it is and upgraded by the next push or
 * sync to it: its format 1 trees stay readable, new trees are format 2.
 */
export const STORE_FORMAT = 2
const KEY = 'config'

interface ConfigFile {
  format: 'snapdir-store'
  version: number
  chunker: { algorithm: 'fastcdc2020'; min: number; avg: number; max: number; level: number; seed: string; inlineMax?: number; packMax?: number }
}

/** Format 2 trees hold no file content: every file of new trees is cut into chunks, small ones packed. */
function format2(p: ChunkerParams): ChunkerParams {
  return (p.inlineMax ?? 0) === 0 ? p : { ...p, inlineMax: 0 }
}

function encode(p: ChunkerParams): Buffer {
  const c: ConfigFile = {
    format: 'snapdir-store',
    version: STORE_FORMAT,
    chunker: { algorithm: 'fastcdc2020', min: p.min, avg: p.avg, max: p.max, level: p.level, seed: p.seed.toString(), inlineMax: 0, packMax: p.packMax ?? 0 },
  }
  return Buffer.from(JSON.stringify(c, null, 2) + '\n')
}

function decode(store: ReadStore, bytes: Buffer): { version: number; params: ChunkerParams } {
  const bad = (why: string): never => {
    throw new SnapdirError('ERR_STORE_CONFIG', `store ${store.url}: config ${why}`)
  }
  let c: ConfigFile
  try {
    c = JSON.parse(bytes.toString('utf8')) as ConfigFile
  } catch {
    return bad('is not JSON')
  }
  if (c.format !== 'snapdir-store') return bad('is not a snapdir store config')
  if (c.version !== 1 && c.version !== STORE_FORMAT) {
    return bad(`has version ${String(c.version)}; this snapdir reads versions 1 to ${STORE_FORMAT} (a newer snapdir wrote it)`)
  }
  if (c.chunker?.algorithm !== 'fastcdc2020') return bad('names an unknown chunker')
  const ch = c.chunker
  const params = validateChunkerParams({ min: ch.min, avg: ch.avg, max: ch.max, level: ch.level, seed: BigInt(ch.seed), inlineMax: ch.inlineMax ?? 0, packMax: ch.packMax ?? 0 })
  // what a push cuts with now, whatever version 1 said: the trees it writes are format 2
  return { version: c.version, params: format2(params) }
}

/** The chunker parameters a push to the store cuts with, or undefined for a store nothing was pushed to yet. */
export async function readStoreConfig(store: ReadStore): Promise<ChunkerParams | undefined> {
  return (await readConfig(store))?.params
}

async function readConfig(store: ReadStore): Promise<{ version: number; params: ChunkerParams } | undefined> {
  // one request, not has() then get(): commands that only read wait on it before anything else
  let stored: Buffer
  try {
    stored = await store.get(KEY)
  } catch (err) {
    if (err instanceof SnapdirError && err.code === 'ERR_OBJECT_MISSING') return undefined
    throw err
  }
  return decode(store, stored)
}

/**
 * Reads the config, writing the defaults first if the store has none (two racing pushes write the same
 * bytes), and upgrading a version 1 config to version 2 (its chunker kept, inlineMax 0): whoever
 * writes format 2 trees to a store says so before they are named.
 */
export async function ensureStoreConfig(store: Store, defaults: ChunkerParams = DEFAULT_CHUNKER): Promise<ChunkerParams> {
  const existing = await readConfig(store)
  if (existing && existing.version === STORE_FORMAT) return existing.params
  const params = existing?.params ?? format2(defaults)
  await store.put(KEY, encode(params))
  return params
}

/**
 * For commands that only read: the store's format is one this snapdir reads (ERR_STORE_CONFIG, one
 * line, otherwise). A store without a config (nothing pushed yet, or a copy of its objects) passes.
 */
export async function checkStoreFormat(store: ReadStore): Promise<void> {
  await readConfig(store)
}
