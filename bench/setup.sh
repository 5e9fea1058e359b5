#!/usr/bin/env bash
# Prepares everything bench/push-throughput.mjs needs: the reference tools (casync, b3sum, zstd,
# and GNU time for the CPU seconds of child processes) and the corpus, a real Debian bookworm
# root filesystem of about 200 MB built by mmdebstrap.
#
# Idempotent: packages are checked with dpkg before apt is touched, and the corpus is rebuilt only
# when its marker file is missing or records different build parameters, so a second run takes
# about a second.
#
# Environment:
#   SNAPDIR_BENCH_DIR  where the corpus lives (default /var/tmp/snapdir-bench). Outside the repo on
#                      purpose: 200 MB of rootfs must never end up in a commit or in a test glob.
#
# Needs root: apt-get install, mmdebstrap --mode=root (the only mode that writes a directory with
# real ownership and device nodes), and later the benchmark's page-cache drops.
set -euo pipefail

BENCH_DIR=${SNAPDIR_BENCH_DIR:-/var/tmp/snapdir-bench}
CORPUS=$BENCH_DIR/debian-rootfs
# The marker sits beside the tree, not in it, so it is not part of what gets snapshotted.
MARKER=$BENCH_DIR/debian-rootfs.complete

SUITE=bookworm
# minbase (~168 MB) plus python3 (~44 MB) lands at ~212 MB in ~8,300 regular files: ELF binaries
# and shared libraries, Python bytecode and sources, locale data and docs; a realistic mix for a
# container base layer. The next variant up, "important", is closer to 300 MB.
VARIANT=minbase
INCLUDE=python3
PARAMS="suite=$SUITE variant=$VARIANT include=$INCLUDE"

log() { printf 'setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (apt-get install, mmdebstrap --mode=root, drop_caches); running as uid $EUID"

install_packages() {
  local missing=() pkg
  for pkg in mmdebstrap casync b3sum zstd time; do
    dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$pkg")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "packages present: mmdebstrap casync b3sum zstd time"
    return
  fi
  # Refreshing the lists costs tens of seconds and is only needed when apt does not know a
  # candidate version yet (fresh machine, or lists wiped to save space).
  local need_update=0
  for pkg in "${missing[@]}"; do
    if ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]'; then need_update=1; fi
  done
  if [[ $need_update -eq 1 ]]; then
    log "apt-get update (no candidate known for: ${missing[*]})"
    apt-get update -q
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# The Debian mirror this machine is already configured for, as apt itself resolves it from
# sources.list and sources.list.d (one-line and deb822 formats alike), so no host name is
# written down here and the corpus comes from wherever this machine is allowed to reach.
debian_mirror() {
  apt-get indextargets --format '$(REPO_URI)' \
    "Release: $SUITE" 'Target-Of: deb' 'Identifier: Packages' 2>/dev/null | sort -u | head -n 1
}

build_corpus() {
  if [[ -f $MARKER ]] && grep -qxF "params: $PARAMS" "$MARKER" && [[ -d $CORPUS ]]; then
    log "corpus present: $CORPUS ($(grep '^files:' "$MARKER"), $(grep '^bytes:' "$MARKER"))"
    return
  fi

  local mirror
  mirror=$(debian_mirror)
  [[ -n $mirror ]] || die "no apt source for Debian $SUITE main found in /etc/apt/sources.list*; add one or run on a Debian $SUITE machine"

  mkdir -p "$BENCH_DIR"
  # A marker-less tree is a failed or interrupted earlier build. Building into a temporary name
  # and renaming at the end means CORPUS itself is only ever absent or complete.
  local tmp=$CORPUS.partial
  local d
  for d in "$CORPUS" "$tmp"; do
    [[ -e $d ]] || continue
    # mmdebstrap mounts /proc, /sys and /dev inside the chroot while it runs; never recurse into
    # a tree where one of those is still mounted (that would delete through into the host).
    if findmnt -rn -o TARGET | awk -v p="$d/" 'index($0, p) == 1 { f = 1 } END { exit !f }'; then die "$d has mounts below it; unmount them first"; fi
    log "removing incomplete $d"
    rm -rf -- "$d"
  done
  rm -f -- "$MARKER"

  log "mmdebstrap $SUITE ($VARIANT + $INCLUDE) from $mirror into $CORPUS (takes a minute or two)"
  mmdebstrap --mode=root --variant="$VARIANT" --include="$INCLUDE" \
    "$SUITE" "$tmp" "deb $mirror $SUITE main"
  mv -- "$tmp" "$CORPUS"

  local files bytes
  files=$(find "$CORPUS" -type f | wc -l)
  bytes=$(find "$CORPUS" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  {
    echo "params: $PARAMS"
    echo "mirror: $mirror"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "files: $files"
    echo "bytes: $bytes"
  } > "$MARKER.tmp"
  mv -- "$MARKER.tmp" "$MARKER"
  log "corpus built: $CORPUS, $files regular files, $bytes bytes"
}

install_packages
build_corpus

repo=$(cd "$(dirname "$0")/.." && pwd)
[[ -d $repo/node_modules/@napi-rs/blake-hash ]] || log "note: run 'npm ci' in $repo before the benchmark (it needs @napi-rs/blake-hash)"
[[ -x $repo/bin/snapdir && -d $repo/dist ]] || log "note: run 'npm run build' in $repo before the benchmark (it runs ./bin/snapdir)"
