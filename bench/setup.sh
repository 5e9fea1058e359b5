#!/usr/bin/env bash
# Prepares everything the benchmarks need: the reference tools (casync, b3sum, zstd, GNU time for
# the CPU seconds of child processes; squashfs-tools, squashfuse and fuse3 for the mount comparison)
# and the corpora, real Debian bookworm root filesystems built by mmdebstrap:
#
#   debian-rootfs           minbase + python3, about 212 MB: push-throughput, mount-read, sync-transfer
#   debian-base             minbase alone, the base debian-rootfs shares: sync-transfer
#   debian-python3-rebuilt  minbase + python3 + less, built in its own mmdebstrap run (so mtimes and
#                           generated files such as the dpkg database differ): sync-transfer
#   debian-base-rebuilt     minbase alone again, in its own mmdebstrap run: the same packages as
#                           debian-base, but another layer digest: dedup-report
#
#   bash bench/setup.sh [--all | NAME...] [--images]    default: debian-rootfs only
#
# --images also installs what the image benchmark (image-store.mjs) builds and moves images with:
# umoci, skopeo, Debian's docker.io (dockerd 20.10, run by the benchmark with its own data root, no
# bridge, no iptables) and docker-registry (a loopback registry to push to). The packages' own
# service is not started here (docker.io's postinst asks invoke-rc.d, which policy-rc.d may refuse).
#
# Idempotent: packages are checked with dpkg before apt is touched, and a corpus is rebuilt only
# when its marker file is missing or records different build parameters, so a second run takes
# about a second.
#
# Environment:
#   SNAPDIR_BENCH_DIR  where the corpora live (default /var/tmp/snapdir-bench). Outside the repo on
#                      purpose: 200 MB of rootfs must never end up in a commit or in a test glob.
#
# Needs root: apt-get install, mmdebstrap --mode=root (the only mode that writes a directory with
# real ownership and device nodes), and later the benchmarks' page-cache drops and FUSE mounts.
set -euo pipefail

BENCH_DIR=${SNAPDIR_BENCH_DIR:-/var/tmp/snapdir-bench}

SUITE=bookworm
# Every variant is minbase plus the packages named here (comma-separated, as mmdebstrap --include
# takes them). minbase (~168 MB) plus python3 (~44 MB) lands at ~212 MB in ~8,300 regular files: ELF
# binaries and shared libraries, Python bytecode and sources, locale data and docs; a realistic mix
# for a container base layer. The next variant up, "important", is closer to 300 MB.
# debian-python3-rebuilt is debian-rootfs rebuilt with one small package more (less: 0.3 MB, its
# dependencies are all in minbase): what a registry sees when an image is rebuilt from scratch.
VARIANT=minbase
declare -A INCLUDES=(
  [debian-rootfs]=python3
  [debian-base]=
  [debian-python3-rebuilt]=python3,less
  [debian-base-rebuilt]=
)
ALL_CORPORA=(debian-base debian-rootfs debian-python3-rebuilt debian-base-rebuilt)

log() { printf 'setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

corpora=()
images=0
for arg in "$@"; do
  case $arg in
    --all) corpora+=("${ALL_CORPORA[@]}") ;;
    --images) images=1 ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    -*) die "unknown option $arg (expected --all or corpus names: ${ALL_CORPORA[*]})" ;;
    *) [[ -v INCLUDES[$arg] ]] || die "unknown corpus '$arg' (expected one of: ${ALL_CORPORA[*]})"; corpora+=("$arg") ;;
  esac
done
[[ ${#corpora[@]} -gt 0 || $images -eq 1 ]] || corpora=(debian-rootfs)

[[ $EUID -eq 0 ]] || die "run as root (apt-get install, mmdebstrap --mode=root, drop_caches); running as uid $EUID"

# squashfs-tools: mksquashfs; squashfuse: the FUSE SquashFS reader mount-read compares with;
# fuse3: fusermount3, to unmount FUSE file systems.
PACKAGES=(mmdebstrap casync b3sum zstd time squashfs-tools squashfuse fuse3)
# the image benchmark's producers and registry, only with --images: docker.io brings containerd and
# runc, which no other benchmark needs
IMAGE_PACKAGES=(umoci skopeo docker.io docker-registry)
[[ $images -eq 0 ]] || PACKAGES+=("${IMAGE_PACKAGES[@]}")

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$pkg")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "packages present: ${PACKAGES[*]}"
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

# Builds $BENCH_DIR/NAME (minbase plus ${INCLUDES[NAME]}) unless its marker says it is there.
build_corpus() {
  local name=$1
  local include=${INCLUDES[$name]}
  local corpus=$BENCH_DIR/$name
  # The marker sits beside the tree, not in it, so it is not part of what gets snapshotted.
  local marker=$BENCH_DIR/$name.complete
  local params="suite=$SUITE variant=$VARIANT include=$include"
  if [[ -f $marker ]] && grep -qxF "params: $params" "$marker" && [[ -d $corpus ]]; then
    log "corpus present: $corpus ($(grep '^files:' "$marker"), $(grep '^bytes:' "$marker"))"
    return
  fi

  local mirror
  mirror=$(debian_mirror)
  [[ -n $mirror ]] || die "no apt source for Debian $SUITE main found in /etc/apt/sources.list*; add one or run on a Debian $SUITE machine"

  mkdir -p "$BENCH_DIR"
  # A marker-less tree is a failed or interrupted earlier build. Building into a temporary name
  # and renaming at the end means the corpus itself is only ever absent or complete.
  local tmp=$corpus.partial
  local d
  for d in "$corpus" "$tmp"; do
    [[ -e $d ]] || continue
    # mmdebstrap mounts /proc, /sys and /dev inside the chroot while it runs; never recurse into
    # a tree where one of those is still mounted (that would delete through into the host).
    if findmnt -rn -o TARGET | awk -v p="$d/" 'index($0, p) == 1 { f = 1 } END { exit !f }'; then die "$d has mounts below it; unmount them first"; fi
    log "removing incomplete $d"
    rm -rf -- "$d"
  done
  rm -f -- "$marker"

  log "mmdebstrap $SUITE ($VARIANT${include:+ + $include}) from $mirror into $corpus (takes a minute or two)"
  mmdebstrap --mode=root --variant="$VARIANT" ${include:+--include="$include"} \
    "$SUITE" "$tmp" "deb $mirror $SUITE main"
  mv -- "$tmp" "$corpus"

  local files bytes
  files=$(find "$corpus" -type f | wc -l)
  bytes=$(find "$corpus" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  {
    echo "params: $params"
    echo "mirror: $mirror"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "files: $files"
    echo "bytes: $bytes"
  } > "$marker.tmp"
  mv -- "$marker.tmp" "$marker"
  log "corpus built: $corpus, $files regular files, $bytes bytes"
}

install_packages
for name in "${corpora[@]}"; do build_corpus "$name"; done

repo=$(cd "$(dirname "$0")/.." && pwd)
[[ -d $repo/node_modules/@napi-rs/blake-hash ]] || log "note: run 'npm ci' in $repo before the benchmark (it needs @napi-rs/blake-hash)"
[[ -x $repo/bin/snapdir && -d $repo/dist ]] || log "note: run 'npm run build' in $repo before the benchmark (it runs ./bin/snapdir)"
