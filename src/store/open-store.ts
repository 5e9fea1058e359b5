import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { UsageError } from '../util/errors.js'
import { FileStore } from './file-store.js'
import type { Store } from './store.js'

/** Opens a store from what the user typed: a plain path or file:///path. */
export function storeFromUrl(url: string): Store {
  if (url.trim() === '') throw new UsageError('empty store URL: expected a path or file:///path', 'ERR_BAD_STORE_URL')
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(url)?.[1]?.toLowerCase()
  if (scheme === undefined) return new FileStore(path.resolve(url), url)
  if (scheme === 'file') {
    let p: string
    try {
      p = fileURLToPath(url)
    } catch (err) {
      throw new UsageError(`bad store URL '${url}': ${(err as Error).message}; expected file:///absolute/path`, 'ERR_BAD_STORE_URL')
    }
    return new FileStore(p, url)
  }
  throw new UsageError(
    `unsupported store URL '${url}': scheme '${scheme}' is not known; expected a path or file:///path`,
    'ERR_BAD_STORE_URL',
  )
}
