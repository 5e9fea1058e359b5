// Bad input on the command line, as a user meets it: one clear line on stderr that starts with
// `snapdir: ` and names what was given, exit 2 for bad usage and 1 for failure, no stack trace, and
// nothing written (no store created, no files added to one, no pull target). Also the parts of the
// CLI contract a script relies on: push prints only the ID, --help, the revisions JSON lines.
import { spawnSync } from 'node:child_process'
import { appendFileSync, chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { ID_RE, SNAPDIR, bytes, listFiles, manifest, snapdir, snapdirOk, tempDir, type RunResult } from '../helpers/cli.js'

const NOBODY = 65534

/** A small directory: a text file and a 100 KB file in a subdirectory. */
function smallDir(dir: string, seed = 'small'): string {
  mkdirSync(path.join(dir, 'sub'), { recursive: true })
  writeFileSync(path.join(dir, 'a.txt'), `hello from ${seed}\n`)
  writeFileSync(path.join(dir, 'sub', 'data.bin'), bytes(seed, 100_000))
  return dir
}

/** A store holding one snapshot of a small directory. */
async function pushedStore(): Promise<{ t: string; store: string; src: string; id: string }> {
  const t = tempDir()
  const src = smallDir(path.join(t, 'src'))
  const store = path.join(t, 'store')
  const id = (await snapdirOk(['push', '--store', store, src])).trim()
  expect(id).toMatch(ID_RE)
  return { t, store, src, id }
}

/**
 * The failure contract: exit status, nothing on stdout, exactly one line on stderr starting with
 * `snapdir: `, no stack trace, and the line names each of `mentions` (what the user gave).
 */
function expectOneLineError(r: RunResult, status: 1 | 2, ...mentions: string[]): string {
  const shown = `stderr was:\n${r.stderr}`
  expect(r.status, shown).toBe(status)
  expect(r.stdout, shown).toBe('')
  expect(r.stderr, 'no stack trace').not.toMatch(/^ {4}at /m)
  const lines = r.stderr.split('\n').filter((l) => l !== '')
  expect(lines, shown).toHaveLength(1)
  expect(r.stderr.endsWith('\n'), shown).toBe(true)
  const line = lines[0]!
  expect(line).toMatch(/^snapdir: \S/)
  for (const m of mentions) expect(line).toContain(m)
  return line
}

/** Runs the CLI as user nobody (no supplementary groups), for permission tests. */
function snapdirAsNobody(args: string[], cwd: string): Promise<RunResult> {
  return snapdir(args, { cwd, uid: NOBODY, env: { HOME: cwd } })
}

/**
 * A world-readable temp dir holding `locked/` (mode 000, with a file in it) that user nobody
 * cannot list; checked, so the test cannot pass by accident.
 */
function lockedDir(): { base: string; locked: string } {
  const base = tempDir()
  chmodSync(base, 0o755)
  const locked = path.join(base, 'locked')
  mkdirSync(locked)
  writeFileSync(path.join(locked, 'secret.txt'), 'secret\n')
  chmodSync(locked, 0o000)
  const probe = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'ls', locked], { encoding: 'utf8' })
  expect(probe.status, 'user nobody must not be able to list the locked dir').not.toBe(0)
  return { base, locked }
}

/**
 * For pushes that fail part-way, run as nobody: a world-readable base with src/ (smallDir plus
 * `bigFiles` files large enough to be cut while the scan goes on) and an empty store nobody owns.
 */
function nobodyPushSetup(bigFiles: number): { base: string; src: string; store: string } {
  const base = tempDir()
  chmodSync(base, 0o755)
  const src = smallDir(path.join(base, 'src'))
  for (let i = 0; i < bigFiles; i++) writeFileSync(path.join(src, `big${i}.bin`), bytes(`big${i}`, 400_000))
  const store = path.join(base, 'store')
  mkdirSync(store)
  expect(spawnSync('chown', ['-R', `${NOBODY}:${NOBODY}`, store]).status).toBe(0)
  return { base, src, store }
}

/** What a push that failed left in the store besides chunks: must be nothing (no tree, no revision). */
function notChunks(store: string): string[] {
  return listFiles(store).filter((f) => !f.startsWith('chunks/') && f !== 'config')
}

