// The places a `sync --config` run talks to, each opened once and shared by every copy: the stores by
// URL and the registries by host (one RegistryClient each, with the file's credentials and TLS
// settings). `lookup` answers the planner's registry questions; the copies themselves are
// snapshot/image-copy.ts's, given these places.
import { descriptorPlatform, type Platform } from '../oci/platform.js'
import { RegistryClient, type RegistryClientOptions } from '../registry/client.js'
import { OCI_INDEX, DOCKER_MANIFEST_LIST } from '../registry/media-types.js'
import { readImageName } from '../store/image-names.js'
import { storeFromUrl } from '../store/open-store.js'
import type { Store } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import type { RegistrySettings, SyncConfig } from './sync-config.js'
import type { RegistryLookup, Resolved } from './sync-plan.js'

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
    storedImage: async (url, name, tag) => {
      const store = this.store(url)
      try {
        await store.open()
      } catch (err) {
        if (err instanceof SnapdirError && err.code === 'ERR_STORE_NOT_FOUND') return null
        throw err
      }
      return readImageName(store, { name, tag }, () => {})
    },
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

  async close(): Promise<void> {
    for (const s of this.stores.values()) await s.close().catch(() => {})
    for (const r of this.registries.values()) await r.close().catch(() => {})
  }
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
  if (settings.certDir !== undefined) out.certDir = settings.certDir
  // told what to trust: HTTPS, loopback or not
  if ((settings.caFile !== undefined || settings.certDir !== undefined) && settings.tls === undefined) out.plainHttp = false
  return out
}
