// How fast a mount of a snapshot held in S3 is up: what it asks of the store before the kernel mount
// appears. Through a proxy that holds each request back 25 ms (a link's round trip), the mount must
// fetch what does not depend on what came before at once: the store's open (a HEAD of the bucket),
// its config and the image name together,
// the chunks of the bundle's documents (index.json, manifest, config) in one round rather than one
// after another, the layer refs together, the layer trees and their parts together. A second mount
// with the same cache dir reads every tree root and part from the disk cache. Reads stay right.
import { readFileSync, mkdirSync } from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { snapdirOk, tempDir } from '../helpers/cli.js'
import { startMount } from '../helpers/mount.js'
import { blobFile, buildUmociImage, firstManifest, requireTools } from '../helpers/oci.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'
import { areaOf, rounds, startStoreProxy, type StoreProxy, type StoreRequest } from '../helpers/store-proxy.js'

requireTools('umoci', 'setfattr')

const PREFIX = 'team/images'
const STORE = `s3://start/${PREFIX}`
const IMAGE = 'app/start:v1'
const DELAY_MS = 25
const TEST_TIMEOUT = 90_000

let server: S3Server
let proxy: StoreProxy
let env: Record<string, string>
let layout = ''
let diffIds: string[] = []
let configBlob: Buffer

beforeAll(async () => {
  server = await startS3Server(['start'])
  proxy = await startStoreProxy(server.endpoint)
  env = { ...server.env, AWS_ENDPOINT_URL: proxy.endpoint }
  const scratch = tempDir('snapdir-mount-start-')
  layout = path.join(scratch, 'image')
  buildUmociImage(layout, 'v1', path.join(scratch, 'bundle'))
  await snapdirOk(['push', '--store', STORE, '--image', IMAGE, layout], { env })
  const { manifest } = firstManifest(layout)
  configBlob = readFileSync(blobFile(layout, manifest.config.digest))
  diffIds = (JSON.parse(configBlob.toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids
  proxy.delayMs = DELAY_MS
}, TEST_TIMEOUT)

afterAll(async () => {
  await proxy?.close()
  await server?.close()
})

/** Mounts with `args`, and returns what was asked of the store before the mount was up. */
async function mountCounted(args: string[], cacheDir: string) {
  const mp = path.join(tempDir('snapdir-mp-'), 'mnt')
  mkdirSync(mp)
  proxy.requests = []
  const m = await startMount(['--store', STORE, '--cache-dir', cacheDir, ...args], mp, env)
  const before: StoreRequest[] = [...proxy.requests]
  // the read of a stored access trace is not waited for (it goes beside the tree): not a round trip
  // of the mount's, though one made after the image name and before a slow open ended looks like one
  const waited = before.filter((r) => !r.key.includes('/refs/traces/'))
  const by = (area: string, method = 'GET') => before.filter((r) => r.method === method && areaOf(r, PREFIX) === area)
  return { m, mp, before, waited, by }
}

/** Every chunk GET of the list came before any of them was answered: they were made at once. */
function madeAtOnce(list: StoreRequest[]): boolean {
  const firstEnd = Math.min(...list.map((r) => r.end))
  return list.every((r) => r.start < firstEnd)
}

describe('snapdir mount: the store round trips before the mount is up', () => {
  it('--view rootfs: documents, layer refs and layer trees each fetched at once; a second mount reads the trees from the disk cache', async () => {
    const cache = tempDir('snapdir-start-cache-')
    const first = await mountCounted(['--image', IMAGE, '--view', 'rootfs'], cache)
    const { before, waited, by } = first
    const detail = before.map((r) => `${r.method} ${areaOf(r, PREFIX)} ${r.start.toFixed(0)}-${r.end.toFixed(0)}`).join('\n')
    expect(by('config', 'HEAD'), 'the store config is read with one GET').toHaveLength(0)
    expect(by('config')).toHaveLength(1)
    expect(by('(bucket)', 'HEAD'), 'the open is that GET of the config, not a HeadBucket of its own').toHaveLength(0)
    const imageName = by('refs').filter((r) => r.key.includes('/refs/images/'))
    expect(imageName, detail).toHaveLength(1)
    expect(madeAtOnce([...by('(bucket)', 'HEAD'), ...by('config'), ...imageName]), `the open, the config and the image name at once\n${detail}`).toBe(true)
    // index.json, the manifest and the config are small files packed together: their chunks in one go
    expect(by('chunks').length, detail).toBeGreaterThan(0)
    expect(madeAtOnce(by('chunks')), detail).toBe(true)
    const layerRefs = by('refs').filter((r) => r.key.includes('/refs/layers/'))
    expect(layerRefs, detail).toHaveLength(diffIds.length)
    expect(madeAtOnce(layerRefs), detail).toBe(true)
    // open + config + image name, bundle root, its parts, documents, layer refs, layer roots, their parts
    expect(rounds(waited), detail).toBeLessThanOrEqual(7)
    expect(await fs.readFile(path.join(first.mp, 'rootfs/etc/hello'), 'utf8')).toBe('hello from layer 1\n')
    expect(await fs.readFile(path.join(first.mp, 'rootfs/etc/added'), 'utf8')).toBe('added in layer 2\n')
    expect((await fs.readFile(path.join(first.mp, 'config.json'))).equals(configBlob)).toBe(true)
    expect((await first.m.stop()).status).toBe(0)

    const second = await mountCounted(['--image', IMAGE, '--view', 'rootfs'], cache)
    expect(second.by('trees'), 'tree roots come from the disk cache').toHaveLength(0)
    expect(second.by('tree-parts'), 'tree parts come from the disk cache').toHaveLength(0)
    expect(second.before.length).toBeLessThan(before.length)
    expect(await fs.readFile(path.join(second.mp, 'rootfs/bin/tool'), 'utf8')).toBe('#!/bin/sh\necho tool\n')
    expect((await second.m.stop()).status).toBe(0)
  }, TEST_TIMEOUT)

  it('--layer: the refs of the chain at once, then the trees and their parts', async () => {
    const { before, waited, by, mp, m } = await mountCounted(diffIds.flatMap((d) => ['--layer', d]), tempDir('snapdir-start-cache-'))
    const detail = before.map((r) => `${r.method} ${areaOf(r, PREFIX)} ${r.start.toFixed(0)}-${r.end.toFixed(0)}`).join('\n')
    const layerRefs = by('refs').filter((r) => r.key.includes('/refs/layers/'))
    expect(layerRefs, detail).toHaveLength(diffIds.length)
    expect(madeAtOnce(layerRefs), detail).toBe(true)
    expect(madeAtOnce(by('trees')), detail).toBe(true)
    // open + config + layer refs, layer roots, their parts (the store's format is checked beside the reads)
    expect(rounds(waited), detail).toBeLessThanOrEqual(3)
    expect((await fs.readdir(mp)).sort()).toEqual(['bin'])
    expect((await m.stop()).status).toBe(0)
  }, TEST_TIMEOUT)
})
