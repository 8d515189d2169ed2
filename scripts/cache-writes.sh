#!/usr/bin/env bash
# Issue 8 measurement: a pool's write workload (FILES files of SIZE MiB written in 1 MiB writes on the
# user-level path, then closed) with the pool's own write-back cache and with the kernel's
# page cache (`--cache kernel`); prints how much the host page cache grew, and the pool's memory.
#   sudo scripts/cache-writes.sh [FILES=4] [SIZE=256]
set -euo pipefail
FILES=${1:-4}; SIZE=${2:-256}
P=${POLYTROPON:-$(dirname "$0")/../target/release/polytropon}
W=$(mktemp -d /var/tmp/polytropon-cachewrites-XXXX)
S="--state-dir $W/state --data-dir $W/data"
cleanup() { for p in cw-wb cw-k; do $P $S pool destroy "$p" --force >/dev/null 2>&1 || true; done; rm -rf "$W"; }
trap cleanup EXIT
meminfo_kib() { awk -v k="$1:" '$1 == k {print $2}' /proc/meminfo; }
for mode in ${MODES:-writeback kernel}; do
  [ "$mode" = writeback ] && pool=cw-wb || pool=cw-k
  mkdir -p "$W/$mode/mnt" "$W/$mode/up"
  $P $S pool create "$pool" >/dev/null
  $P $S service run --pool "$pool" --detach >/dev/null
  $P $S mount --pool "$pool" "$W/$mode/mnt" --upper "$W/$mode/up" --cache "$mode"
  mem() { $P $S inspect --pool "$pool" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["usage"]["memory_current"])'; }
  sync
  m0=$(mem); c0=$(meminfo_kib Cached); peak_dirty=0
  for i in $(seq 1 "$FILES"); do
    # (Not dd: it moves its output to fd 1, which the preload library hands to the kernel.)
    $P $S exec --pool "$pool" --preload-only -- python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
b = bytes(1 << 20)
for _ in range(int(sys.argv[2])):
    os.write(fd, b)
os.close(fd)' "$W/$mode/mnt/f$i" "$SIZE"
    d=$(meminfo_kib Dirty); [ "$d" -gt "$peak_dirty" ] && peak_dirty=$d
  done
  m1=$(mem); c1=$(meminfo_kib Cached)
  echo "$mode: $FILES x $SIZE MiB written on the user-level path: host page cache +$(( (c1 - c0) >> 10 )) MiB (host dirty peak $(( peak_dirty >> 10 )) MiB), pool memory +$(( (m1 - m0) >> 20 )) MiB"
  $P $S pool destroy "$pool" --force >/dev/null
done
