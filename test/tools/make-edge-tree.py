#!/usr/bin/env python3
"""Build a deterministic directory tree holding every kind of entry snapdir must round-trip.

Usage (as root):
    make-edge-tree.py DIR [--variant N]

DIR must not exist; its parent must. Two runs with the same --variant give trees whose
tree-manifest.py output is byte-identical (content, modes, owners, xattrs, nanosecond mtimes,
hardlink structure). --variant N (N >= 1) XORs N into 8 bytes in the middle of
files/random-3MiB.bin and changes nothing else, so a test can check that a re-push of the
modified tree only writes the one or two chunks around that offset. --variant 0 is the default.

This is a test oracle: it deliberately uses only the Python standard library and none of
snapdir's code, so a bug in snapdir cannot hide itself by also being in the fixture.

The tree is built in a sibling temporary directory and renamed to DIR only when complete, so
a failure never leaves a half-built DIR behind (which would look like a valid fixture).
"""

import argparse
import os
import random
import shutil
import socket
import stat
import struct
import sys

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

RANDOM_FILE = b"files/random-3MiB.bin"
RANDOM_SIZE = 3 * MiB
VARIANT_OFFSET = RANDOM_SIZE // 2  # middle of the file: far from both ends, one chunk changes

# Owner that is neither root nor likely to exist in /etc/passwd, so a tool that maps owners
# through user names instead of keeping numeric ids gets caught.
UID, GID = 1234, 5678

# Distinct, nanosecond-precise mtimes (entry i gets BASE + i) so a pull that truncates to
# microseconds or seconds, or swaps two entries' times, shows up in the manifest.
MTIME_BASE_NS = 1600000000_123456789


def rand(seed, n):
    """Deterministic bytes: random.Random(int).randbytes is stable across CPython >= 3.9."""
    return random.Random(seed).randbytes(n)


def random_file_content(variant):
    data = bytearray(rand(3, RANDOM_SIZE))
    if variant:
        # 8 bytes rather than 1 so every variant N < 2**64 is distinct from every other one.
        patch = struct.pack("<Q", variant)
        for i, b in enumerate(patch):
            data[VARIANT_OFFSET + i] ^= b
    return bytes(data)


