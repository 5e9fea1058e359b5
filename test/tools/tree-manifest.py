#!/usr/bin/env python3
"""Print a canonical JSON description of a directory tree, for exact before/after comparison.

Usage:
    tree-manifest.py DIR > manifest.json

Two trees are "the same" for snapdir's purposes exactly when their outputs are byte-identical,
so tests can do: tree-manifest.py SRC > a; tree-manifest.py PULLED > b; cmp a b (or diff -u).

Output: a JSON array, one entry object per line (so `diff` points at the entry that differs),
sorted by the raw bytes of the path relative to DIR; DIR itself is the entry with path ""
(if DIR is a symlink to a directory, the directory it points to is described).
Keys in every entry (sorted within the object):
    path       printable path: UTF-8 where valid, undecodable bytes as \\xNN (not unique; see path_hex)
    path_hex   the raw path bytes, hex — the exact identity of the entry
    type       dir | file | symlink | char | block | fifo | socket
    mode       st_mode & 0o7777 as a 4-digit octal string, e.g. "4755"
    uid, gid   numeric owner
    mtime_ns   modification time in nanoseconds
    xattrs     {name: hex value} of the entry itself (symlinks not followed), sorted; {} if none
and, only where they apply:
    size, sha256        regular files (content hash; holes read as zeros, so sparseness is invisible)
    target, target_hex  symlinks (printable and raw target)
    rdev_major, rdev_minor   char and block devices
    hardlink_group      non-directories whose inode has more than one name inside DIR; groups are
                        numbered 0, 1, ... by their first path in sorted order, so two trees with
                        the same hardlink structure get the same numbers regardless of inode numbers
Deliberately left out: atime, ctime, inode and device numbers, nlink (links outside DIR would
leak into it), directory sizes and st_blocks (filesystem-specific).

Independent of snapdir's code on purpose: standard library only.
"""

import errno
import hashlib
import json
import os
import stat
import sys

BLOCK = 1024 * 1024

TYPES = [
    (stat.S_ISDIR, "dir"),
    (stat.S_ISREG, "file"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISCHR, "char"),
    (stat.S_ISBLK, "block"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
]


def file_type(mode):
    for test, name in TYPES:
        if test(mode):
            return name
    raise ValueError(f"unknown file type in mode {mode:o}")


def printable(raw):
    return raw.decode("utf-8", "backslashreplace")


def data_extents(fd, size):
    """Yield (start, end) of the regions that may hold data; everything else is a hole.

    Hashing a hole needs no read: it is zeros by definition. Skipping the read makes the 1 GiB
    sparse fixture ~2x faster. A filesystem without SEEK_DATA support reports the whole file
    as data, which is still exact, just slower."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # no data at or after pos: the rest is a hole
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        pos = end


def sha256_file(path, expected):
    # O_NOFOLLOW: the entry was lstat'ed as a regular file; never hash something a symlink
    # swapped in since.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino, st.st_size) != (expected.st_dev, expected.st_ino, expected.st_size):
            raise RuntimeError(f"{printable(path)} changed while being read")
        size = st.st_size
        h = hashlib.sha256()
        buf = bytearray(BLOCK)  # reused: no allocation per block
        view = memoryview(buf)
        zeros = bytes(BLOCK)
        pos = 0

        def feed_zeros(n):
            while n:
                k = min(n, BLOCK)
                h.update(zeros[:k] if k < BLOCK else zeros)
                n -= k

        for start, end in data_extents(fd, size):
            feed_zeros(start - pos)
            pos = start
            while pos < end:
                n = os.preadv(fd, [view[:min(BLOCK, end - pos)]], pos)
                if n == 0:
                    raise RuntimeError(f"{printable(path)} shrank while being read")
                h.update(view[:n])
                pos += n
        feed_zeros(size - pos)
        return h.hexdigest()
    finally:
        os.close(fd)


def xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        # Filesystems without xattr support report an empty set, not an error: the comparison
        # is about what the tree holds, and such a tree holds no xattrs.
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    out = {}
    for name in names:
        out[name] = os.getxattr(path, name, follow_symlinks=False).hex()
    return dict(sorted(out.items()))


def walk(root):
    """Yield (relative path bytes, lstat result) for root and everything under it, unordered.
    Never follows symlinks; only real directories are descended into."""
    yield b"", os.stat(root)
    stack = [b""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for de in it:
                child = os.path.join(rel, de.name) if rel else de.name
                st = os.lstat(os.path.join(root, child))
                yield child, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(child)


def manifest(root):
    items = sorted(walk(root), key=lambda item: item[0])

    # Hardlink groups: only inodes seen under more than one name here, numbered by first path.
    names_per_inode = {}
    for rel, st in items:
        if not stat.S_ISDIR(st.st_mode):
            names_per_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)
    group_of = {}
    for rel, st in items:
        key = (st.st_dev, st.st_ino)
        if not stat.S_ISDIR(st.st_mode) and len(names_per_inode[key]) > 1 and key not in group_of:
            group_of[key] = len(group_of)

    entries = []
    for rel, st in items:
        full = os.path.join(root, rel) if rel else root
        kind = file_type(st.st_mode)
        e = {
            "path": printable(rel),
            "path_hex": rel.hex(),
            "type": kind,
            "mode": "%04o" % stat.S_IMODE(st.st_mode),
            "uid": st.st_uid,
            "gid": st.st_gid,
            "mtime_ns": st.st_mtime_ns,
            "xattrs": xattrs(full),
        }
        if kind == "file":
            e["size"] = st.st_size
            e["sha256"] = sha256_file(full, st)
        elif kind == "symlink":
            target = os.readlink(full)
            e["target"] = printable(target)
            e["target_hex"] = target.hex()
        elif kind in ("char", "block"):
            e["rdev_major"] = os.major(st.st_rdev)
            e["rdev_minor"] = os.minor(st.st_rdev)
        key = (st.st_dev, st.st_ino)
        if key in group_of:
            e["hardlink_group"] = group_of[key]
        entries.append(e)
    return entries


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print("usage: tree-manifest.py DIR", file=sys.stderr)
        sys.exit(2)
    root = os.fsencode(sys.argv[1])
    if not os.path.isdir(root):
        print(f"tree-manifest: {sys.argv[1]!r} is not a directory; expected a directory to describe",
              file=sys.stderr)
        sys.exit(2)
    try:
        entries = manifest(root)
    except OSError as e:
        name = os.fsdecode(e.filename) if e.filename is not None else "?"
        print(f"tree-manifest: {name!r}: {e.strerror or e}", file=sys.stderr)
        sys.exit(1)
    except RuntimeError as e:
        print(f"tree-manifest: {e}", file=sys.stderr)
        sys.exit(1)
    lines = [json.dumps(e, sort_keys=True, ensure_ascii=True, separators=(",", ":")) for e in entries]
    try:
        sys.stdout.write("[\n" + ",\n".join(lines) + "\n]\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # A reader like `cmp -` stops at the first difference; that is not our error to report.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
