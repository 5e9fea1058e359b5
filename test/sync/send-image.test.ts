// sendImage against a registry stand-in that records what it is asked: two images sharing a blob,
// sent at once into one repository (the tags of a sync --config, copied in parallel), put that blob
// once, the second send waiting for the first's upload and then finding it; a failed upload does not
// keep the other from trying itself.
import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { describe, expect, test } from 'vitest'
import type { TransferPlan } from '../../src/oci/transfer-plan.js'
import { sendImage, type ImageDestination } from '../../src/sync/send-image.js'

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`

function plan(name: string, blobs: Buffer[]): TransferPlan {
  const manifest = Buffer.from(JSON.stringify({ name, blobs: blobs.map(digestOf) }))
  return {
    blobs: blobs.map((b) => ({
      digest: digestOf(b),
      descriptor: { mediaType: 'application/octet-stream', digest: { algorithm: 'sha256', hex: digestOf(b).slice(7) }, size: b.length, urls: [], annotations: {} },
      what: `blob of ${name}`,
      content: async function* () {
        yield b
      },
    })) as unknown as TransferPlan['blobs'],
    manifests: [{ digest: digestOf(manifest), mediaType: 'application/vnd.oci.image.manifest.v1+json', bytes: manifest, what: `manifest of ${name}` }],
    rewritten: false,
  }
}

/** A registry in memory; each upload waits until `release` is called, so that sends overlap. */
function registry(failFirst = false) {
  const blobs = new Set<string>()
  const puts: string[] = []
  let release: () => void = () => {}
  const gate = new Promise<void>((resolve) => (release = resolve))
  let failed = false
  const to: ImageDestination = {
    registry: 'example.test',
    hasBlob: async (repo, digest) => blobs.has(`${repo}@${digest}`),
    mountBlob: async () => false,
    putBlob: async (repo, digest, _size, open: () => Readable) => {
      puts.push(digest)
      for await (const _ of open()) void _
      await gate
      if (failFirst && !failed) {
        failed = true
        throw new Error('upload failed')
      }
      blobs.add(`${repo}@${digest}`)
    },
    headManifest: async () => null,
    putManifest: async (_repo, _ref, bytes) => digestOf(bytes),
  }
  return { to, puts, release }
}

describe('sendImage, two sends at once', () => {
  const base = Buffer.from('the shared base layer')
  const one = Buffer.from('config one')
  const two = Buffer.from('config two')

  test('a blob both images have goes up once; the second send counts it skipped', async () => {
    const r = registry()
    const a = sendImage(plan('a', [base, one]), r.to, 'app', 'a')
    const b = sendImage(plan('b', [base, two]), r.to, 'app', 'b')
    // both sends are under way before any upload ends
    await new Promise((resolve) => setImmediate(resolve))
    r.release()
    const [sa, sb] = await Promise.all([a, b])
    expect(r.puts.filter((d) => d === digestOf(base))).toHaveLength(1)
    expect(r.puts).toHaveLength(3)
    expect(sa.blobs.sent + sb.blobs.sent).toBe(3)
    expect(sa.blobs.skipped + sb.blobs.skipped).toBe(1)
  })

  test('into two repositories, each gets its own upload', async () => {
    const r = registry()
    const a = sendImage(plan('a', [base]), r.to, 'one', 'a')
    const b = sendImage(plan('b', [base]), r.to, 'two', 'b')
    r.release()
    await Promise.all([a, b])
    expect(r.puts).toEqual([digestOf(base), digestOf(base)])
  })

  test('when the first upload fails, the waiting send uploads the blob itself', async () => {
    const r = registry(true)
    const a = sendImage(plan('a', [base]), r.to, 'app', 'a')
    const b = sendImage(plan('b', [base]), r.to, 'app', 'b')
    r.release()
    const [ra, rb] = await Promise.allSettled([a, b])
    expect(ra.status).toBe('rejected')
    expect(rb.status).toBe('fulfilled')
    expect(r.puts).toEqual([digestOf(base), digestOf(base)])
  })
})
