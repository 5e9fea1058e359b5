#!/usr/bin/env bash
# The main job on an embedded default: generate a small tree, push it to a local store, pull it back,
# check the pulled copy has the same ID, and list the store's revisions.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/snapdir-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
src=$work/sample
mkdir -p "$src/etc" "$src/bin" "$src/empty"
printf 'hello from snapdir\n' > "$src/etc/motd"
head -c 3000000 /dev/urandom > "$src/bin/blob"
cp "$src/bin/blob" "$src/bin/blob-copy"
ln -s ../etc/motd "$src/bin/motd-link"
ln "$src/etc/motd" "$src/etc/motd-hardlink"
truncate -s 100M "$src/sparse.img"

store=$work/store
echo "+ snapdir push --store $store $src" >&2
id=$(./bin/snapdir push --store "$store" "$src")
echo "snapshot ID: $id"
echo "+ snapdir pull --store $store --id $id $work/pulled" >&2
./bin/snapdir pull --store "$store" --id "$id" "$work/pulled"
echo "+ snapdir verify" >&2
./bin/snapdir verify --store "$store" --id "$id"
pulled_id=$(./bin/snapdir id "$work/pulled")
echo "ID of the pulled copy: $pulled_id"
[ "$pulled_id" = "$id" ] || { echo "demo: the pulled copy differs" >&2; exit 1; }
echo "+ snapdir revisions --store $store" >&2
./bin/snapdir revisions --store "$store"
echo "store: $(find "$store" -type f | wc -l) objects, $(du -sh "$store" | cut -f1) on disk for $(du -sh --apparent-size "$src" | cut -f1) of input"
