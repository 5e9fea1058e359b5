// Sends a planned image (oci/transfer-plan.ts) into a repository of a registry, as distribution-spec
// "Pushing" has it: each blob the repository lacks (HEAD), mounted from another repository of the same
// registry where one is known to hold it (cross-repo mount), else uploaded, streamed from its source;
// then the indexes and manifests, each after everything it names, the tag last. A send cut short
// leaves blobs no manifest names yet, which the next send skips; the tag moves only once the whole
// image is there. A repository whose tag already names the image's digest is complete: nothing is sent.
import { pipeline, Readable, Transform } from 'node:stream'
import type { TransferPlan } from '../oci/transfer-plan.js'
import { forEachLimit } from '../util/concurrency.js'
import { SnapdirError } from '../util/errors.js'

/** What a send needs of a registry (registry/registry-client.ts RegistryClient). */
export interface ImageDestination {
  /** host[:port] of the registry, as image references name it */
  readonly registry?: string
  hasBlob(repository: string, digest: string): Promise<boolean>
  mountBlob(repository: string, fromRepository: string, digest: string): Promise<boolean>
  putBlob(repository: string, digest: string, size: number, open: () => Readable): Promise<unknown>
  headManifest(repository: string, reference: string): Promise<{ digest: string } | null>
  /** resolves with the digest the registry gives the manifest */
  putManifest(repository: string, reference: string, bytes: Buffer, mediaType: string): Promise<string>
}

export interface SendOptions {
  /** blobs checked or sent at once */
  jobs?: number
  /** repositories of the same registry that may hold the blobs (all of them, or each blob's own): mounted from rather than uploaded */
  mountFrom?: readonly string[] | ((digest: string) => readonly string[])
  onPlan?: (blobs: number, bytes: number) => void
  /** a blob settled: sent, skipped (the repository has it) or mounted */
  onBlob?: (digest: string, size: number, outcome: BlobOutcome) => void
  /** bytes of blobs as they go out */
  onBytes?: (n: number) => void
  /** the caller asked just now what `reference` names there, and it was not this image: not asked again */
  referenceChecked?: boolean
}

export type BlobOutcome = 'sent' | 'skipped' | 'mounted'

/** Per destination, the blob puts under way (`repository@digest`), shared by every send in this process. */
const inFlight = new WeakMap<ImageDestination, Map<string, Promise<unknown>>>()

export interface SendSummary {
  /** the image's digest: what the tag names */
  digest: string
  /** the tag already named the digest: nothing was sent */
  alreadyComplete: boolean
  blobs: Record<BlobOutcome, number>
  bytes: Record<BlobOutcome, number>
  manifests: { sent: number; skipped: number }
}

/** Sends `plan` into `repository`, and has `reference` (a tag, or the image's digest) name it. */
export async function sendImage(plan: TransferPlan, to: ImageDestination, repository: string, reference: string, options: SendOptions = {}): Promise<SendSummary> {
  const image = plan.manifests.at(-1)
  if (!image) throw new SnapdirError('ERR_INTERNAL', 'a transfer plan without manifests')
  const summary: SendSummary = {
    digest: image.digest,
    alreadyComplete: false,
    blobs: { sent: 0, skipped: 0, mounted: 0 },
    bytes: { sent: 0, skipped: 0, mounted: 0 },
    manifests: { sent: 0, skipped: 0 },
  }
  options.onPlan?.(plan.blobs.length, plan.blobs.reduce((n, b) => n + b.descriptor.size, 0))
  // manifests go last, the tag after them: a tag naming this digest proves the image whole there
  if (options.referenceChecked !== true && (await to.headManifest(repository, reference))?.digest === image.digest) {
    summary.alreadyComplete = true
    summary.manifests.skipped = plan.manifests.length
    for (const b of plan.blobs) settle(summary, b.digest, b.descriptor.size, 'skipped', options)
    return summary
  }
  const given = options.mountFrom ?? []
  const mountFrom = (digest: string) => (typeof given === 'function' ? given(digest) : given).filter((r) => r !== repository)
  const flights = inFlight.get(to) ?? new Map<string, Promise<unknown>>()
  inFlight.set(to, flights)
  await forEachLimit(plan.blobs, options.jobs ?? 4, async (blob) => {
    const { size } = blob.descriptor
    // a blob another send of this process is putting into the same repository (images sharing a
    // base, copied at once): wait for it, and then the HEAD finds it, rather than sending it twice
    const key = `${repository}@${blob.digest}`
    for (let other = flights.get(key); other !== undefined; other = flights.get(key)) await other.catch(() => {})
    const put = (async (): Promise<BlobOutcome> => {
      if (await to.hasBlob(repository, blob.digest)) return 'skipped'
      for (const from of mountFrom(blob.digest)) {
        if (await to.mountBlob(repository, from, blob.digest)) return 'mounted'
      }
      // the source asked for the bytes while the upload is opened (a round trip each, at once); a
      // second try of the upload reads them afresh
      let early: Readable | null = counted(blob.content(), options.onBytes)
      early.read(0)
      try {
        await to.putBlob(repository, blob.digest, size, () => {
          const body = early ?? counted(blob.content(), options.onBytes)
          early = null
          return body
        })
      } finally {
        ;(early as Readable | null)?.destroy()
      }
      return 'sent'
    })()
    flights.set(key, put)
    try {
      settle(summary, blob.digest, size, await put, options)
    } finally {
      flights.delete(key)
    }
  })
  for (const [i, m] of plan.manifests.entries()) {
    const last = i === plan.manifests.length - 1
    // a manifest of the image the repository holds already (a platform of an index sent before) is
    // not sent again; the image itself is always put under its reference
    if (!last && (await to.headManifest(repository, m.digest))?.digest === m.digest) {
      summary.manifests.skipped++
      continue
    }
    const stored = await to.putManifest(repository, last ? reference : m.digest, m.bytes, m.mediaType)
    if (stored !== m.digest) throw new SnapdirError('ERR_REGISTRY_CORRUPT', `${repository}: the registry stored ${m.what} as ${stored}`)
    summary.manifests.sent++
  }
  return summary
}

function settle(summary: SendSummary, digest: string, size: number, outcome: BlobOutcome, options: SendOptions): void {
  summary.blobs[outcome]++
  summary.bytes[outcome] += size
  options.onBlob?.(digest, size, outcome)
}

/** The blob's bytes as a stream, `onBytes` told of each piece; a stream is piped, not iterated (a promise per piece). */
function counted(content: AsyncIterable<Buffer>, onBytes?: (n: number) => void): Readable {
  const stream = content instanceof Readable ? content : Readable.from(content)
  if (onBytes === undefined) return stream
  const counter = new Transform({
    highWaterMark: 256 * 1024,
    transform(piece: Buffer, _encoding, done) {
      onBytes(piece.length)
      done(null, piece)
    },
  })
  return pipeline(stream, counter, () => {})
}