const HEX63 = 'a'.repeat(63)
const MALFORMED_IDS = ['zz', HEX63, 'a'.repeat(65), 'g' + HEX63, `${HEX63}-`]
const UNKNOWN_ID = '0123456789abcdef'.repeat(4)
// `mention` is what the one line must name (the URL as typed, or "store" for an empty one)
const BAD_URLS: Array<{ url: string; mention: string }> = [
  { url: 'http://x', mention: 'http://x' },
  { url: '', mention: 'store' },
  { url: 'file://somehost/srv/store', mention: 'file://somehost/srv/store' },
]

describe('push', () => {
  test('prints only the snapshot ID on stdout: the ID id computes and the store holds', async () => {
    const t = tempDir()
    const src = smallDir(path.join(t, 'src'))
    const store = path.join(t, 'store')
    const r = await snapdir(['push', '--store', store, src])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^[0-9a-f]{64}\n$/)
    const id = r.stdout.trim()
    expect((await snapdirOk(['id', src])).trim()).toBe(id)
    expect(existsSync(path.join(store, 'trees', id.slice(0, 2), id))).toBe(true)
  })

  test('DIR that does not exist: exit 2 naming it, and no store is created', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const missing = path.join(t, 'no-such-dir')
    expectOneLineError(await snapdir(['push', '--store', store, missing]), 2, missing)
    expect(existsSync(store), 'the store must not be created by a push that failed before reading anything').toBe(false)
  })

  test('DIR that does not exist: an existing store gains no files', async () => {
    const { t, store } = await pushedStore()
    const before = listFiles(store)
    const missing = path.join(t, 'no-such-dir')
    expectOneLineError(await snapdir(['push', '--store', store, missing]), 2, missing)
    expect(listFiles(store)).toEqual(before)
  })

  test('DIR that is a regular file: exit 2 naming it, and no store is created', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const file = path.join(t, 'file.txt')
    writeFileSync(file, 'not a directory\n')
    expectOneLineError(await snapdir(['push', '--store', store, file]), 2, file)
    expect(existsSync(store), 'the store must not be created by a push that failed before reading anything').toBe(false)
  })

  test('DIR that is a regular file: an existing store gains no files', async () => {
    const { t, store } = await pushedStore()
    const before = listFiles(store)
    const file = path.join(t, 'file.txt')
    writeFileSync(file, 'not a directory\n')
    expectOneLineError(await snapdir(['push', '--store', store, file]), 2, file)
    expect(listFiles(store)).toEqual(before)
  })

  test('unreadable DIR (run as nobody) into a store nobody may write: exit 1 naming DIR, store gains no files', async () => {
    const { base, locked } = lockedDir()
    const store = path.join(base, 'store')
    const seed = smallDir(path.join(base, 'seed'))
    await snapdirOk(['push', '--store', store, seed])
    expect(spawnSync('chown', ['-R', `${NOBODY}:${NOBODY}`, store]).status).toBe(0)
    const before = listFiles(store)
    const line = expectOneLineError(await snapdirAsNobody(['push', '--store', store, locked], base), 1, locked)
    expect(line).toMatch(/permission denied|EACCES/i)
    expect(listFiles(store)).toEqual(before)
  })

  test('unreadable DIR (run as nobody), store where nobody cannot create one: the message is about DIR, no store', async () => {
    const { base, locked } = lockedDir()
    // base is root's and 0755: nobody cannot create base/store, so a push that opens (creates) the
    // store before it reads DIR reports the store instead of the real problem
    const store = path.join(base, 'store')
    const line = expectOneLineError(await snapdirAsNobody(['push', '--store', store, locked], base), 1, locked)
    expect(line).toMatch(/permission denied|EACCES/i)
    expect(line).not.toContain(store)
    expect(existsSync(store)).toBe(false)
  })

  test('a file inside DIR that cannot be read (run as nobody): exit 1 naming the file, no tree or revision stored', async () => {
    // big files are cut while the scan goes on; sub/data.bin (100 KB) is cut on its own too
    const { base, src, store } = nobodyPushSetup(1)
    const unreadable = path.join(src, 'sub', 'data.bin')
    chmodSync(unreadable, 0o000)
    const line = expectOneLineError(await snapdirAsNobody(['push', '--store', store, src], base), 1, unreadable)
    expect(line).toMatch(/permission denied|EACCES/i)
    expect(notChunks(store)).toEqual([])
  })

  test('a subdirectory that cannot be listed, found after large files went to be cut (run as nobody): exit 1 naming it, no tree or revision', async () => {
    const { base, src, store } = nobodyPushSetup(4)
    const locked = path.join(src, 'sub', 'locked')
    mkdirSync(locked)
    writeFileSync(path.join(locked, 'x'), 'x\n')
    chmodSync(locked, 0o000)
    const line = expectOneLineError(await snapdirAsNobody(['push', '--store', store, src], base), 1, locked)
    expect(line).toMatch(/permission denied|EACCES/i)
    expect(notChunks(store)).toEqual([])
  })

  test('a store whose chunk directory cannot be written (run as nobody): exit 1 naming the store', async () => {
    const base = tempDir()
    chmodSync(base, 0o755)
    const src = smallDir(path.join(base, 'src'))
    writeFileSync(path.join(src, 'big.bin'), bytes('big', 300_000))
    const store = path.join(base, 'store')
    await snapdirOk(['push', '--store', store, smallDir(path.join(base, 'seed'), 'seed')])
    // nobody may write the store's top (config, refs) but not its chunks/
    expect(spawnSync('chown', [`${NOBODY}:${NOBODY}`, store]).status).toBe(0)
    const before = listFiles(store)
    const line = expectOneLineError(await snapdirAsNobody(['push', '--store', store, src], base), 1, store)
    expect(line).toMatch(/permission denied|EACCES/i)
    expect(listFiles(store)).toEqual(before)
  })

  test.each(BAD_URLS)('bad store URL "$url": exit 2 naming it, nothing created', async ({ url, mention }) => {
    const t = tempDir()
    const src = smallDir(path.join(t, 'src'))
    const cwd = tempDir()
    expectOneLineError(await snapdir(['push', '--store', url, src], { cwd }), 2, mention)
    expect(readdirSync(cwd), 'nothing may be created in the working directory').toEqual([])
    expect(readdirSync(t)).toEqual(['src'])
  })
})

