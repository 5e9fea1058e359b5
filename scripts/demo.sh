#!/usr/bin/env bash
# The main job, on this machine alone (no network): a small container image is built from this
# machine's own Debian packages (a base layer of dash, coreutils and libc, and a layer with Python),
# made an OCI image layout with umoci, pushed to a local store, mounted lazily as a root file system
# (--view rootfs), and a command is run from it with chroot through an overlayfs upper layer, as a
# container runtime would. The mount fetches only the chunks that command reads (here sh and coreutils,
# while Python's layer is only listed): the demo prints how much that was against the image's size,
# then unmounts and removes everything it made.
# Needs root (overlayfs, chroot) and what scripts/setup.sh installs (umoci, fuse3, python3).
set -euo pipefail
cd "$(dirname "$0")/.."
snapdir=$PWD/bin/snapdir
python=/usr/bin/python3 # Debian's own (what the image gets), whatever python3 is first on PATH
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it mounts overlayfs and runs chroot)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/snapdir-demo.XXXXXX")
mnt=$work/mnt merged=$work/merged
mount_pid=
cleanup() {
  mountpoint -q "$merged" && umount "$merged"
  if [ -n "$mount_pid" ]; then
    mountpoint -q "$mnt" && "$snapdir" umount "$mnt" >/dev/null
    wait "$mount_pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

# --- an image from this machine's Debian packages -------------------------------------------------
# the packages that hold these files (a program, the libraries it links, Python's standard library)
# (dpkg knows a file by the name its package installed it as: /lib/… or /usr/lib/…, a link or its target)
packages_of() {
  local f real p
  for f in "$@"; do
    real=$(readlink -f "$f")
    for p in "$f" "$real" "${real#/usr}"; do
      dpkg -S "$p" 2>/dev/null | grep -v "^diversion " | head -n 1 | cut -d: -f1 | grep . && break
    done || { echo "demo: no Debian package holds $f" >&2; return 1; }
  done | sort -u
}
libs_of() { ldd "$@" | awk '$2 == "=>" { print $3 } $1 ~ /^\/.*[^:]$/ { print $1 }'; }
base=(base-files $(packages_of /bin/sh /usr/bin/ls $(libs_of "$(readlink -f /bin/sh)" /usr/bin/ls)))
py=$(readlink -f $python)
stdlib=$($python -c 'import os, json; print(os.__file__, json.__file__)')
python_pkgs=($(packages_of $python "$py" $(libs_of "$py") $stdlib))

# copies the packages' files (as dpkg lists them, at their real place in the host's merged /usr) into a rootfs
copy_packages() {
  local rootfs=$1
  shift
  dpkg -L "$@" | $python -c '
import os, sys
seen = set()
for line in sys.stdin.read().splitlines():
    if not line.startswith("/") or not os.path.lexists(line) or (os.path.isdir(line) and not os.path.islink(line)): continue
    real = os.path.join(os.path.realpath(os.path.dirname(line)), os.path.basename(line))
    if real not in seen: seen.add(real); print(real[1:])
for link in ("bin", "lib", "lib64", "sbin"):
    if os.path.islink("/" + link): print(link)
' > "$work/files.txt"
  tar -C / --no-recursion -cf - -T "$work/files.txt" | tar -C "$rootfs" -xpf -
}

layout=$work/image bundle=$work/bundle
echo "+ building an image from this machine's Debian packages: ${base[*]} | ${python_pkgs[*]}" >&2
umoci init --layout "$layout"
umoci new --image "$layout:demo"
umoci unpack --image "$layout:demo" "$bundle" >/dev/null
copy_packages "$bundle/rootfs" "${base[@]}"
mkdir -m 1777 "$bundle/rootfs/tmp"
umoci repack --refresh-bundle --image "$layout:demo" "$bundle"
copy_packages "$bundle/rootfs" "${python_pkgs[@]}"
umoci repack --refresh-bundle --image "$layout:demo" "$bundle"
umoci config --image "$layout:demo" --config.cmd /bin/sh
files_bytes=$(du -sb "$bundle/rootfs" | cut -f1)
rm -rf "$bundle"
# what a registry would send for it: the compressed layer blobs its manifest lists
read -r layers blob_bytes < <($python -c '
import json, sys
d = sys.argv[1]
idx = json.load(open(d + "/index.json"))
m = json.load(open(d + "/blobs/sha256/" + idx["manifests"][0]["digest"][7:]))
print(len(m["layers"]), sum(l["size"] for l in m["layers"]))' "$layout")
echo "image: built in ${SECONDS} s, $layers layers, $(mb "$blob_bytes") of gzip layer blobs (what a registry pull downloads), $(mb "$files_bytes") of files"

# --- push it --------------------------------------------------------------------------------------
store=$work/store
echo "+ snapdir push --store $store $layout" >&2
start=$SECONDS
id=$("$snapdir" push --store "$store" "$layout")
echo "snapshot ID: $id (pushed in $((SECONDS - start)) s)"
echo "store: $(mb "$(du -sb "$store" | cut -f1)") on disk (layers stored as chunks and recipes, the layout byte-exact)"

# --- mount it lazily and run a command from it -----------------------------------------------------
mkdir "$mnt" "$merged" "$work/upper" "$work/work"
echo "+ snapdir mount --store $store --id ${id:0:16}… --view rootfs $mnt" >&2
mkfifo "$work/mount.log"
"$snapdir" mount --store "$store" --id "$id" --view rootfs --no-cache --json "$mnt" > "$work/mount.json" 2> "$work/mount.log" &
mount_pid=$!
exec 3< "$work/mount.log" # kept open to the end: the mount writes its last lines there as it exits
while IFS= read -r line <&3; do
  echo "$line" >&2
  case $line in *"mounted "*) break ;; esac
done
mountpoint -q "$mnt" || { echo "demo: the mount did not come up" >&2; exit 1; }
mount -t overlay overlay -o "lowerdir=$mnt/rootfs,upperdir=$work/upper,workdir=$work/work" "$merged"
command='set -e; echo "Debian $(cat /etc/debian_version): $(ls /usr/bin | wc -l) programs in /usr/bin, Python'"'"'s library $(du -sh /usr/lib/python3.* | cut -f1 | head -n 1) (listed, not read)"; echo written-inside > /tmp/out; cat /tmp/out'
echo "+ chroot $merged /bin/sh -c '$command'" >&2
env -i PATH=/usr/bin:/bin "$(command -v chroot)" "$merged" /bin/sh -c "$command"
[ "$(cat "$work/upper/tmp/out")" = written-inside ] && [ ! -e "$mnt/rootfs/tmp/out" ] || { echo "demo: the write did not land in the upper layer" >&2; exit 1; }
echo "its write landed in the overlayfs upper layer; the lazy mount below is read-only"
umount "$merged"
"$snapdir" umount "$mnt"
wait "$mount_pid"
mount_pid=
cat <&3 >&2
exec 3<&-

# --- what it took ---------------------------------------------------------------------------------
read -r fetched fetched_bytes < <($python -c 'import json, sys; s = json.load(open(sys.argv[1])); print(s["fetched"], s["fetchedBytes"])' "$work/mount.json")
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }
echo "fetched to run it: $fetched chunks, $(mb "$fetched_bytes") — $(pct "$fetched_bytes" "$blob_bytes") of the compressed image, $(pct "$fetched_bytes" "$files_bytes") of its files"
