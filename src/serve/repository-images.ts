// The read side's view of a store as a registry: a repository is an image name of the store
// (refs/images/<name>/<tag>, store/image-names.ts), its tags are that name's tags, and what it serves
// is what the images its tags name hold: each tag's image (the entry of the stored layout's
// index.json the tag picks, as sync sends it) walked by the transfer plan, so its indexes, manifests
// and configs are the stored bytes checked against their digests, and its layers streams that
// regenerate and check themselves (oci/stored-blobs.ts). A blob or manifest no tagged image of the
// repository holds is unknown there, whatever else the store holds.
//
// tags/list shows the tags clients pushed, not those serve keeps manifests pushed by digest under
// (internal-tags.ts); every lookup here goes through all of them.
//
// Tags are read from the store on every request, so several servers on one store agree and a tag
// moved by another process is seen at once; what a (snapshot, tag) pair holds never changes, so its
// plan is kept (bounded) and shared by concurrent requests.
import { LRUCache } from 'lru-cache'
import { isObject } from '../oci/descriptor.js'
import { INDEX_TYPES } from '../oci/media-types.js'
import { StoredBlobs } from '../oci/stored-blobs.js'
import { storedImageEntry } from '../oci/stored-image.js'
import { planTransfer } from '../oci/transfer-plan.js'
import { hasImageTags, listImageRepositories, listImageTags, readImageName, type ImageNameRecord } from '../store/image-names.js'
import { readTree } from '../store/objects.js'
import type { ReadStore } from '../store/store.js'
import { RegistryError } from './errors.js'
import { isInternalTag } from './internal-tags.js'

export interface ServedManifest {
  digest: string
  mediaType: string
  bytes: Buffer
}

export interface ServedBlob {
  digest: string
  size: number
  /** how the log names it: "layer sha256:… of manifest sha256:…" */
  what: string
  /** the blob's bytes; the stream fails, at its end at the latest, unless they hash to its digest */
  content(): AsyncIterable<Buffer>
}

/** What one tag's image holds. */
export interface TaggedImage {
  tag: string
  /** the digest the tag resolves to */
  digest: string
  manifests: ReadonlyMap<string, ServedManifest>
  blobs: ReadonlyMap<string, ServedBlob>
}

export interface Referrer {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  annotations?: Record<string, unknown>
}

/** (snapshot, tag) pairs whose plans are kept: a few documents each, their layers only as descriptors. */
const KEPT_IMAGES = 512

export class RepositoryImages {
  private readonly plans = new LRUCache<string, Promise<TaggedImage>>({ max: KEPT_IMAGES })

  constructor(
    private readonly store: ReadStore,
    /** a tag whose image cannot be read (damaged, not an image layout) is skipped in digest lookups and reported here */
    private readonly warn: (message: string, fields: Record<string, unknown>) => void,
  ) {}

  private readonly onSkip = (key: string, reason: string): void => this.warn(`skipped ${key}: ${reason}`, { key })

  /** Every repository: the names the store has tags for (those a registry can name). */
  async repositories(): Promise<string[]> {
    return (await listImageRepositories(this.store)).filter(isRepositoryName)
  }

  /** The tags of `name`, sorted; NAME_UNKNOWN when it has none. */
  async tags(name: string): Promise<ImageNameRecord[]> {
    const tags = await listImageTags(this.store, name, this.onSkip)
    if (tags.length === 0) throw new RegistryError('NAME_UNKNOWN', { detail: { name } })
    return tags
  }

  /**
   * The tags of `name` a client sees, sorted: not those serve keeps manifests pushed by digest under
   * (internal-tags.ts); NAME_UNKNOWN when there is none, as docker-registry answers a repository
   * pushed to by digest alone.
   */
  async visibleTags(name: string): Promise<string[]> {
    const tags = (await listImageTags(this.store, name, this.onSkip)).map((r) => r.tag).filter((t) => !isInternalTag(t))
    if (tags.length === 0) throw new RegistryError('NAME_UNKNOWN', { detail: { name } })
    return tags
  }

  /** The manifest or index `reference` (a tag or a digest) names in `name`. */
  async manifest(name: string, reference: string, kind: 'tag' | 'digest'): Promise<ServedManifest> {
    if (kind === 'tag') {
      // one record read, not the repository's every tag: a pull by tag starts here
      const record = await readImageName(this.store, { name, tag: reference }, this.onSkip)
      if (record === null) {
        if (!(await hasImageTags(this.store, name))) throw new RegistryError('NAME_UNKNOWN', { detail: { name } })
        throw new RegistryError('MANIFEST_UNKNOWN', { detail: { name, tag: reference } })
      }
      const image = await this.image(record)
      return image.manifests.get(image.digest)!
    }
    for await (const image of this.images(name)) {
      const found = image.manifests.get(reference)
      if (found) return found
    }
    throw new RegistryError('MANIFEST_UNKNOWN', { detail: { name, digest: reference } })
  }

