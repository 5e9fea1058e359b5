// The store's `config`: format version and chunker parameters, fixed when the store is created so
// every push to it cuts the same way (and the same directory always gets the same ID there).
import { DEFAULT_CHUNKER, validateChunkerParams, type ChunkerParams } from '../chunk/params.js'
import { SnapdirError } from '../util/errors.js'
import type { ReadStore, Store } from './store.js'

export const STORE_FORMAT = 1
const KEY = 'config'

interface ConfigFile {
  format: 'snapdir-store'
  version: number
  chunker: { algorithm: 'fastcdc2020'; min: number; avg: number; max: number; level: number; seed: string; inlineMax?: number; packMax?: number }
}

function encode(p: ChunkerParams): Buffer {
  const c: ConfigFile = {
    format: 'snapdir-store',
    version: STORE_FORMAT,
    chunker: { algorithm: 'fastcdc2020', min: p.min, avg: p.avg, max: p.max, level: p.level, seed: p.seed.toString(), inlineMax: p.inlineMax ?? 0, packMax: p.packMax ?? 0 },
  }
  return Buffer.from(JSON.stringify(c, null, 2) + '\n')
}

function decode(store: ReadStore, bytes: Buffer): ChunkerParams {
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
  if (c.version !== STORE_FORMAT) return bad(`has version ${c.version}; this snapdir reads version ${STORE_FORMAT}`)
  if (c.chunker?.algorithm !== 'fastcdc2020') return bad('names an unknown chunker')
  const ch = c.chunker
  return validateChunkerParams({ min: ch.min, avg: ch.avg, max: ch.max, level: ch.level, seed: BigInt(ch.seed), inlineMax: ch.inlineMax ?? 0, packMax: ch.packMax ?? 0 })
}

/** The store's chunker parameters, or undefined for a store nothing was pushed to yet. */
export async function readStoreConfig(store: ReadStore): Promise<ChunkerParams | undefined> {
  if (!(await store.has(KEY))) return undefined
  return decode(store, await store.get(KEY))
}

/** Reads the config, writing the defaults first if the store has none (two racing pushes write the same bytes). */
export async function ensureStoreConfig(store: Store, defaults: ChunkerParams = DEFAULT_CHUNKER): Promise<ChunkerParams> {
  const existing = await readStoreConfig(store)
  if (existing) return existing
  await store.put(KEY, encode(defaults))
  return defaults
}
