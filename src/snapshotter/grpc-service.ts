// containerd's snapshots service (proto/containerd/snapshots.proto) over a Snapshotter, served on a
// unix socket for containerd's [proxy_plugins]. This is the gRPC boundary's one error table: a
// SnapdirError's code becomes the status containerd's errdefs turn back into its own errors
// (NotFound, AlreadyExists, FailedPrecondition, InvalidArgument); anything else is Internal.
import { promises as fs } from 'node:fs'
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { SnapdirError, isErrno, type ErrorCode } from '../util/errors.js'
import type { SnapshotKind } from './metadata.js'
import type { Mount } from './overlay-mounts.js'
import type { SnapshotInfo, Snapshotter } from './snapshotter.js'

/** the .proto files, at the same depth from src/snapshotter/ and from the bundled CLI in dist/bundle/ */
export const PROTO_DIR = fileURLToPath(new URL('../../proto/containerd/', import.meta.url))

/** Our codes and the gRPC status each is on the wire, both ways: the server answers with them, the containerd client reads them back. */
export const STATUS: Partial<Record<ErrorCode, grpc.status>> = {
  ERR_NOT_FOUND: grpc.status.NOT_FOUND,
  ERR_ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  ERR_FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  ERR_INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  ERR_STORE_UNREACHABLE: grpc.status.UNAVAILABLE,
}

function toStatus(err: unknown): Partial<grpc.ServiceError> {
  if (err instanceof SnapdirError) return { code: STATUS[err.code] ?? grpc.status.INTERNAL, details: err.message }
  if (isErrno(err)) return { code: grpc.status.INTERNAL, details: err.message }
  return { code: grpc.status.INTERNAL, details: err instanceof Error ? `internal error: ${err.message}` : String(err) }
}

export function loadSnapshotsProto(): grpc.GrpcObject {
  const definition = protoLoader.loadSync('snapshots.proto', {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
  })
  return grpc.loadPackageDefinition(definition)
}

export function snapshotsService(): grpc.ServiceDefinition {
  const pkg = loadSnapshotsProto() as unknown as { containerd: { services: { snapshots: { v1: { Snapshots: grpc.ServiceClientConstructor } } } } }
  return pkg.containerd.services.snapshots.v1.Snapshots.service
}

const KIND: Record<SnapshotKind, string> = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' }

function wireInfo(i: SnapshotInfo): Record<string, unknown> {
  return { name: i.name, parent: i.parent, kind: KIND[i.kind], created_at: i.created, updated_at: i.updated, labels: i.labels }
}

const wireMounts = (mounts: Mount[]): Record<string, unknown> => ({ mounts })

type Req = Record<string, unknown>
type Log = (line: string) => void

/** The service's handlers: each a call on the snapshotter, its failure mapped once, here. */
function handlers(sn: Snapshotter, log: Log): grpc.UntypedServiceImplementation {
  const unary =
    (name: string, fn: (req: Req) => Promise<unknown>): grpc.handleUnaryCall<Req, unknown> =>
    (call, callback) => {
      const started = performance.now()
      fn(call.request).then(
        (value) => {
          log(`${name} ${describe(call.request)} ok ${Math.round(performance.now() - started)} ms`)
          callback(null, value)
        },
        (err: unknown) => {
          const status = toStatus(err)
          log(`${name} ${describe(call.request)} failed: ${status.details}`)
          callback(status)
        },
      )
    }
  const str = (v: unknown): string => (typeof v === 'string' ? v : '')
  const labels = (v: unknown): Record<string, string> => (v !== null && typeof v === 'object' ? (v as Record<string, string>) : {})
  return {
    Prepare: unary('Prepare', async (r) => wireMounts(await sn.prepare(str(r.key), str(r.parent), labels(r.labels)))),
    View: unary('View', async (r) => wireMounts(await sn.view(str(r.key), str(r.parent), labels(r.labels)))),
    Mounts: unary('Mounts', async (r) => wireMounts(await sn.mounts(str(r.key)))),
    Commit: unary('Commit', async (r) => {
      await sn.commit(str(r.name), str(r.key), labels(r.labels))
      return {}
    }),
    Remove: unary('Remove', async (r) => {
      await sn.remove(str(r.key))
      return {}
    }),
    Stat: unary('Stat', async (r) => ({ info: wireInfo(sn.stat(str(r.key))) })),
    Update: unary('Update', async (r) => {
      const info = (r.info ?? {}) as Req
      const mask = (r.update_mask ?? {}) as { paths?: string[] }
      return { info: wireInfo(await sn.update({ name: str(info.name), labels: labels(info.labels) }, mask.paths ?? [])) }
    }),
    Usage: unary('Usage', async (r) => sn.usage(str(r.key))),
    Cleanup: unary('Cleanup', async () => {
      await sn.cleanup()
      return {}
    }),
    List: (call: grpc.ServerWritableStream<Req, unknown>) => {
      try {
        const filters = (call.request.filters as string[] | undefined) ?? []
        const infos = sn.list(filters)
        // in pages, as containerd's own service sends them
        for (let at = 0; at < infos.length; at += 100) call.write({ info: infos.slice(at, at + 100).map(wireInfo) })
        call.end()
        log(`List ${filters.join(' ')} ok: ${infos.length}`)
      } catch (err) {
        const status = toStatus(err)
        log(`List failed: ${status.details}`)
        // grpc-js ends a server stream with the status an 'error' event carries
        call.emit('error', status)
      }
    },
  }
}

function describe(r: Req): string {
  const parts: string[] = []
  for (const k of ['key', 'name', 'parent'] as const) if (typeof r[k] === 'string' && r[k] !== '') parts.push(`${k}=${r[k]}`)
  return parts.join(' ')
}

export interface SnapshotsServer {
  address: string
  /** stops taking calls, lets those in flight finish, removes the socket */
  close(): Promise<void>
}

/** Serves `sn` on the unix socket `address` (a stale socket file there is replaced). */
export async function serveSnapshots(sn: Snapshotter, address: string, log: Log): Promise<SnapshotsServer> {
  await fs.rm(address, { force: true })
  const server = new grpc.Server()
  server.addService(snapshotsService(), handlers(sn, log))
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${address}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()))
  })
  return {
    address,
    close: async () => {
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()))
      await fs.rm(address, { force: true })
    },
  }
}
