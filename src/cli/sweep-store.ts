import { isSweepStore, type SweepStore } from '../store/store.js'
import { UsageError } from '../util/errors.js'
import { storeFromOptions } from './store-options.js'

/** The store rm or gc was given: one objects can be deleted from (every backend is). */
export function sweepStoreFromOptions(opts: { store: string; s3Endpoint?: string }): SweepStore {
  const store = storeFromOptions(opts)
  if (!isSweepStore(store)) throw new UsageError(`store ${opts.store}: objects cannot be deleted from it`, 'ERR_BAD_STORE_URL')
  return store
}