def build_spec(variant):
    """Return the tree as a list of entries: (path, kind, arg, meta).

    kind/arg: ("dir", None), ("file", bytes), ("sparse", (size, [(offset, bytes)])),
    ("zeros", size), ("symlink", target), ("hardlink", existing path), ("char"/"block", (maj, min)),
    ("fifo", None), ("socket", None).
    meta: dict with mode, uid, gid, xattrs; absent keys mean mode 0644/0755, root owner, none.
    Hardlinks carry no meta: owner, mode, xattrs and mtime belong to the inode, set via the first name.
    Parents are listed before their children; the list order is the creation order.
    """
    owned = {"uid": UID, "gid": GID}
    long_name = b"long-" + b"x" * 245 + b".name"
    assert len(long_name) == 255  # NAME_MAX on Linux filesystems

    return [
        (b"empty-dir", "dir", None, {}),

        (b"nested", "dir", None, {}),
        (b"nested/a", "dir", None, {"mode": 0o750, **owned}),
        (b"nested/a/b", "dir", None, {}),
        (b"nested/a/b/c", "dir", None, {"mode": 0o700}),
        (b"nested/a/b/c/deep.txt", "file", b"deep inside\n", {}),

        (b"files", "dir", None, {}),
        (b"files/empty", "file", b"", {}),
        (b"files/small.txt", "file", b"hello, snapdir\n" * 3, {}),
        (RANDOM_FILE, "file", random_file_content(variant), {}),
        # setuid/setgid on a non-root owner: a pull that chmods before it chowns loses the bit,
        # because chown clears S_ISUID/S_ISGID on non-directories.
        (b"files/setuid", "file", b"#!/bin/sh\necho setuid\n", {"mode": 0o4755, **owned}),
        (b"files/setgid", "file", b"#!/bin/sh\necho setgid\n", {"mode": 0o2755, **owned}),
        (b"files/mode-0600", "file", b"private\n", {"mode": 0o600}),
        (b"files/mode-0444", "file", b"read only\n", {"mode": 0o444}),
        (b"files/mode-0700", "file", b"#!/bin/sh\n", {"mode": 0o700}),
        (b"files/mode-0000", "file", b"no permissions at all\n", {"mode": 0o000}),
        (b"files/owned", "file", b"owned by 1234:5678\n", {"mode": 0o640, **owned}),
        (b"files/xattrs.txt", "file", b"file with xattrs\n", {"xattrs": {
            b"user.text": b"plain value",
            b"user.binary": b"\xff\xfe\x00\x01\x80non-utf8\x00",
            b"user.empty": b"",
            b"user.large": rand(4, 1000),
        }}),

        # Sticky, world-writable, holding a file of another owner: the /tmp pattern.
        (b"sticky", "dir", None, {"mode": 0o1777}),
        (b"sticky/others-file", "file", b"not root's\n", {"mode": 0o600, **owned}),
        # A setgid directory makes new children inherit its gid; the child here is root:root,
        # so a pull that creates without an explicit chown gets the gid wrong.
        (b"setgid-dir", "dir", None, {"mode": 0o2775, "uid": 0, "gid": GID}),
        (b"setgid-dir/root-file", "file", b"gid 0 despite setgid parent\n", {}),
        (b"setgid-dir/subdir", "dir", None, {"mode": 0o755}),
        # Read-only directory with content: a pull must fill it before it applies the mode
        # (only matters for non-root, but it is also where mtime ordering bugs show).
        (b"readonly-dir", "dir", None, {"mode": 0o555}),
        (b"readonly-dir/inside", "file", b"inside a 0555 dir\n", {"mode": 0o444}),
        (b"xattr-dir", "dir", None, {"xattrs": {
            b"user.dir-attr": b"directory value",
            b"user.dir-binary": b"\x00\xff\x7f\x80",
        }}),

        (b"links", "dir", None, {}),
        (b"links/relative", "symlink", b"../files/small.txt", {}),
        (b"links/absolute", "symlink", b"/etc/passwd", {}),
        (b"links/dangling", "symlink", b"does/not/exist", {}),
        (b"links/to-dir", "symlink", b"../nested/a", {}),
        (b"links/owned", "symlink", b"../files/owned", owned),
        (b"links/bad-target", "symlink", b"target-\xff\xfe-not-utf8", {}),

        # One inode, three names in three directories; the first name carries the metadata.
        (b"hardlinks", "dir", None, {}),
        (b"hardlinks/one", "dir", None, {}),
        (b"hardlinks/two", "dir", None, {}),
        (b"hardlinks/one/first", "file", b"one inode, three names\n",
         {"mode": 0o640, **owned, "xattrs": {b"user.on-hardlink": b"shared"}}),
        (b"hardlinks/two/second", "hardlink", b"hardlinks/one/first", None),
        (b"hardlinks/third", "hardlink", b"hardlinks/one/first", None),

        (b"special", "dir", None, {}),
        (b"special/char-null", "char", (1, 3), {"mode": 0o666}),
        (b"special/block-loop0", "block", (7, 0), {"mode": 0o660, "gid": 6}),
        (b"special/fifo", "fifo", None, {"mode": 0o644, **owned}),
        (b"special/socket", "socket", None, {"mode": 0o755}),

        (b"names", "dir", None, {}),
        (b"names/bad-\xff\xfe-name", "file", b"name is not UTF-8\n", {}),
        (b"names/with spaces\nand a newline", "file", b"odd name\n", {}),
        (b"names/" + long_name, "file", b"255-byte name\n", {}),
        ("names/ünïcödé-名前".encode(), "file", b"valid UTF-8, not ASCII\n", {}),
        (b"names/-leading-dash", "file", b"looks like an option\n", {}),
        (b"names/bad-\xff-dir", "dir", None, {}),
        (b"names/bad-\xff-dir/child", "file", b"child of a non-UTF-8 dir\n", {}),

        (b"sparse", "dir", None, {}),
        (b"sparse/sparse-1GiB", "sparse", (GiB, [(0, rand(5, 4 * KiB)), (512 * MiB, rand(6, 4 * KiB))]), {}),
        (b"sparse/zeros-8MiB", "zeros", 8 * MiB, {}),
    ]


def write_all(fd, data, offset):
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def make_socket(path):
    # bind() limits the path to ~107 bytes, which a deep test directory can exceed; binding a
    # name relative to the parent directory avoids that limit.
    parent, name = os.path.split(path)
    saved = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chdir(parent)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(name)
        except OSError as e:
            raise OSError(e.errno, e.strerror, path) from None
        finally:
            s.close()  # closing leaves the socket inode in place, which is what we want
    finally:
        os.fchdir(saved)
        os.close(saved)