describe('id', () => {
  test('DIR that does not exist: exit 2 naming it', async () => {
    const missing = path.join(tempDir(), 'no-such-dir')
    expectOneLineError(await snapdir(['id', missing]), 2, missing)
  })

  test('DIR that is a regular file: exit 2 naming it', async () => {
    const file = path.join(tempDir(), 'file.txt')
    writeFileSync(file, 'x\n')
    expectOneLineError(await snapdir(['id', file]), 2, file)
  })

  test('unreadable DIR (run as nobody): exit 1 naming it', async () => {
    const { base, locked } = lockedDir()
    const line = expectOneLineError(await snapdirAsNobody(['id', locked], base), 1, locked)
    expect(line).toMatch(/permission denied|EACCES/i)
  })

  test.each(BAD_URLS)('bad store URL "$url": exit 2 naming it', async ({ url, mention }) => {
    const src = smallDir(path.join(tempDir(), 'src'))
    const cwd = tempDir()
    expectOneLineError(await snapdir(['id', '--store', url, src], { cwd }), 2, mention)
    expect(readdirSync(cwd)).toEqual([])
  })
})

describe('pull', () => {
  test.each(MALFORMED_IDS)('malformed ID %j: exit 2 naming it, no target, store untouched', async (bad) => {
    const { t, store } = await pushedStore()
    const before = listFiles(store)
    const out = path.join(t, 'out')
    expectOneLineError(await snapdir(['pull', '--store', store, '--id', bad, out]), 2, bad)
    expect(existsSync(out)).toBe(false)
    expect(listFiles(store)).toEqual(before)
  })

  test('unknown ID: exit 1 naming the ID and the store, no target, no temp dir', async () => {
    const { t, store } = await pushedStore()
    const before = listFiles(store)
    const out = path.join(t, 'out')
    expectOneLineError(await snapdir(['pull', '--store', store, '--id', UNKNOWN_ID, out]), 1, UNKNOWN_ID, store)
    expect(readdirSync(t).sort()).toEqual(['src', 'store'])
    expect(listFiles(store)).toEqual(before)
  })

  test('store that does not exist: exit 1 naming it; neither store nor target is created', async () => {
    const t = tempDir()
    const store = path.join(t, 'no-store')
    const out = path.join(t, 'out')
    expectOneLineError(await snapdir(['pull', '--store', store, '--id', UNKNOWN_ID, out]), 1, store)
    expect(readdirSync(t)).toEqual([])
  })

  test.each(BAD_URLS)('bad store URL "$url": exit 2 naming it, no target', async ({ url, mention }) => {
    const t = tempDir()
    const out = path.join(t, 'out')
    expectOneLineError(await snapdir(['pull', '--store', url, '--id', UNKNOWN_ID, out], { cwd: t }), 2, mention)
    expect(readdirSync(t)).toEqual([])
  })

  test('into an existing non-empty directory: exit 2 naming it, nothing in it changes', async () => {
    const { t, store, id } = await pushedStore()
    const out = path.join(t, 'out')
    mkdirSync(path.join(out, 'keep'), { recursive: true })
    writeFileSync(path.join(out, 'keep', 'mine.txt'), 'my data\n')
    writeFileSync(path.join(out, 'a.txt'), 'same name as a file in the snapshot\n')
    const before = manifest(out)
    expectOneLineError(await snapdir(['pull', '--store', store, '--id', id, out]), 2, out)
    expect(manifest(out)).toBe(before)
    expect(readdirSync(t).sort(), 'no .out.snapdir-pull-* temp dir may remain').toEqual(['out', 'src', 'store'])
  })
})

