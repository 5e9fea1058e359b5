import os from 'node:os'

// libuv's thread pool runs push's native batches (one per core and one more: ingest/native-run.ts),
// its background flush and the fs calls of every command. It has 4 threads unless told, and reads the
// setting once, at its first use: this module is main.ts's first import, so it runs before that.
if (process.env.UV_THREADPOOL_SIZE === undefined) {
  process.env.UV_THREADPOOL_SIZE = String(Math.max(4, os.availableParallelism() + 2))
}
