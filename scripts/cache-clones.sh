#!/usr/bin/env bash
# Issue 8 measurement: N clones (mounts of one pool sharing a lower branch) read one lower file
# of SIZE MiB on the user-level path; prints the pool's memory and the host page cache growth,
# for the pool's own cache (writethrough) and for the kernel page cache (kernel).
#   sudo scripts/cache-clones.sh [N=16] [SIZE=256]
set -euo pipefail
N=${1:-16}; SIZE=${2:-256}
P=${POLYTROPON:-$(dirname "$0")/../target/release/polytropon}
W=$(mktemp -d /var/tmp/polytropon-cacheclones-XXXX)
S="--state-dir $W/state --data-dir $W/data"
cleanup() { $P $S pool destroy cc-wt --force >/dev/null 2>&1 || true; $P $S pool destroy cc-k --force >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W/lower"
dd if=/dev/urandom of="$W/lower/big" bs=1M count="$SIZE" oflag=direct status=none
cached_kib() { awk '/^Cached:/ {print $2}' /proc/meminfo; }
for mode in writethrough kernel; do
  [ "$mode" = writethrough ] && pool=cc-wt || pool=cc-k
  $P $S pool create "$pool" >/dev/null
  $P $S service run --pool "$pool" --detach >/dev/null
  for i in $(seq 1 "$N"); do
    mkdir -p "$W/$mode/mnt$i" "$W/$mode/up$i"
    $P $S mount --pool "$pool" "$W/$mode/mnt$i" --lower "$W/lower" --upper "$W/$mode/up$i" --cache "$mode" --cache-size 512M
  done
  mem() { $P $S inspect --pool "$pool" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["usage"]["memory_current"])'; }
  m0=$(mem); c0=$(cached_kib)
  for i in $(seq 1 "$N"); do
    $P $S exec --pool "$pool" --preload-only -- cat "$W/$mode/mnt$i/big" > /dev/null
  done
  m1=$(mem); c1=$(cached_kib)
  echo "$mode: $N clones read a $SIZE MiB lower file: pool memory +$(( (m1 - m0) >> 20 )) MiB, host page cache +$(( (c1 - c0) >> 10 )) MiB"
  $P $S pool destroy "$pool" --force >/dev/null
done
