// `push ARCHIVE` of an ordinary tar of a directory: a root file system has many absolute symlinks
// (/bin -> usr/bin is relative, but /etc/alternatives/* -> /usr/bin/… are not) and device nodes.
// Symlinks are stored as they are, never followed (their targets are only text); device nodes as a
// push of the directory stores them; and the temporary directory the archive is unpacked into is
// gone afterwards, whether the push succeeded or was refused.
import { spawnSync } from 'node:child_process'
import { mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { ID_RE, bytes, manifest, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`)
}

/** A small root-file-system-like tree: absolute symlinks (to what exists and what does not), escaping relative ones, devices. */
function rootLike(dir: string): void {
  for (const d of ['usr/bin', 'etc/alternatives', 'dev', 'lib']) mkdirSync(path.join(dir, d), { recursive: true })
  writeFileSync(path.join(dir, 'usr/bin/tool'), bytes('tool', 70_000), { mode: 0o755 })
  symlinkSync('usr/bin', path.join(dir, 'bin'))
  symlinkSync('/usr/bin/tool', path.join(dir, 'etc/alternatives/tool'))
  symlinkSync('/etc/alternatives/tool', path.join(dir, 'usr/bin/alias'))
  symlinkSync('/nowhere/at/all', path.join(dir, 'lib/dangling'))
  symlinkSync('/', path.join(dir, 'lib/root'))
  symlinkSync('../../../../outside', path.join(dir, 'lib/up'))
  writeFileSync(path.join(dir, 'etc/hostname'), 'box\n')
  run('mknod', [path.join(dir, 'dev/null'), 'c', '1', '3'])
  run('mknod', [path.join(dir, 'dev/loop9'), 'b', '7', '9'])
  run('mkfifo', [path.join(dir, 'dev/pipe')])
  // times in whole milliseconds: node-tar keeps no finer ones (a separate limitation, not this test's)
  run('find', [dir, '-depth', '-exec', 'touch', '-h', '-d', '@1700000000.25', '{}', '+'])
}

describe('push ARCHIVE of a directory tar', () => {
  test('absolute and escaping symlinks and device nodes come back as they were, with the ID of the directory; no temp dir left', async () => {
    const t = tempDir()
    const src = path.join(t, 'src')
    rootLike(src)
    const archive = path.join(t, 'root.tar')
    run('tar', ['--format=pax', '-C', src, '-cf', archive, '.'])
    const tmp = path.join(t, 'tmp')
    mkdirSync(tmp)
    const store = path.join(t, 'store')

    const r = await snapdir(['push', '--store', store, archive], { env: { TMPDIR: tmp } })
    expect(r.status, r.stderr).toBe(0)
    const id = r.stdout.trim()
    expect(id).toMatch(ID_RE)
    expect(readdirSync(tmp), 'the unpacked archive is removed').toEqual([])
    expect((await snapdirOk(['push', '--store', store, src])).trim(), 'the same ID as a push of the directory').toBe(id)

    const out = path.join(t, 'out')
    await snapdirOk(['pull', '--store', store, '--id', id, out])
    expect(manifest(out)).toBe(manifest(src))
  })

  test('an archive refused halfway (an entry with ..) leaves no temporary directory, run after run', async () => {
    const t = tempDir()
    const script = [
      'import io, sys, tarfile',
      't = tarfile.open(sys.argv[1], "w")',
      'for i in range(300):',
      '    d = tarfile.TarInfo(f"d{i}"); d.type = tarfile.DIRTYPE; t.addfile(d)',
      '    f = tarfile.TarInfo(f"d{i}/f"); f.size = 5000; t.addfile(f, io.BytesIO(bytes(5000)))',
      '    s = tarfile.TarInfo(f"d{i}/abs"); s.type = tarfile.SYMTYPE; s.linkname = "/etc/passwd"; t.addfile(s)',
      'b = tarfile.TarInfo("../escaped"); b.size = 2; t.addfile(b, io.BytesIO(b"x\\n"))',
      't.close()',
    ].join('\n')
    const archive = path.join(t, 'bad.tar')
    run('python3', ['-c', script, archive])
    const tmp = path.join(t, 'tmp')
    mkdirSync(tmp)
    for (let i = 0; i < 5; i++) {
      const r = await snapdir(['push', '--store', path.join(t, 'store'), archive], { env: { TMPDIR: tmp } })
      expect(r.stderr).toMatch(/refused/)
      expect(r.stderr, 'no stack trace').not.toMatch(/^ {4}at /m)
      expect(r.status).toBe(1)
      expect(readdirSync(tmp)).toEqual([])
    }
  })

  test('an entry through a symlink of the archive is refused, and nothing lands where the link points', async () => {
    const t = tempDir()
    const outside = path.join(t, 'outside')
    mkdirSync(outside)
    const script = [
      'import io, sys, tarfile',
      't = tarfile.open(sys.argv[1], "w")',
      's = tarfile.TarInfo("a"); s.type = tarfile.SYMTYPE; s.linkname = sys.argv[2]; t.addfile(s)',
      'l = tarfile.TarInfo("a/link"); l.type = tarfile.SYMTYPE; l.linkname = "x"; t.addfile(l)',
      'f = tarfile.TarInfo("a/file"); f.size = 2; t.addfile(f, io.BytesIO(b"x\\n"))',
      't.close()',
    ].join('\n')
    const archive = path.join(t, 'through.tar')
    run('python3', ['-c', script, archive, outside])
    const r = await snapdir(['push', '--store', path.join(t, 'store'), archive])
    expect(r.status, r.stderr).toBe(1)
    expect(r.stderr).toMatch(/^snapdir: archive .*refused: a/)
    expect(readdirSync(outside)).toEqual([])
  })
})
