// A client of the containerd services `snapdir containerd pull` needs (content, images, leases, and
// snapshots through containerd, so that its metadata records what the snapshotter commits), over
// containerd's unix socket with our transcriptions of its .proto files (proto/containerd/). Every call
// carries the namespace, and the lease once one is taken, as containerd's own client does.
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

export class ContainerdClient {
  private readonly content: Raw & Duplex
  private readonly images: Raw
  private readonly leases: Raw
  private readonly snapshots: Raw
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
  async prepare(snapshotter: string, key: string, parent: string, labels: Record<string, string>): Promise<unknown[] | null> {
    try {
      return (await this.call<{ mounts: unknown[] }>(this.snapshots, 'Prepare', { snapshotter, key, parent, labels }, `preparing snapshot ${key}`)).mounts
    } catch (err) {
      if (err instanceof SnapdirError && err.code === 'ERR_ALREADY_EXISTS') return null
      throw err
    }
  }

  async removeSnapshot(snapshotter: string, key: string): Promise<void> {
    await this.call(this.snapshots, 'Remove', { snapshotter, key }, `removing snapshot ${key}`)
  }

  close(): void {
    for (const c of [this.content, this.images, this.leases, this.snapshots]) c.close()
  }
}

/** containerd's answer as our error: its status as our code (the service's table, read backwards), the call and the socket named. */
function containerdError(err: grpc.ServiceError, what: string, address: string): SnapdirError {
  const code = (Object.entries(STATUS) as Array<[ErrorCode, grpc.status]>).find(([, status]) => status === err.code)?.[0] ?? 'ERR_TARGET'
  const detail = err.code === grpc.status.UNAVAILABLE ? `containerd at ${address} does not answer (${err.details})` : err.details
  return new SnapdirError(code, `containerd: ${what}: ${detail}`, { cause: err, data: { address } })
}
