// Worker thread entry: cuts, hashes and stores the files the pool hands it (see worker-pool.ts).
import { parentPort } from 'node:worker_threads'
import { openStore } from '../store/open-store.js'
import type { Store } from '../store/store.js'
import { FileProcessor } from './file-processor.js'
import { jobBytes, type FileJob, type Job } from './jobs.js'
import { toWire, type FromWorker, type ToWorker } from './worker-protocol.js'

const port = parentPort!
const post = (m: FromWorker): void => port.postMessage(m)

// structured clone turned Buffers into plain Uint8Arrays
function reviveFile(f: FileJob): FileJob {
  return { ...f, source: Buffer.from(f.source.buffer, f.source.byteOffset, f.source.byteLength) }
}

function revive(job: Job): Job {
  return 'files' in job ? { files: job.files.map(reviveFile) } : reviveFile(job)
}

let store: Store | null = null
let processor: FileProcessor | null = null

port.on('message', (m: ToWorker) => {
  void handle(m).catch((err: unknown) => {
    const error = toWire(err)
    try {
      post({ type: 'error', error })
    } catch {
      // data that does not clone (it should all be plain): the code and message still cross
      post({ type: 'error', error: { ...error, data: {} } })
    }
  })
})

async function handle(m: ToWorker): Promise<void> {
  if (m.type === 'init') {
    store = m.store === null ? null : openStore(m.store)
    await store?.open()
    processor = new FileProcessor(m.params, store)
    post({ type: 'ready' })
  } else if (m.type === 'jobs') {
    const results = await processor!.processJobs(m.jobs.map(revive))
    const bytes = m.jobs.reduce((a, j) => a + jobBytes(j), 0)
    post({ type: 'results', results, bytes })
  } else {
    await processor!.drain()
    await store?.close()
    post({ type: 'finished', stats: processor!.stats })
  }
}
