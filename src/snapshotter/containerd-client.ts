// A client of the containerd services `snapdir containerd pull` needs (content, images, leases,
// snapshots through containerd, so that its metadata records what the snapshotter commits, and diff,
// to unpack a layer the snapshotter does not serve lazily), over
// containerd's unix socket with our transcriptions of its .proto files (proto/containerd/). Every call
// carries the namespace, and the lease once one is taken, as containerd's own client does.
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { Readable } from 'node:stream'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { SnapdirError, type ErrorCode } from '../util/errors.js'
import { PROTO_DIR, STATUS } from './grpc-service.js'

type Callback = (err: grpc.ServiceError | null, value?: unknown) => void
type Raw = grpc.Client & Record<string, (req: unknown, md: grpc.Metadata, cb: Callback) => void>
type Duplex = grpc.Client & { Write(md: grpc.Metadata): grpc.ClientDuplexStream<unknown, unknown> }

function load(file: string): grpc.GrpcObject {
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, { includeDirs: [PROTO_DIR], keepCase: true, longs: Number, enums: String, defaults: true }))
}

function service(obj: grpc.GrpcObject, dotted: string): grpc.ServiceClientConstructor {
  let at: unknown = obj
  for (const part of dotted.split('.')) at = (at as Record<string, unknown>)[part]
  return at as grpc.ServiceClientConstructor
}

export interface Descriptor {
  media_type: string
  digest: string
  size: number
}

/** A mount as containerd's types.Mount has it on the wire (what Prepare answers, what Apply takes). */
export type WireMount = Record<string, unknown>

/** The size of each WRITE of a blob to containerd's content store (its gRPC messages are at most 16 MiB). */
const WRITE_PIECE = 1 << 20

export class ContainerdClient {
  private readonly content: Raw & Duplex
  private readonly images: Raw
  private readonly leases: Raw
  private readonly snapshots: Raw
  private readonly diff: Raw
  private lease: string | null = null

  constructor(
    readonly address: string,
    readonly namespace: string,
  ) {
    const target = `unix://${address}`
    const creds = grpc.credentials.createInsecure()
    const make = <T>(file: string, name: string): T => new (service(load(file), name))(target, creds) as unknown as T
    this.content = make('content.proto', 'containerd.services.content.v1.Content')
    this.images = make('images.proto', 'containerd.services.images.v1.Images')
    this.leases = make('leases.proto', 'containerd.services.leases.v1.Leases')
    this.snapshots = make('snapshots.proto', 'containerd.services.snapshots.v1.Snapshots')
    this.diff = make('diff.proto', 'containerd.services.diff.v1.Diff')
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata()
    md.set('containerd-namespace', this.namespace)
    if (this.lease !== null) md.set('containerd-lease', this.lease)
    return md
  }

  private call<T>(client: Raw, method: string, req: unknown, what: string): Promise<T> {
    return new Promise((resolve, reject) =>
      client[method]!(req, this.metadata(), (err, value) => (err ? reject(containerdError(err, what, this.address)) : resolve(value as T))),
    )
  }

  /** Takes a lease: what is written under it is safe from containerd's gc until it is released. */
  async acquireLease(id: string, expireSeconds: number): Promise<void> {
    const expire = new Date(Date.now() + expireSeconds * 1000).toISOString()
    await this.call(this.leases, 'Create', { id, labels: { 'containerd.io/gc.expire': expire } }, `creating lease ${id}`)
    this.lease = id
  }

  async releaseLease(): Promise<void> {
    if (this.lease === null) return
    const id = this.lease
    this.lease = null
    await this.call(this.leases, 'Delete', { id, sync: false }, `deleting lease ${id}`)
  }

  /** The content's labels, or null when containerd does not have it. */
  async contentLabels(digest: string): Promise<Record<string, string> | null> {
    try {
      return (await this.call<{ info: { labels: Record<string, string> } }>(this.content, 'Info', { digest }, `content ${digest}`)).info.labels
    } catch (err) {
      if (err instanceof SnapdirError && err.code === 'ERR_NOT_FOUND') return null
      throw err
    }
  }

  /** Writes `data` into the content store as `digest` (checked by containerd), with `labels`. */
  async writeContent(digest: string, data: Buffer, labels: Record<string, string>): Promise<void> {
    const existing = await this.contentLabels(digest)
    if (existing !== null) {
      const paths = Object.keys(labels).map((k) => `labels.${k}`)
      if (paths.length > 0) await this.call(this.content, 'Update', { info: { digest, labels }, update_mask: { paths } }, `labelling content ${digest}`)
      return
    }
    const ref = `snapdir-pull-${digest}`
    await new Promise<void>((resolve, reject) => {
      const stream = this.content.Write(this.metadata())
      stream.on('data', () => {})
      stream.on('error', (err: grpc.ServiceError) => {
        // written by someone else meanwhile: the same bytes, by their digest
        if (err.code === grpc.status.ALREADY_EXISTS) resolve()
        else reject(containerdError(err, `writing content ${digest}`, this.address))
      })
      stream.on('end', () => resolve())
      stream.write({ action: 'COMMIT', ref, total: data.length, expected: digest, offset: 0, data, labels })
      stream.end()
    })
  }

