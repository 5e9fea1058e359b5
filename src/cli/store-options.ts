import { storeFromUrl } from '../store/open-store.js'
import type { Store } from '../store/store.js'

export const STORE_HELP = 'store: a path, file:///path, s3://bucket/prefix or gs://bucket/prefix'
export const ENDPOINT_HELP = 'S3-compatible endpoint for s3:// stores (default: AWS_ENDPOINT_URL, else AWS itself)'

/**
 * The store a command was given, with its --s3-endpoint if any. The command owns it: it closes it in a
 * finally; the operations it calls open it (open() is memoised; push opens it with create).
 */
export function storeFromOptions(opts: { store: string; s3Endpoint?: string }): Store {
  const key = aheadKey(opts)
  const ahead = openedAhead.get(key)
  if (ahead !== undefined) {
    openedAhead.delete(key)
    return ahead
  }
  return storeFromUrl(opts.store, opts.s3Endpoint === undefined ? {} : { s3Endpoint: opts.s3Endpoint })
}

/** Stores opened before the command that uses them knew it would (openStoreAhead), by their options. */
const openedAhead = new Map<string, Store>()
const aheadKey = (opts: { store: string; s3Endpoint?: string }): string => JSON.stringify([opts.store, opts.s3Endpoint ?? null])

/**
 * For a process started before its work (standby.ts): starts opening the store `opts` name (an S3
 * store resolves its credentials, loads its SDK where it needs it, reads its config), and the next
 * storeFromOptions with the same options gets it, opened or opening. An open that failed is not remembered: the command's
 * own open tries again, and says why it fails.
 */
export function openStoreAhead(opts: { store: string; s3Endpoint?: string }): void {
  const store = storeFromOptions(opts)
  openedAhead.set(aheadKey(opts), store)
  store.open().catch(() => {})
}


/**
 * For a command that writes `store` and failed: a store the command's own open created, with nothing
 * committed to it, is removed again (Store.discardIfCreated), so the failure leaves nothing that was
 * not there. What goes wrong while removing it is not news next to the failure itself.
 */
export async function discardIfCreated(store: Store): Promise<void> {
  await store.discardIfCreated().catch(() => {})
}
