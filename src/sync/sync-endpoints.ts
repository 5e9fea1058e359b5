// The places a `sync --config` run talks to, each opened once and shared by every copy: the stores by
// URL and the registries by host (one RegistryClient each, with the file's credentials and TLS
// settings). `copy` is the single-image copy for any pair of them, each the one snapdir has (store ->
// store: sync; the registry copies join as they land). `lookup` answers the planner's registry questions.
import { descriptorPlatform, type Platform } from '../oci/platform.js'
import { RegistryClient, type RegistryClientOptions } from '../registry/client.js'
import { OCI_INDEX, DOCKER_MANIFEST_LIST } from '../registry/media-types.js'
import { storeFromUrl } from '../store/open-store.js'
import type { Store } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import type { RegistrySettings, SyncConfig } from './sync-config.js'
import { imageText, type ImageAt, type RegistryLookup, type Resolved } from './sync-plan.js'
import type { CopyImage, CopyJob, CopyResult } from './sync-run.js'
import { sync } from './sync.js'

export interface EndpointOptions {
  s3Endpoint?: string
}

export class SyncEndpoints {
  private readonly stores = new Map<string, Store>()
  private readonly registries = new Map<string, RegistryClient>()

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

  registry(host: string): RegistryClient {
    let r = this.registries.get(host)
    if (r === undefined) {
      r = new RegistryClient(host, clientOptions(this.config.registries.get(host)))
      this.registries.set(host, r)
    }
    return r
  }

  readonly lookup: RegistryLookup = {
    listTags: async (image, signal) => this.registry(image.host).listTags(image.repository, signal ? { signal } : {}),
    resolve: async (image, platforms, signal): Promise<Resolved | null> => {
      const client = this.registry(image.host)
      const reference = image.digest ?? image.tag ?? 'latest'
      const call = signal ? { signal } : {}
      if (!platforms) {
        const head = await client.headManifest(image.repository, reference, call)
        return head === null ? null : { digest: head.digest, manifests: null }
      }
      // one GET: the digest, and an index's platforms
      const m = await client.getManifest(image.repository, reference, undefined, call).catch((err: unknown) => {
        if (err instanceof SnapdirError && err.code === 'ERR_REGISTRY_NOT_FOUND') return null
        throw err
      })
      if (m === null) return null
      if (m.mediaType !== OCI_INDEX && m.mediaType !== DOCKER_MANIFEST_LIST) return { digest: m.digest, manifests: null }
      const doc = JSON.parse(m.bytes.toString('utf8')) as { manifests?: unknown[] }
      const manifests: Array<{ platform: Platform; digest: string }> = []
      for (const d of doc.manifests ?? []) {
        const platform = descriptorPlatform(d)
        const digest = (d as { digest?: unknown }).digest
        if (platform !== null && typeof digest === 'string') manifests.push({ platform, digest })
      }
      return { digest: m.digest, manifests }
    },
  }

  readonly copy: CopyImage = async (job: CopyJob): Promise<CopyResult> => {
    const { from, to } = job
    const transfer = {
      ...(job.platforms !== null ? { platforms: job.platforms } : {}),
      ...(job.onBytes ? { onBytes: job.onBytes } : {}),
    }
    if (from.kind === 'store' && to.kind === 'store') {
      const id = snapshotOf(from)
      const s = await sync(this.store(from.url), this.store(to.url), id)
      return {
        digest: id,
        at: { kind: 'store', url: to.url, id },
        blobs: { copied: s.objects.copied, skipped: s.objects.skipped },
        bytes: { copied: s.bytes.copied, skipped: s.bytes.skipped },
      }
    }
    void transfer
    throw new SnapdirError('ERR_USAGE', `${imageText(from)} -> ${imageText(to)}: copies to or from a registry are not in this build of snapdir yet (--dry-run plans them)`)
  }

  async close(): Promise<void> {
    for (const s of this.stores.values()) await s.close().catch(() => {})
    for (const r of this.registries.values()) await r.close().catch(() => {})
  }
}

function snapshotOf(image: ImageAt & { kind: 'store' }): string {
  if (image.id === undefined) throw new SnapdirError('ERR_INTERNAL', `internal error: a copy from ${image.url} without a snapshot ID`)
  return image.id
}

/** The client options a registry's settings in the file make: its login, and how to reach it. */
function clientOptions(settings: RegistrySettings | undefined): RegistryClientOptions {
  if (settings === undefined) return {}
  const out: RegistryClientOptions = {}
  if (settings.username !== undefined && settings.password !== undefined) out.creds = { username: settings.username, password: settings.password }
  if (settings.dockerConfig !== undefined) out.dockerConfig = settings.dockerConfig
  if (settings.tls === 'enabled') out.plainHttp = false
  if (settings.tls === 'insecure') Object.assign(out, { plainHttp: false, tlsVerify: false })
  if (settings.tls === 'disabled') out.plainHttp = true
  if (settings.caFile !== undefined) out.caFile = settings.caFile
  return out
}
