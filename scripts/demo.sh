#!/usr/bin/env bash
# The main job, end to end, on the embedded default (local backend), as root.
# Until `exec` lands (issue 6) the deepest pieces that work are the union libservice over
# local branches and its FUSE legacy path: this builds the binary, drives two cloned
# instances directly, then mounts two clones of one image through FUSE, runs a program from
# the image on each, writes through each, and tears everything down.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "error: run as root (FUSE mounts with allow_other, dev, suid)" >&2; exit 1; }
cargo build --release --locked
bin=$PWD/target/release/polytropon

echo "== polytropon --help (commands not yet landed exit 2 with 'not implemented yet')"
"$bin" --help | sed -n '/^Commands:/,/^$/p'

echo "== union + local libservices on real directories"
cargo run --release --locked --quiet --example union_demo

echo "== two clones of one image through FUSE"
work=$(mktemp -d /tmp/polytropon-demo-XXXXXX)
state=$work/state
cleanup() {
  for c in c1 c2; do "$bin" --state-dir "$state" umount "$work/$c/mnt" 2>/dev/null || true; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
mkdir -p "$work/image/bin" "$work/image/etc"
cp /bin/ls "$work/image/bin/ls"
echo "welcome to the image" > "$work/image/etc/motd"
for c in c1 c2; do
  mkdir -p "$work/$c/upper" "$work/$c/mnt"
  pid=$("$bin" --state-dir "$state" mount "$work/$c/mnt" --lower "$work/image" --upper "$work/$c/upper" --detach)
  echo "$c: FUSE daemon pid $pid at $work/$c/mnt"
  "$work/$c/mnt/bin/ls" -l "$work/$c/mnt/etc"          # a binary from the image, run from the mount
  echo "$c was here" >> "$work/$c/mnt/etc/motd"
done
for c in c1 c2; do
  echo "-- $c sees:"; cat "$work/$c/mnt/etc/motd"
  echo "-- $c upper branch:"; (cd "$work/$c/upper" && find . -mindepth 1 | sort)
done
echo "-- image branch (unchanged):"; cat "$work/image/etc/motd"
for c in c1 c2; do "$bin" --state-dir "$state" umount "$work/$c/mnt"; done
echo "ok: two clones share one read-only image; each wrote only to its own upper branch"
