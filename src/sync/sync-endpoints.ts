// The places a `sync --config` run talks to, each opened once and shared by every copy: the stores by
// URL and the registries by host (with the config's credentials and TLS settings). `copy` is the
// single-image copy for any pair of them; `lookup` answers the planner's registry questions.
import { storeFromUrl } from '../store/open-store.js'
import type { Store } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import type { SyncConfig } from './sync-config.js'
import { imageText, type ImageAt, type RegistryLookup } from './sync-plan.js'
import type { CopyImage, CopyJob, CopyResult } from './sync-run.js'
import { sync } from './sync.js'

export interface EndpointOptions {
  s3Endpoint?: string
}

export class SyncEndpoints {
  private readonly stores = new Map<string, Store>()

  constructor(
    readonly config: SyncConfig,
    private readonly options: EndpointOptions = {},
  ) {}

  store(url: string): Store {
    let s = this.stores.get(url)
    if (s === undefined) {
      s = storeFromUrl(url, this.options.s3Endpoint === undefined ? {} : { s3Endpoint: this.options.s3Endpoint })
      this.stores.set(url, s)
    }
    return s
  }

  readonly lookup: RegistryLookup = {
    listTags: async (image) => {
      throw notYet(imageText(image))
    },
    resolve: async (image) => {
      throw notYet(imageText(image))
    },
  }

  readonly copy: CopyImage = async (job: CopyJob): Promise<CopyResult> => {
    const { from, to } = job
    if (from.kind === 'store' && to.kind === 'store') {
      if (from.id === undefined) throw new SnapdirError('ERR_INTERNAL', `internal error: a copy from ${from.url} without a snapshot ID`)
      const s = await sync(this.store(from.url), this.store(to.url), from.id)
      return {
        digest: from.id,
        at: { kind: 'store', url: to.url, id: from.id },
        blobs: { copied: s.objects.copied, skipped: s.objects.skipped },
        bytes: { copied: s.bytes.copied, skipped: s.bytes.skipped },
      }
    }
    throw notYet(`${imageText(from)} -> ${imageText(to)}`)
  }

  async close(): Promise<void> {
    for (const s of this.stores.values()) await s.close().catch(() => {})
  }
}

function notYet(what: ImageAt | string): SnapdirError {
  const text = typeof what === 'string' ? what : imageText(what)
  return new SnapdirError('ERR_USAGE', `${text}: registries are not supported by this build of snapdir yet`)
}