  /**
   * Streams a blob of `size` bytes into the content store as `digest` (containerd checks both on
   * commit), with `labels`; `open` is called only when containerd does not have it yet.
   */
  async writeBlob(digest: string, size: number, open: () => Promise<Readable>, labels: Record<string, string>): Promise<void> {
    if ((await this.contentLabels(digest)) !== null) {
      const paths = Object.keys(labels).map((k) => `labels.${k}`)
      if (paths.length > 0) await this.call(this.content, 'Update', { info: { digest, labels }, update_mask: { paths } }, `labelling content ${digest}`)
      return
    }
    const ref = `snapdir-pull-${digest}-${randomBytes(4).toString('hex')}`
    const stream = this.content.Write(this.metadata())
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', () => {})
      stream.on('error', (err: grpc.ServiceError) => {
        if (err.code === grpc.status.ALREADY_EXISTS) resolve()
        else reject(containerdError(err, `writing content ${digest}`, this.address))
      })
      stream.on('end', () => resolve())
    })
    done.catch(() => {}) // awaited below; meanwhile a failure also stops the writes
    let offset = 0
    try {
      for await (const piece of await open()) {
        const bytes = piece as Buffer
        for (let at = 0; at < bytes.length; at += WRITE_PIECE) {
          const data = bytes.subarray(at, at + WRITE_PIECE)
          const more = stream.write({ action: 'WRITE', ref, total: size, expected: digest, offset, data })
          offset += data.length
          if (!more) await once(stream, 'drain')
        }
      }
      stream.write({ action: 'COMMIT', ref, total: size, expected: digest, offset, labels })
      stream.end()
    } catch (err) {
      stream.cancel()
      // the stream's own error (containerd refused a write) says it in containerd's words
      if (err instanceof Error && 'details' in err) throw containerdError(err as grpc.ServiceError, `writing content ${digest}`, this.address)
      throw err
    }
    await done
  }

  /** Applies the layer blob `diff` (in the content store) onto `mounts` with containerd's diff service; resolves with the descriptor of what was applied (the uncompressed layer: its digest is the diff_id). */
  async applyDiff(diff: Descriptor, mounts: WireMount[]): Promise<Descriptor> {
    return (await this.call<{ applied: Descriptor }>(this.diff, 'Apply', { diff, mounts }, `applying layer ${diff.digest}`)).applied
  }

  /** Commits the active snapshot `key` as `name` through containerd. */
  async commitSnapshot(snapshotter: string, name: string, key: string, labels: Record<string, string>): Promise<void> {
    await this.call(this.snapshots, 'Commit', { snapshotter, name, key, labels }, `committing snapshot ${name}`)
  }

  /** Creates the image `name` pointing at `target`, or moves it there. */
  async putImage(name: string, target: Descriptor, labels: Record<string, string> = {}): Promise<void> {
    const image = { name, target, labels }
    try {
      await this.call(this.images, 'Create', { image }, `creating image ${name}`)
    } catch (err) {
      if (!(err instanceof SnapdirError && err.code === 'ERR_ALREADY_EXISTS')) throw err
      await this.call(this.images, 'Update', { image, update_mask: { paths: ['target', 'labels'] } }, `updating image ${name}`)
    }
  }

  /** Whether snapshotter `snapshotter` has the snapshot `key` (in this namespace). */
  async hasSnapshot(snapshotter: string, key: string): Promise<boolean> {
    try {
      await this.call(this.snapshots, 'Stat', { snapshotter, key }, `snapshot ${key}`)
      return true
    } catch (err) {
      if (err instanceof SnapdirError && err.code === 'ERR_NOT_FOUND') return false
      throw err
    }
  }

  /** Prepare through containerd: resolves with the mounts, or with null when the snapshotter answered AlreadyExists. */
  async prepare(snapshotter: string, key: string, parent: string, labels: Record<string, string>): Promise<WireMount[] | null> {
    try {
      return (await this.call<{ mounts: WireMount[] }>(this.snapshots, 'Prepare', { snapshotter, key, parent, labels }, `preparing snapshot ${key}`)).mounts
    } catch (err) {
      if (err instanceof SnapdirError && err.code === 'ERR_ALREADY_EXISTS') return null
      throw err
    }
  }

  async removeSnapshot(snapshotter: string, key: string): Promise<void> {
    await this.call(this.snapshots, 'Remove', { snapshotter, key }, `removing snapshot ${key}`)
  }

  close(): void {
    for (const c of [this.content, this.images, this.leases, this.snapshots, this.diff]) c.close()
  }
}

/** containerd's answer as our error: its status as our code (the service's table, read backwards), the call and the socket named. */
function containerdError(err: grpc.ServiceError, what: string, address: string): SnapdirError {
  const code = (Object.entries(STATUS) as Array<[ErrorCode, grpc.status]>).find(([, status]) => status === err.code)?.[0] ?? 'ERR_TARGET'
  const detail = err.code === grpc.status.UNAVAILABLE ? `containerd at ${address} does not answer (${err.details})` : err.details
  return new SnapdirError(code, `containerd: ${what}: ${detail}`, { cause: err, data: { address } })
}
