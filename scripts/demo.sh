#!/usr/bin/env bash
# The main job, end to end, on the embedded default (local backend), as root.
# Until `exec` lands (issue 6) the deepest pieces that work are the union libservice over
# local branches, pools and their filesystem service with the FUSE legacy path and the
# user-level path: this builds the binary, drives two cloned instances directly, then creates
# a pool, starts its service, mounts two clones of one image through it, runs a program from
# the image on each, writes through each, runs a shell under the preload library (its file
# I/O over the pool's shared-memory queues), shows `inspect`, and tears everything down.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "error: run as root (FUSE mounts with allow_other, dev, suid)" >&2; exit 1; }
cargo build --release --locked
bin=$PWD/target/release/polytropon

echo "== polytropon --help (commands not yet landed exit 2 with 'not implemented yet')"
"$bin" --help | sed -n '/^Commands:/,/^$/p'

echo "== union + local libservices on real directories"
cargo run --release --locked --quiet --example union_demo

echo "== a pool, its filesystem service, and two clones of one image served by it"
work=$(mktemp -d /tmp/polytropon-demo-XXXXXX)
state=$work/state
pool=demo-$$
cleanup() {
  "$bin" --state-dir "$state" pool destroy "$pool" --force 2>/dev/null || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
mkdir -p "$work/image/bin" "$work/image/etc"
cp /bin/ls "$work/image/bin/ls"
echo "welcome to the image" > "$work/image/etc/motd"
cpu=$(cut -d, -f1 /sys/devices/system/cpu/online | cut -d- -f1)
"$bin" --state-dir "$state" pool create "$pool" --cpus "$cpu" --memory 1G --pids-max 512
pid=$("$bin" --state-dir "$state" service run --pool "$pool" --detach)
echo "pool $pool: service pid $pid on cpu $cpu"
for c in c1 c2; do
  mkdir -p "$work/$c/upper" "$work/$c/mnt"
  "$bin" --state-dir "$state" mount --pool "$pool" "$work/$c/mnt" --lower "$work/image" --upper "$work/$c/upper"
  "$work/$c/mnt/bin/ls" -l "$work/$c/mnt/etc"          # a binary from the image, run from the mount
  echo "$c was here" >> "$work/$c/mnt/etc/motd"
done
for c in c1 c2; do
  echo "-- $c sees:"; cat "$work/$c/mnt/etc/motd"
  echo "-- $c upper branch:"; (cd "$work/$c/upper" && find . -mindepth 1 | sort)
done
echo "-- image branch (unchanged):"; cat "$work/image/etc/motd"
echo "-- a shell in the pool under the preload library: its I/O takes the user-level path"
(cd "$work/c1/mnt" && "$bin" --state-dir "$state" exec --pool "$pool" --preload-only -- \
  sh -c 'seq 1 3 > etc/counted; cat etc/counted etc/motd | wc -l; rm etc/counted')
"$bin" --state-dir "$state" inspect --pool "$pool"
"$bin" --state-dir "$state" pool destroy "$pool" --force
echo "ok: one pool, one service on its own cpu, two clones sharing one read-only image, a process on the user-level path; all torn down"
