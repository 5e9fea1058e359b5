// Docker image archives as `docker save` (before Docker 25) writes them, built from real tars: each
// layer an uncompressed tar in <id>/layer.tar, the config named by its sha256, manifest.json and
// repositories; the archive itself a tar of those. Layers come from GNU tar (pax and gnu formats) and
// from python's tarfile (which can write what tar would not: a path twice, hardlinks either way,
// bytes after the end-of-archive blocks), so framing of every kind goes through a recipe.
import { spawnSync } from 'node:child_process'

const BUILD = String.raw`
import hashlib, io, json, os, random, sys, tarfile
out = sys.argv[1]
r = random.Random(11)
os.makedirs(out)
def src(root):
    os.makedirs(root + '/etc/app', exist_ok=True)
    os.makedirs(root + '/usr/lib', exist_ok=True)
    open(root + '/etc/app/conf', 'wb').write(b'key=value\n' * 30)
    open(root + '/usr/lib/big.so', 'wb').write(r.randbytes(700 * 1024))
    open(root + '/usr/lib/zeros', 'wb').write(bytes(300 * 1024))
    for i in range(60): open(root + '/usr/lib/m%02d' % i, 'wb').write(r.randbytes(3000 + 997 * i))
    open(root + '/empty', 'wb').close()
    os.symlink('usr/lib/big.so', root + '/link')
    os.link(root + '/usr/lib/m05', root + '/hard-m05')
    os.utime(root + '/etc/app/conf', ns=(1600000000123456789, 1600000000123456789))
def gnutar(root, fmt, path):
    if subprocess_run(['tar', '--format=' + fmt, '--numeric-owner', '-C', root, '-cf', path, '.']) != 0: sys.exit('tar failed')
import subprocess
def subprocess_run(a): return subprocess.run(a).returncode
layers = []
src(out + '/.src1'); gnutar(out + '/.src1', 'pax', out + '/.l1.tar')
os.makedirs(out + '/.src2/opt'); open(out + '/.src2/opt/tool', 'wb').write(r.randbytes(90000)); open(out + '/.src2/opt/.wh.old', 'wb').close()
long = out + '/.src2/opt/' + 'long-name-' * 12; os.makedirs(long); open(long + '/file-under-a-long-directory-name', 'wb').write(r.randbytes(5000)); os.symlink('../' * 2 + 'x' * 120, long + '/long-target')
gnutar(out + '/.src2', 'gnu', out + '/.l2.tar')
# python's tarfile: a path twice (the first copy replaced, small and large), a hardlink to a later
# name in path order, and junk after the end of the archive
b = io.BytesIO()
with tarfile.open(fileobj=b, mode='w', format=tarfile.PAX_FORMAT) as t:
    def add(name, data, **kw):
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1700000000; ti.mode = 0o644
        for k, v in kw.items(): setattr(ti, k, v)
        t.addfile(ti, io.BytesIO(data))
    add('dup-small', b'first small version\n')
    add('dup-big', r.randbytes(200000))
    add('z-first', r.randbytes(70000))
    ln = tarfile.TarInfo('a-link'); ln.type = tarfile.LNKTYPE; ln.linkname = 'z-first'; ln.mtime = 1700000000; t.addfile(ln)
    add('dup-small', b'second small version, the one that stays\n')
    add('dup-big', r.randbytes(150000))
    add('utf8-\u00e9\u00e8', b'pax path\n', pax_headers={'comment': 'kept byte for byte'})
raw = b.getvalue() + b'\0' * 3584  # more zero blocks after the end, as a tar padded to a record size has
open(out + '/.l3.tar', 'wb').write(raw)
diff_ids = []
names = []
for n in ['.l1.tar', '.l2.tar', '.l3.tar']:
    data = open(out + '/' + n, 'rb').read()
    h = hashlib.sha256(data).hexdigest()
    diff_ids.append('sha256:' + h)
    os.makedirs(out + '/' + h)
    os.rename(out + '/' + n, out + '/' + h + '/layer.tar')
    open(out + '/' + h + '/VERSION', 'w').write('1.0')
    names.append(h + '/layer.tar')
config = json.dumps({'architecture': 'amd64', 'os': 'linux', 'config': {}, 'rootfs': {'type': 'layers', 'diff_ids': diff_ids}}).encode()
ch = hashlib.sha256(config).hexdigest()
open(out + '/' + ch + '.json', 'wb').write(config)
open(out + '/manifest.json', 'w').write(json.dumps([{'Config': ch + '.json', 'RepoTags': ['recipes:test'], 'Layers': names}]))
open(out + '/repositories', 'w').write(json.dumps({'recipes': {'test': names[-1].split('/')[0]}}))
subprocess.run(['rm', '-rf', out + '/.src1', out + '/.src2'])
`

/** Writes the unpacked archive to `dir` (which must not exist); returns its layer files, bottom first. */
export function buildDockerSaveDir(dir: string): string[] {
  const r = spawnSync('python3', ['-c', BUILD, dir], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`building the Docker archive failed: ${r.stderr}`)
  const manifest = JSON.parse(spawnSync('cat', [`${dir}/manifest.json`], { encoding: 'utf8' }).stdout) as Array<{ Layers: string[] }>
  return manifest[0]!.Layers
}

/** The directory as one tar, as `docker save` writes it. */
export function tarDirectory(dir: string, out: string): void {
  const r = spawnSync('tar', ['-C', dir, '-cf', out, '.'], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`)
}