def create(root, path, kind, arg):
    full = os.path.join(root, path)
    if kind == "dir":
        os.mkdir(full)
    elif kind == "file":
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            write_all(fd, arg, 0)
        finally:
            os.close(fd)
    elif kind == "sparse":
        size, extents = arg
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)  # everything not written below stays a hole
            for offset, data in extents:
                write_all(fd, data, offset)
        finally:
            os.close(fd)
    elif kind == "zeros":
        # Written densely on purpose: allocated zero blocks, unlike the sparse file's holes.
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            block = bytes(MiB)
            for i in range(arg // MiB):
                write_all(fd, block, i * MiB)
        finally:
            os.close(fd)
    elif kind == "symlink":
        os.symlink(arg, full)
    elif kind == "hardlink":
        os.link(os.path.join(root, arg), full, follow_symlinks=False)
    elif kind in ("char", "block"):
        ftype = stat.S_IFCHR if kind == "char" else stat.S_IFBLK
        os.mknod(full, ftype | 0o600, os.makedev(*arg))
    elif kind == "fifo":
        os.mkfifo(full, 0o600)
    elif kind == "socket":
        make_socket(full)
    else:
        raise AssertionError(f"unknown kind {kind!r}")


def apply_meta(root, path, kind, meta, mtime_ns):
    full = os.path.join(root, path)
    is_link = kind == "symlink"
    # Order matters: chown clears setuid/setgid, so the mode goes on after the owner.
    os.chown(full, meta.get("uid", 0), meta.get("gid", 0), follow_symlinks=False)
    if not is_link:  # Linux has no lchmod; a symlink's mode is always 0777
        os.chmod(full, meta.get("mode", 0o755 if kind == "dir" else 0o644))
    for name, value in sorted(meta.get("xattrs", {}).items()):
        os.setxattr(full, name, value, follow_symlinks=False)
    # atime is not part of the contract; giving it the mtime just keeps the tree reproducible.
    os.utime(full, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def build(root, variant):
    spec = build_spec(variant)
    paths = [p for p, *_ in spec]
    assert len(set(paths)) == len(paths), "duplicate path in spec"

    os.mkdir(root, 0o700)
    for path, kind, arg, _ in spec:
        create(root, path, kind, arg)

    # mtimes numbered in path-byte order (the root is "" and comes first) so the numbering
    # does not depend on the order entries happen to be listed in the spec.
    everything = [(b"", "dir", {})] + [(p, k, m) for p, k, _, m in spec]
    everything.sort(key=lambda e: e[0])
    mtimes = {p: MTIME_BASE_NS + i for i, (p, _, _) in enumerate(everything)}

    # Metadata last and children before parents (reverse byte order puts "a/b" before "a"), so
    # no later creation, chmod of a parent or the like can disturb what has been set.
    for path, kind, meta in reversed(everything):
        if kind == "hardlink":
            continue
        apply_meta(root, path, kind, meta, mtimes[path])


def check_sparse(root):
    """Warn (not fail) if the filesystem filled the holes: the tree is still valid, but a test
    about sparse handling would then be testing something else."""
    st = os.stat(os.path.join(root, b"sparse/sparse-1GiB"))
    if st.st_blocks * 512 > 64 * MiB:
        print(f"make-edge-tree: warning: sparse/sparse-1GiB uses {st.st_blocks * 512} bytes on disk; "
              "this filesystem does not keep holes", file=sys.stderr)


def try_rmdir(path):
    try:
        os.rmdir(path)  # only the empty placeholder; never a tree someone else put there
    except OSError:
        pass


def main():
    ap = argparse.ArgumentParser(description="Create a deterministic edge-case tree for snapdir tests (run as root).")
    ap.add_argument("dir", help="directory to create; must not exist")
    ap.add_argument("--variant", type=int, default=0, metavar="N",
                    help="N >= 0; N > 0 changes 8 bytes in the middle of files/random-3MiB.bin")
    args = ap.parse_args()

    if args.variant < 0 or args.variant >= 2**64:
        ap.error(f"--variant must be between 0 and 2**64-1, got {args.variant}")
    if os.geteuid() != 0:
        sys.exit("make-edge-tree: must run as root (needs mknod, chown to other users, setuid bits)")

    target = os.path.abspath(os.fsencode(args.dir))
    if os.path.lexists(target):
        sys.exit(f"make-edge-tree: {args.dir!r} already exists; expected a path that does not exist")
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        sys.exit(f"make-edge-tree: parent directory of {args.dir!r} does not exist")

    # Claim the name first (mkdir fails if it exists, closing the race with the check above),
    # build in a sibling so the final rename stays on one filesystem, then rename over the
    # empty placeholder, which Linux does atomically.
    try:
        os.mkdir(target, 0o700)
    except OSError as e:
        sys.exit(f"make-edge-tree: cannot create {args.dir!r}: {e.strerror}")
    tmp = os.path.join(parent, b".%s.tmp-%d" % (os.path.basename(target), os.getpid()))
    old_umask = os.umask(0)  # modes are set explicitly anyway; this avoids surprises in between
    try:
        build(tmp, args.variant)
        check_sparse(tmp)
        root_mtime = os.lstat(tmp).st_mtime_ns
        os.rename(tmp, target)
        # A rename leaves the moved directory's mtime alone on Linux, but restating it costs
        # nothing and keeps the root's time independent of filesystem quirks.
        os.utime(target, ns=(root_mtime, root_mtime), follow_symlinks=False)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        try_rmdir(target)
        name = os.fsdecode(e.filename) if e.filename is not None else "?"
        sys.exit(f"make-edge-tree: failed on {name!r}: {e.strerror or e} "
                 f"(filesystem of {os.fsdecode(parent)!r} may not support this entry kind or attribute)")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        try_rmdir(target)
        raise
    finally:
        os.umask(old_umask)


if __name__ == "__main__":
    main()
