// Mount's lifecycle in this process: open() that fails after the kernel mount is up leaves no mount
// behind, close() is idempotent, and a mount ended from elsewhere closes without unmounting again.
// These tests never read the mount's files (a process must not read a mount it serves itself); they
// only look at /proc/self/mountinfo, which the kernel answers without asking the FUSE server. The last
// one needs the build (npm run build), as the CLI tests do.
import { once } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { afterEach, expect, it } from 'vitest'
import { Mount, type MountOptions } from '../../src/mount/mount.js'
import { unmount } from '../../src/mount/unmount.js'
import { FileStore } from '../../src/store/file-store.js'
import { ROOT, bytes, snapdirOk, tempDir } from '../helpers/cli.js'
import { isMounted } from '../helpers/mount.js'

const opened: Mount[] = []
afterEach(async () => {
  // a failed test must not leave a mount served by the test process
  for (const m of opened.splice(0)) await m.close({ force: true }).catch(() => {})
})

async function pushed(): Promise<{ options: MountOptions; mnt: string; store: FileStore; logged: string[] }> {
  const t = tempDir()
  const src = path.join(t, 'src')
  const mnt = path.join(t, 'mnt')
  mkdirSync(path.join(src, 'd'), { recursive: true })
  mkdirSync(mnt)
  writeFileSync(path.join(src, 'd', 'big.bin'), bytes('lifecycle', 300_000))
  writeFileSync(path.join(src, 'small.txt'), 'small\n')
  const id = (await snapdirOk(['push', '--store', path.join(t, 'store'), src])).trim()
  const store = new FileStore(path.join(t, 'store'))
  await store.open()
  const logged: string[] = []
  const options: MountOptions = {
    store, id, mountpoint: mnt, diskCache: null, memoryBytes: 1 << 24, jobs: 4, timeoutMs: 5_000, readAheadBytes: 0,
    log: (line) => logged.push(line),
  }
  return { options, mnt, store, logged }
}

it('a failure after the kernel mount is up unmounts before open() rejects', async () => {
  const { options, mnt } = await pushed()
  let mountedThen = false
  const failing = Mount.open({
    ...options,
    onMounted: (m) => {
      opened.push(m)
      mountedThen = isMounted(mnt)
      throw new Error('failed after mounting')
    },
  })
  await expect(failing).rejects.toThrow('failed after mounting')
  expect(mountedThen).toBe(true)
  expect(isMounted(mnt)).toBe(false)
  // and the mountpoint is free again
  const again = await Mount.open(options)
  opened.push(again)
  expect(isMounted(mnt)).toBe(true)
  await again.close()
  expect(isMounted(mnt)).toBe(false)
}, 60_000)

it('close() unmounts once: a second call returns the same promise, and resolves with the mount ended', async () => {
  const { options, mnt } = await pushed()
  const m = await Mount.open(options)
  opened.push(m)
  expect(isMounted(mnt)).toBe(true)
  const first = m.close()
  expect(m.close()).toBe(first)
  await first
  expect(isMounted(mnt)).toBe(false)
  await expect(m.ended).resolves.toBeUndefined()
  await expect(m.close()).resolves.toBeUndefined()
}, 60_000)

it('a mount unmounted from elsewhere ends, and close() then has nothing to unmount', async () => {
  const { options, mnt } = await pushed()
  const m = await Mount.open(options)
  opened.push(m)
  await unmount(mnt)
  await m.ended
  expect(isMounted(mnt)).toBe(false)
  await expect(m.close()).resolves.toBeUndefined()
  await expect(m.close({ force: true })).resolves.toBeUndefined()
}, 60_000)

it('a mount whose JS side goes away without close() (a worker ended) is detached by the handle finalizer', async () => {
  const { options, mnt, store } = await pushed()
  // the built module, as the CLI runs it: a worker thread cannot load the TypeScript sources
  const code = `
    const { parentPort, workerData } = require('node:worker_threads')
    import(workerData.mountJs).then(async ({ Mount }) => {
      const { FileStore } = await import(workerData.storeJs)
      const store = new FileStore(workerData.store)
      await store.open()
      await Mount.open({ ...workerData.options, store, log: () => {} })
      parentPort.postMessage('mounted')
    })`
  const worker = new Worker(code, {
    eval: true,
    workerData: {
      mountJs: path.join(ROOT, 'dist', 'mount', 'mount.js'),
      storeJs: path.join(ROOT, 'dist', 'store', 'file-store.js'),
      store: store.root,
      options: { ...options, store: undefined, log: undefined },
    },
  })
  await once(worker, 'message')
  expect(isMounted(mnt)).toBe(true)
  await worker.terminate()
  expect(isMounted(mnt)).toBe(false)
}, 60_000)
