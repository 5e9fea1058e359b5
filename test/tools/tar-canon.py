#!/usr/bin/env python3
"""Describe a tar stream (stdin) member by member, one JSON line each, for comparing two archives.

Everything tar recorded is kept: name, type, mode, owner ids and names, mtime (the pax value with its
nanoseconds where there is one), size, link target, device numbers, every pax header and the SHA-256
of the member's data. The one thing normalised is the order of pax headers: GNU tar writes xattrs in
the order listxattr(2) returns them, which is the file system's own and not part of the content.

Independent of snapdir's code on purpose: standard library only.
"""
import hashlib
import json
import sys
import tarfile

with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as archive:
    for m in archive:
        digest = hashlib.sha256()
        if m.isfile():
            f = archive.extractfile(m)
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        pax = {k: v.encode("utf-8", "surrogateescape").hex() for k, v in sorted(m.pax_headers.items())}
        print(json.dumps({
            "name": m.name.encode("utf-8", "surrogateescape").hex(),
            "type": m.type.decode(),
            "mode": oct(m.mode), "uid": m.uid, "gid": m.gid, "uname": m.uname, "gname": m.gname,
            "mtime": m.pax_headers.get("mtime", str(m.mtime)), "size": m.size,
            "linkname": m.linkname.encode("utf-8", "surrogateescape").hex(),
            "dev": [m.devmajor, m.devminor], "pax": pax, "sha256": digest.hexdigest(),
        }, sort_keys=True))
