// The CLI's error table (cli/run-command.ts): which errors are bad usage (2), which failures (1), and
// which say snapdir has a bug. The CLI tests check what a user sees for real inputs; a bug cannot be
// produced on purpose through the CLI, so the table and its one line are checked here.
import { afterEach, describe, expect, test, vi } from 'vitest'
import { outcomeOf, reportError } from '../../src/cli/run-command.js'
import { SnapdirError, UsageError } from '../../src/util/errors.js'

function errno(code: string, syscall: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code, syscall, errno: -28 })
}

describe('outcomeOf', () => {
  test.each([
    { err: new UsageError('--jobs 0: expected an integer from 1 to 1024'), status: 2, bug: false },
    { err: new SnapdirError('ERR_BAD_ID', "malformed snapshot ID 'x'"), status: 2, bug: false },
    { err: new SnapdirError('ERR_BAD_STORE_URL', "store URL 'http://x'"), status: 2, bug: false },
    { err: new SnapdirError('ERR_OBJECT_CORRUPT', 'chunk 3fa1 from /s: expected 3fa1, computed 9c0e'), status: 1, bug: false },
    { err: new SnapdirError('ERR_STORE_UNREACHABLE', 'store s3://b/p: connection refused'), status: 1, bug: false },
    { err: errno('ENOSPC', 'write', 'ENOSPC: no space left on device, write'), status: 1, bug: false },
  ])('$err.message: exit $status, the message as it is', ({ err, status, bug }) => {
    expect(outcomeOf(err)).toEqual({ status, line: err.message, bug })
  })

  test('a plain Error or a thrown non-Error is a bug, named as one', () => {
    expect(outcomeOf(new TypeError("Cannot read properties of undefined (reading 'length')"))).toEqual({
      status: 1,
      line: "internal error: TypeError: Cannot read properties of undefined (reading 'length')",
      bug: true,
    })
    expect(outcomeOf('a string')).toEqual({ status: 1, line: 'internal error: a string', bug: true })
    // snapdir's own failures coded as such (ingest's internalError) keep their message
    const internal = new SnapdirError('ERR_INTERNAL', 'internal error in a chunk worker: RangeError: x')
    expect(outcomeOf(internal)).toEqual({ status: 1, line: internal.message, bug: true })
    // an Error with an errno-like code but from no system call is not the machine's answer
    expect(outcomeOf(Object.assign(new Error('x'), { code: 'EFOO' })).bug).toBe(true)
  })
})

describe('reportError', () => {
  let written = ''
  const saved = { exitCode: process.exitCode, debug: process.env.SNAPDIR_DEBUG }
  afterEach(() => {
    vi.restoreAllMocks()
    process.exitCode = saved.exitCode
    if (saved.debug === undefined) delete process.env.SNAPDIR_DEBUG
    else process.env.SNAPDIR_DEBUG = saved.debug
    written = ''
  })
  function capture(): void {
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written += chunk.toString()
      return true
    })
  }

  test('one line, and the exit status of the table', () => {
    delete process.env.SNAPDIR_DEBUG
    capture()
    reportError(new UsageError('--jobs 0: expected an integer from 1 to 1024'))
    expect(written).toBe('snapdir: --jobs 0: expected an integer from 1 to 1024\n')
    expect(process.exitCode).toBe(2)
  })

  test('a bug: one line that says so and how to see where; no stack', () => {
    delete process.env.SNAPDIR_DEBUG
    capture()
    reportError(new RangeError('offset out of range'))
    expect(written).toBe('snapdir: internal error: RangeError: offset out of range (a bug in snapdir; SNAPDIR_DEBUG=1 shows where)\n')
    expect(process.exitCode).toBe(1)
  })

  test("a message over several lines (a tool's output) is shown on one", () => {
    delete process.env.SNAPDIR_DEBUG
    capture()
    reportError(new SnapdirError('ERR_STORE_IO', 'fusermount3 failed:\n  no such device\n  or address\n'))
    expect(written).toBe('snapdir: fusermount3 failed: no such device; or address\n')
  })

  test('SNAPDIR_DEBUG=1: the stack and each cause below the line', () => {
    process.env.SNAPDIR_DEBUG = '1'
    capture()
    const cause = new Error('socket hang up')
    reportError(new SnapdirError('ERR_STORE_UNREACHABLE', 'store s3://b/p: unreachable', { cause }))
    const lines = written.split('\n')
    expect(lines[0]).toBe('snapdir: store s3://b/p: unreachable')
    expect(written).toMatch(/^SnapdirError: store s3:\/\/b\/p: unreachable\n {4}at /m)
    expect(written).toMatch(/^caused by: Error: socket hang up\n {4}at /m)
  })
})