  /** The blob (a config or a layer) `digest` names in `name`. */
  async blob(name: string, digest: string): Promise<ServedBlob> {
    for await (const image of this.images(name)) {
      const found = image.blobs.get(digest)
      if (found) return found
    }
    throw new RegistryError('BLOB_UNKNOWN', { detail: { name, digest } })
  }

  /** The manifests of `name` whose subject is `digest`, as descriptors (distribution-spec "Listing Referrers"). */
  async referrers(name: string, digest: string): Promise<Referrer[]> {
    const out = new Map<string, Referrer>()
    for await (const image of this.images(name, { unknownName: 'empty' })) {
      for (const m of image.manifests.values()) {
        if (out.has(m.digest)) continue
        const referrer = referrerOf(m, digest)
        if (referrer) out.set(m.digest, referrer)
      }
    }
    return [...out.values()]
  }

  /** The images `name`'s tags name, in tag order, each planned when reached. */
  async *images(name: string, options: { unknownName?: 'throw' | 'empty' } = {}): AsyncGenerator<TaggedImage> {
    let tags: ImageNameRecord[]
    try {
      tags = await this.tags(name)
    } catch (err) {
      if (options.unknownName === 'empty' && err instanceof RegistryError && err.code === 'NAME_UNKNOWN') return
      throw err
    }
    for (const record of tags) {
      try {
        yield await this.image(record)
      } catch (err) {
        if (err instanceof RegistryError) throw err
        // one tag whose image cannot be read costs only itself in a lookup by digest
        this.warn(`${record.name}:${record.tag} (snapshot ${record.id.slice(0, 16)}…) cannot be served: ${(err as Error).message}`, { name: record.name, tag: record.tag, id: record.id })
      }
    }
  }

  /** What the image a tag names holds, planned once per (snapshot, tag). */
  image(record: ImageNameRecord): Promise<TaggedImage> {
    const key = `${record.id}/${record.tag}`
    let plan = this.plans.get(key)
    if (plan === undefined) {
      plan = this.plan(record)
      plan.catch(() => this.plans.delete(key))
      this.plans.set(key, plan)
    }
    return plan
  }

  private async plan(record: ImageNameRecord): Promise<TaggedImage> {
    const bundle = await readTree(this.store, record.id)
    const top = await storedImageEntry(this.store, record.id, bundle, { tag: record.tag })
    const plan = await planTransfer(new StoredBlobs(this.store, bundle), top, { artifacts: true })
    const manifests = new Map<string, ServedManifest>()
    for (const m of plan.manifests) manifests.set(m.digest, { digest: m.digest, mediaType: m.mediaType, bytes: m.bytes })
    const blobs = new Map<string, ServedBlob>()
    for (const b of plan.blobs) blobs.set(b.digest, { digest: b.digest, size: b.descriptor.size, what: b.what, content: b.content })
    return { tag: record.tag, digest: plan.manifests.at(-1)!.digest, manifests, blobs }
  }
}

/** The spec's repository name grammar (route.ts checks the names requests give). */
function isRepositoryName(name: string): boolean {
  return name.length <= 255 && /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/.test(name)
}

/**
 * `m` as a descriptor in a referrers list when its subject is `subject`: its artifactType, else (a
 * manifest) its config's media type, as distribution-spec v1.1 "Listing Referrers" has it.
 */
function referrerOf(m: ServedManifest, subject: string): Referrer | null {
  let doc: unknown
  try {
    doc = JSON.parse(m.bytes.toString('utf8'))
  } catch {
    return null
  }
  if (!isObject(doc) || !isObject(doc.subject) || doc.subject.digest !== subject) return null
  let artifactType = typeof doc.artifactType === 'string' ? doc.artifactType : undefined
  if (artifactType === undefined && !INDEX_TYPES.has(m.mediaType) && isObject(doc.config) && typeof doc.config.mediaType === 'string') {
    artifactType = doc.config.mediaType
  }
  return {
    mediaType: m.mediaType,
    digest: m.digest,
    size: m.bytes.length,
    ...(artifactType !== undefined ? { artifactType } : {}),
    ...(isObject(doc.annotations) ? { annotations: doc.annotations } : {}),
  }
}
