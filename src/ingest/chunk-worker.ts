// Worker thread entry: cuts, hashes and stores the files the pool hands it (see worker-pool.ts).
import { parentPort } from 'node:worker_threads'
import { openStore } from '../store/open-store.js'
import type { Store } from '../store/store.js'
import { SnapdirError } from '../util/errors.js'
import { FileProcessor, jobBytes, type FileJob, type Job } from './file-processor.js'
import type { FromWorker, ToWorker } from './worker-pool.js'

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
    const e = err instanceof SnapdirError ? err : new SnapdirError('ERR_SOURCE', (err as Error).message)
    post({ type: 'error', code: e.code, message: e.message })
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
