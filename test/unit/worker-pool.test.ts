// ingest/worker-pool.ts with real worker threads: they run from the built JS (dist/, as the CLI does;
// from TypeScript sources the pool cuts in this thread), with the JS chunker so the native batches
// do not take the jobs. What crosses the thread boundary: results, and errors with their code,
// message and data; an error that is not a source problem is never reported as one.
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_CHUNKER } from '../../src/chunk/params.js'
import { processInThisThread } from '../../src/ingest/file-processor.js'
import type { FileJob, FileResult, Job } from '../../src/ingest/jobs.js'
import type { ProcessedFiles } from '../../src/ingest/pool-run.js'
import type * as PoolModule from '../../src/ingest/worker-pool.js'
import { ROOT, tempDir } from '../helpers/cli.js'
import { bytes } from '../helpers/bytes.js'

const { WorkerPool } = (await import(pathToFileURL(path.join(ROOT, 'dist', 'ingest', 'worker-pool.js')).href)) as typeof PoolModule

let chunkerBefore: string | undefined
beforeAll(() => {
  chunkerBefore = process.env.SNAPDIR_CHUNKER
  process.env.SNAPDIR_CHUNKER = 'js' // read by the workers too (they inherit the environment)
})
afterAll(() => {
  if (chunkerBefore === undefined) delete process.env.SNAPDIR_CHUNKER
  else process.env.SNAPDIR_CHUNKER = chunkerBefore
})

function fileJob(dir: string, index: number, name: string, content: Buffer): FileJob {
  const file = path.join(dir, name)
  writeFileSync(file, content)
  return { index, source: Buffer.from(file), size: content.length, sparse: false }
}

/** A job whose path is made when asked for, as push's are (build-snapshot.ts): a getter, which a structured clone leaves out. */
class LazyJob implements FileJob {
  constructor(readonly index: number, private readonly dir: string, private readonly name: string, readonly size: number, readonly sparse = false) {}

  get source(): Buffer {
    return Buffer.from(path.join(this.dir, this.name))
  }
}

/** Runs jobs through a pool of two workers, IDs only (no store); closes the pool. */
async function runJobs(jobs: Job[]): Promise<ProcessedFiles & { results: FileResult[] }> {
  const pool = new WorkerPool(2)
  const results: FileResult[] = []
  try {
    const run = pool.start({ params: DEFAULT_CHUNKER, store: null, onResult: (r) => (results[r.index] = r) })
    run.add(jobs)
    run.finish()
    return { ...(await run.done), results }
  } finally {
    await pool.close()
  }
}

async function failureOf(p: Promise<unknown>): Promise<{ code: string; message: string; data: Record<string, unknown> }> {
  const err: unknown = await p.then(() => null, (e: unknown) => e)
  expect(err, 'the run must fail').toBeInstanceOf(Error)
  return err as { code: string; message: string; data: Record<string, unknown> }
}

describe('WorkerPool with worker threads', () => {
  it('gives the results this thread gives: files cut whole, inline and packed', async () => {
    const dir = tempDir()
    const jobs: Job[] = [
      fileJob(dir, 0, 'large', bytes('large', 1_500_000)),
      fileJob(dir, 1, 'inline', bytes('inline', 3000)),
      { files: [fileJob(dir, 2, 'p0', bytes('p0', 5000)), fileJob(dir, 3, 'p1', bytes('p1', 60_000)), fileJob(dir, 4, 'p2', bytes('p2', 9000))] },
      fileJob(dir, 5, 'empty', Buffer.alloc(0)),
    ]
    writeFileSync(path.join(dir, 'lazy'), bytes('lazy', 70_000))
    jobs.push(new LazyJob(6, dir, 'lazy', 70_000), { files: [new LazyJob(7, dir, 'p1', 60_000)] })
    const threads = await runJobs(jobs)
    const here = await processInThisThread(jobs, DEFAULT_CHUNKER, null)
    expect(threads.results).toHaveLength(8)
    expect(threads.results).toEqual(here.results)
  })

  it('reports a file it cannot read as ERR_SOURCE, with the message and data the worker gave', async () => {
    const dir = tempDir()
    const missing = path.join(dir, 'gone')
    const err = await failureOf(runJobs([fileJob(dir, 0, 'there', bytes('there', 100_000)), { index: 1, source: Buffer.from(missing), size: 10, sparse: false }]))
    expect(err.code).toBe('ERR_SOURCE')
    expect(err.message).toMatch(new RegExp(`^cannot read ${missing}: ENOENT`))
    expect(err.data).toEqual({ source: missing })
  })

  it('reports an error of its own (a bug) as ERR_INTERNAL, never as a problem with the source', async () => {
    // a job no caller makes (its source is not a path): the worker throws a TypeError on it
    const err = await failureOf(runJobs([{ files: [{ index: 0, source: 7, size: 5, sparse: false }] } as unknown as Job]))
    expect(err.code).toBe('ERR_INTERNAL')
    expect(err.message).toMatch(/^internal error in a chunk worker: TypeError: /)
  })

  it('runs once, closes once however often close() is called, and runs nothing after', async () => {
    const pool = new WorkerPool(2)
    const run = pool.start({ params: DEFAULT_CHUNKER, store: null })
    expect(() => pool.start({ params: DEFAULT_CHUNKER, store: null })).toThrow(/worker pool has run already/)
    run.finish()
    expect(await run.done).toEqual({ stats: { chunksWritten: 0, bytesWritten: 0 } })
    const closing = pool.close()
    expect(pool.close()).toBe(closing)
    await closing
    expect(() => pool.start({ params: DEFAULT_CHUNKER, store: null })).toThrow(/worker pool is closed/)
  })
})