describe('verify', () => {
  test.each(MALFORMED_IDS)('malformed ID %j: exit 2 naming it', async (bad) => {
    const { store } = await pushedStore()
    expectOneLineError(await snapdir(['verify', '--store', store, '--id', bad]), 2, bad)
  })

  test('unknown ID: exit 1 naming the ID', async () => {
    const { store } = await pushedStore()
    const before = listFiles(store)
    expectOneLineError(await snapdir(['verify', '--store', store, '--id', UNKNOWN_ID]), 1, UNKNOWN_ID)
    expect(listFiles(store)).toEqual(before)
  })

  test('store that does not exist: exit 1 naming it, and it is not created', async () => {
    const t = tempDir()
    const store = path.join(t, 'no-store')
    expectOneLineError(await snapdir(['verify', '--store', store, '--id', UNKNOWN_ID]), 1, store)
    expect(readdirSync(t)).toEqual([])
  })

  test.each(BAD_URLS)('bad store URL "$url": exit 2 naming it', async ({ url, mention }) => {
    const cwd = tempDir()
    expectOneLineError(await snapdir(['verify', '--store', url, '--id', UNKNOWN_ID], { cwd }), 2, mention)
    expect(readdirSync(cwd)).toEqual([])
  })
})

describe('revisions', () => {
  test('JSON lines, oldest first: created_at, id, previous_id (same name), name, size', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const alpha = smallDir(path.join(t, 'alpha'), 'alpha')
    const beta = smallDir(path.join(t, 'beta'), 'beta')
    const a1 = (await snapdirOk(['push', '--store', store, alpha])).trim()
    const b1 = (await snapdirOk(['push', '--store', store, beta])).trim()
    appendFileSync(path.join(alpha, 'a.txt'), 'changed\n')
    const a2 = (await snapdirOk(['push', '--store', store, alpha])).trim()
    expect(new Set([a1, b1, a2]).size).toBe(3)
    const size = (seed: string, extra = 0) => Buffer.byteLength(`hello from ${seed}\n`) + 100_000 + extra

    const r = await snapdir(['revisions', '--store', store])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toBe('')
    expect(r.stdout.endsWith('\n')).toBe(true)
    const rows = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(rows).toHaveLength(3)
    expect(rows[0]).toMatchObject({ id: a1, previous_id: null, name: 'alpha', size: size('alpha') })
    expect(rows[1]).toMatchObject({ id: b1, previous_id: null, name: 'beta', size: size('beta') })
    expect(rows[2]).toMatchObject({ id: a2, previous_id: a1, name: 'alpha', size: size('alpha', 8) })
    const times = rows.map((row) => {
      expect(row.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/)
      return Date.parse(row.created_at as string)
    })
    expect(times.every((x, i) => !Number.isNaN(x) && (i === 0 || x >= times[i - 1]!))).toBe(true)
  })

  test('an empty store (nothing pushed) lists nothing and exits 0', async () => {
    const store = path.join(tempDir(), 'store')
    mkdirSync(store)
    const r = await snapdir(['revisions', '--store', store])
    expect(r).toEqual({ status: 0, stdout: '', stderr: '' })
    expect(readdirSync(store)).toEqual([])
  })

  test('store that does not exist: exit 1 naming it, and it is not created', async () => {
    const t = tempDir()
    const store = path.join(t, 'no-store')
    expectOneLineError(await snapdir(['revisions', '--store', store]), 1, store)
    expect(readdirSync(t)).toEqual([])
  })

  test.each(BAD_URLS)('bad store URL "$url": exit 2 naming it', async ({ url, mention }) => {
    const cwd = tempDir()
    expectOneLineError(await snapdir(['revisions', '--store', url], { cwd }), 2, mention)
    expect(readdirSync(cwd)).toEqual([])
  })
})

