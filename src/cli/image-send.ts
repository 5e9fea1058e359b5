// What pull docker:// and sync to a registry share on the command line: the client for each side,
// the progress on stderr and the result on stdout (a line, or with --json one JSON object).
import { formatBytes } from './numbers.js'
import { progressBar } from './progress.js'
import type { BlobOutcome, SendOptions, SendSummary } from '../sync/send-image.js'

/** Progress of a send on stderr: a byte bar over the image's blobs (those skipped or mounted count at once). */
export function sendProgress(label: string): { options: Pick<SendOptions, 'onPlan' | 'onBlob' | 'onBytes'>; stop(): void } {
  const bar = progressBar('bytes')
  return {
    options: {
      onPlan: (_blobs, bytes) => bar.start(bytes, label),
      onBlob: (_digest, size, outcome: BlobOutcome) => {
        if (outcome !== 'sent') bar.add(size)
      },
      onBytes: (n) => bar.add(n),
    },
    stop: () => bar.stop(),
  }
}

/** The result of one image sent to `image` (docker://…), on stdout. */
export function printSend(image: string, s: SendSummary & { rewritten: boolean; referrers?: number }, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify({ image, ...s }) + '\n')
    return
  }
  const at = `${image}@${s.digest}`
  if (s.alreadyComplete) {
    process.stdout.write(`${at} is already complete\n`)
    return
  }
  const parts = [`sent ${s.blobs.sent} blobs (${formatBytes(s.bytes.sent)})`, `skipped ${s.blobs.skipped} (${formatBytes(s.bytes.skipped)})`]
  if (s.blobs.mounted > 0) parts.push(`mounted ${s.blobs.mounted} (${formatBytes(s.bytes.mounted)})`)
  parts.push(`${s.manifests.sent} manifests`)
  if (s.referrers !== undefined && s.referrers > 0) parts.push(`${s.referrers} referrers`)
  const note = s.rewritten ? ' (an index of the platforms asked for: its digest is new)' : ''
  process.stdout.write(`${at}: ${parts.join(', ')}${note}\n`)
}

/** docker://registry/repository[:tag], the name results give an image (its digest follows as @…) */
export function imageName(registry: string, repository: string, tag?: string): string {
  return `docker://${registry}/${repository}${tag !== undefined ? `:${tag}` : ''}`
}
