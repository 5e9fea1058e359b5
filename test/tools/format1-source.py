#!/usr/bin/env python3
"""Writes, byte for byte the same on every run, the sources of the format 1 store fixture
(test/fixtures/format1-store, pushed by snapdir before format 2):
  OUT/src    a small tree: a file small enough to have been inlined (4 KiB and under), packed files,
             a file of several chunks, an empty file, a symlink, a hardlink, nested directories
  OUT/image  an OCI image layout whose one layer is an uncompressed tar of a few files
"""
import hashlib, io, json, os, random, sys, tarfile

T = 1612325106  # 2021-02-03T04:05:06Z


def data(seed, n):
    return random.Random(seed).randbytes(n)


def write_src(root):
    files = {
        'small.txt': b'a small file, inline in a format 1 tree\n',
        'edge-4096': data('edge', 4096),
        'data/mid.bin': data('mid', 20_000),
        'data/mid2.bin': data('mid2', 30_000),
        'data/large.bin': data('large', 140_000),
        'empty': b'',
        'deep/er/note.txt': b'note\n' * 100,
    }
    for rel, content in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'wb') as f:
            f.write(content)
    os.symlink('small.txt', os.path.join(root, 'link'))
    os.link(os.path.join(root, 'data/mid.bin'), os.path.join(root, 'data/mid-hardlink.bin'))
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (T, T), follow_symlinks=False)
    os.utime(root, (T, T))


def write_image(root):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        def add(name, content=None, kind=tarfile.REGTYPE, mode=0o644):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, T
            if content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
        add('etc', kind=tarfile.DIRTYPE, mode=0o755)
        add('etc/hostname', b'format1\n')
        add('usr', kind=tarfile.DIRTYPE, mode=0o755)
        add('usr/lib', kind=tarfile.DIRTYPE, mode=0o755)
        add('usr/lib/libsmall.so', data('lib', 3000))
        add('usr/lib/libbig.so', data('libbig', 70_000))
    layer = buf.getvalue()
    blobs = os.path.join(root, 'blobs', 'sha256')
    os.makedirs(blobs)

    def blob(content, media_type):
        raw = content if isinstance(content, bytes) else json.dumps(content, separators=(',', ':')).encode()
        digest = hashlib.sha256(raw).hexdigest()
        with open(os.path.join(blobs, digest), 'wb') as f:
            f.write(raw)
        return {'mediaType': media_type, 'digest': 'sha256:' + digest, 'size': len(raw)}

    layer_d = blob(layer, 'application/vnd.oci.image.layer.v1.tar')
    config = blob({'architecture': 'amd64', 'os': 'linux', 'rootfs': {'type': 'layers', 'diff_ids': [layer_d['digest']]}},
                  'application/vnd.oci.image.config.v1+json')
    manifest = blob({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'config': config, 'layers': [layer_d]},
                    'application/vnd.oci.image.manifest.v1+json')
    manifest['annotations'] = {'org.opencontainers.image.ref.name': 'v1'}
    with open(os.path.join(root, 'index.json'), 'w') as f:
        json.dump({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.index.v1+json', 'manifests': [manifest]}, f)
    with open(os.path.join(root, 'oci-layout'), 'w') as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (T, T), follow_symlinks=False)
    os.utime(root, (T, T))


out = sys.argv[1]
os.makedirs(os.path.join(out, 'src'))
os.makedirs(os.path.join(out, 'image'))
write_src(os.path.join(out, 'src'))
write_image(os.path.join(out, 'image'))
