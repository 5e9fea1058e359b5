#!/usr/bin/env bash
# Installs everything snapdir and its tests need on a fresh Debian machine, guarded so that a second
# run only checks: Debian packages, npm packages (which builds native/ through the install script) and
# the TypeScript build.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: a C toolchain for native/, libfuse3-dev (headers and libfuse3.so for the FUSE
# addon) and fuse3 (fusermount3, for unmounting without root), python3 for the test oracles in
# test/tools, attr for inspecting xattrs by hand, umoci and skopeo as the reference tools the OCI image
# tests build, unpack and copy images with, zstd for the layer tests to compress with, golang-go and
# klauspost's pgzip and compress sources for the reference programs the compressor tests build (the Go
# code itself is what ours must equal; never a runtime dependency), and docker.io, whose dockerd the
# archive tests start on their own data root and socket to `docker load` what pull --tar writes (its
# service is not started: policy-rc.d may refuse, and the tests need none); containerd and runc, which
# the snapshotter tests start on their own root and socket, and containerd's sources
# (golang-github-containerd-containerd-dev), whose snapshots.proto ours is checked against;
# docker-registry (distribution 2.8), which the registry tests start on loopback, with apache2-utils
# for its htpasswd (bcrypt) and openssl for the token server's signing certificate.
debs=(build-essential pkg-config libfuse3-dev fuse3 python3 attr umoci skopeo zstd
  golang-go golang-github-klauspost-pgzip-dev golang-github-klauspost-compress-dev docker.io
  containerd runc golang-github-containerd-containerd-dev docker-registry apache2-utils openssl)
missing=()
for p in "${debs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# npm packages at the locked versions; skipped when the lock has not changed since the last install.
# (`npm install`, not `npm ci`: the registry here lacks some other-platform optional packages, which
# npm 11 leaves out of the lock and `npm ci` then refuses; and `npm ci` would empty a node_modules
# that is a link to another checkout's.) Our own install script builds native/.
# `npm install` also rewrites the lock where it differs from what the registry offers (adding other
# platforms' optional packages), so a fresh clone would show package-lock.json modified after
# `make test`: --no-save asks it not to, and a lock that was as committed is put back as committed.
stamp=node_modules/.snapdir-install-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp" || [ ! -f build/Release/snapdir.node ] || [ ! -f build/Release/snapdir_fuse.node ]; then
  echo "setup: npm install" >&2
  lock_as_committed=false
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && git ls-files --error-unmatch package-lock.json >/dev/null 2>&1 &&
    git diff --quiet HEAD -- package-lock.json; then
    lock_as_committed=true
  fi
  npm install --no-save --no-audit --no-fund --loglevel=error
  if $lock_as_committed && ! git diff --quiet HEAD -- package-lock.json; then
    echo "setup: npm changed package-lock.json; restoring it as committed" >&2
    git checkout HEAD -- package-lock.json
  fi
  cp package-lock.json "$stamp"
fi

# native/ changed since the addon was built (a pull on an existing checkout): build it again
if [ -n "$(find native binding.gyp -newer build/Release/snapdir.node 2>/dev/null | head -n 1)" ]; then
  echo "setup: rebuilding the native addon" >&2
  npm run build:native --silent >/dev/null
fi

# Both native addons must really load (a missing library or a failed build shows here, not later).
for addon in snapdir snapdir_fuse; do
  node -e "require('./build/Release/$addon.node')" || { echo "setup: native addon $addon failed to load" >&2; exit 1; }
done

echo "setup: compiling TypeScript and bundling the CLI" >&2
npm run build --silent >/dev/null # (its listing of the bundle on stdout)