describe('missing required options and arguments', () => {
  const D = '/nonexistent/snapdir-test-target'
  test.each([
    { args: ['push', '/tmp'], mention: '--store' },
    { args: ['pull', '--id', UNKNOWN_ID, D], mention: '--store' },
    { args: ['pull', '--store', '/nonexistent/store', D], mention: '--id' },
    { args: ['verify', '--id', UNKNOWN_ID], mention: '--store' },
    { args: ['verify', '--store', '/nonexistent/store'], mention: '--id' },
    { args: ['revisions'], mention: '--store' },
    { args: ['push', '--store', '/nonexistent/store'], mention: 'dir' },
    { args: ['pull', '--store', '/nonexistent/store', '--id', UNKNOWN_ID], mention: 'dir' },
    { args: ['id'], mention: 'dir' },
  ])('snapdir $args.0 without $mention: exit 2, one line naming it', async ({ args, mention }) => {
    const cwd = tempDir()
    expectOneLineError(await snapdir(args, { cwd }), 2, mention)
    expect(readdirSync(cwd)).toEqual([])
  })
})

describe('stdout closed by its reader', () => {
  /** Runs snapdir with stdout a pipe whose read end is already closed (as `snapdir … | head -0`). */
  function withClosedStdout(args: string[]): { status: number | null; stderr: string } {
    const script = 'import os, subprocess, sys\n' +
      'r, w = os.pipe(); os.close(r)\n' +
      'p = subprocess.run(sys.argv[1:], stdout=w, stderr=subprocess.PIPE)\n' +
      'sys.stderr.buffer.write(p.stderr); sys.exit(p.returncode)\n'
    const r = spawnSync('python3', ['-c', script, process.execPath, SNAPDIR, ...args], { encoding: 'utf8', timeout: 60_000 })
    return { status: r.status, stderr: r.stderr }
  }

  test.each([
    { what: 'id DIR', args: (src: string) => ['id', src] },
    { what: 'push', args: (src: string, store: string) => ['push', '--store', store, src] },
  ])('$what: ends quietly with status 1, no stack trace', async ({ args }) => {
    const t = tempDir()
    const src = smallDir(path.join(t, 'src'))
    const r = withClosedStdout(args(src, path.join(t, 'store')))
    expect(r.stderr, 'nothing on stderr: the reader went away, the user knows').toBe('')
    expect(r.status).toBe(1)
  })
})

describe('--help', () => {
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  test.each([
    { cmd: 'push', options: ['--store <url>', '--name <name>', '--json'] },
    { cmd: 'pull', options: ['--store <url>', '--id <id>'] },
    { cmd: 'verify', options: ['--store <url>', '--id <id>', '--json'] },
    { cmd: 'id', options: ['--store <url>'] },
    { cmd: 'revisions', options: ['--store <url>'] },
    { cmd: 'diff', options: ['--store <url>', '--json', '--jobs <n>', '--platform <os/arch[/variant]>'] },
    { cmd: 'rm', options: ['--store <url>', '--json'] },
    { cmd: 'gc', options: ['--store <url>', '--grace <duration>', '--keep-last <n>', '--dry-run', '--json'] },
  ])('snapdir $cmd --help exits 0 and explains every option', async ({ cmd, options }) => {
    const r = await snapdir([cmd, '--help'])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toBe('')
    expect(r.stdout).toContain(`Usage: snapdir ${cmd}`)
    for (const opt of options) {
      // the option, then on the same line an explanation of at least a few words
      expect(r.stdout).toMatch(new RegExp(`^\\s+(-\\w, )?${escape(opt)}\\s{2,}\\S.{10,}$`, 'm'))
    }
  })

  test('snapdir --help exits 0 and lists every command', async () => {
    const r = await snapdir(['--help'])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toBe('')
    for (const cmd of ['push', 'pull', 'verify', 'id', 'revisions', 'diff', 'rm', 'gc']) {
      expect(r.stdout).toMatch(new RegExp(`^\\s+${cmd}\\b.*\\S{3,}`, 'm'))
    }
  })
})
