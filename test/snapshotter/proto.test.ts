// Our proto/containerd/*.proto against containerd's own (Debian's golang-github-containerd-containerd-dev,
// which scripts/setup.sh installs: containerd 1.6.20's sources): every message, field number, type and
// label, every method and its streaming the same, so the wire is the same.
import { existsSync } from 'node:fs'
import path from 'node:path'
import * as protoLoader from '@grpc/proto-loader'
import { expect, test } from 'vitest'
import { PROTO_DIR } from '../../src/snapshotter/grpc-service.js'

const GOCODE = '/usr/share/gocode/src'
const THEIRS = path.join(GOCODE, 'github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto')

interface Field {
  name: string
  number: number
  label: string
  type: string
  typeName: string
}
type Loaded = Record<string, { type?: { field?: Field[]; value?: Array<{ name: string; number: number }> } } & Record<string, unknown>>

/** Each message and enum of containerd's packages, as comparable text; and each method. */
function shape(def: protoLoader.PackageDefinition): { types: Record<string, string>; methods: Record<string, string> } {
  const types: Record<string, string> = {}
  const methods: Record<string, string> = {}
  for (const [name, value] of Object.entries(def as unknown as Loaded)) {
    if (!name.startsWith('containerd.')) continue
    if (/\.(Snapshots|Content|Images|Leases|Diff)$/.test(name)) {
      for (const [m, d] of Object.entries(value as Record<string, protoLoader.MethodDefinition<unknown, unknown>>)) {
        methods[`${name}.${m}`] = `${d.path} ${d.requestStream} ${d.responseStream} ${(d.requestType.type as { name: string }).name} -> ${(d.responseType.type as { name: string }).name}`
      }
      continue
    }
    const t = value.type!
    types[name] = t.field
      ? t.field.map((f) => `${f.name}=${f.number} ${f.label} ${f.type} ${f.typeName}`).join('; ')
      : (t.value ?? []).map((v) => `${v.name}=${v.number}`).join('; ')
  }
  return { types, methods }
}

test("our snapshots.proto is containerd's on the wire", (context) => {
  if (!existsSync(THEIRS)) {
    // loud: the check needs containerd's sources, which scripts/setup.sh installs
    console.warn(`SKIPPED: ${THEIRS} is missing (Debian package golang-github-containerd-containerd-dev; scripts/setup.sh installs it)`)
    context.skip()
  }
  const theirs = shape(
    protoLoader.loadSync(THEIRS, { keepCase: true, includeDirs: [GOCODE, path.join(GOCODE, 'github.com/gogo/protobuf'), path.join(GOCODE, 'github.com/gogo/protobuf/protobuf')] }),
  )
  const ours = shape(protoLoader.loadSync('snapshots.proto', { keepCase: true, includeDirs: [PROTO_DIR] }))
  expect(Object.keys(ours.methods).filter((m) => m.includes('.Snapshots.')).map((m) => m.split('.').at(-1)).sort()).toEqual(['Cleanup', 'Commit', 'List', 'Mounts', 'Prepare', 'Remove', 'Stat', 'Update', 'Usage', 'View'])
  expect(ours.methods).toEqual(theirs.methods)
  expect(Object.keys(theirs.types).length).toBeGreaterThanOrEqual(20)
  expect(ours.types).toEqual(theirs.types)
})

test("the parts of containerd's content, images, leases and diff services that containerd pull uses are containerd's on the wire", (context) => {
  const files = ['content', 'images', 'leases', 'diff'].map((s) => path.join(GOCODE, `github.com/containerd/containerd/api/services/${s}/v1/${s}.proto`))
  if (!files.every(existsSync)) {
    console.warn(`SKIPPED: containerd's .proto files are missing (Debian package golang-github-containerd-containerd-dev; scripts/setup.sh installs it)`)
    context.skip()
  }
  const include = { keepCase: true, includeDirs: [GOCODE, path.join(GOCODE, 'github.com/gogo/protobuf'), path.join(GOCODE, 'github.com/gogo/protobuf/protobuf')] }
  const theirs = shape(protoLoader.loadSync(files, include))
  const ours = shape(protoLoader.loadSync(['content.proto', 'images.proto', 'leases.proto', 'diff.proto'], { keepCase: true, includeDirs: [PROTO_DIR] }))
  expect(Object.keys(ours.methods).length).toBeGreaterThanOrEqual(10)
  expect(ours.methods['containerd.services.diff.v1.Diff.Apply']).toBeDefined()
  // ours is a subset: each method and message we have is theirs exactly
  for (const [m, d] of Object.entries(ours.methods)) expect([m, d]).toEqual([m, theirs.methods[m]])
  for (const [t, d] of Object.entries(ours.types)) expect([t, d]).toEqual([t, theirs.types[t]])
})
