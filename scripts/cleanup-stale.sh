#!/usr/bin/env bash
# Removes what an earlier, killed test run may have left (run before the suite, never beside
# another run): only mounts and directories under
# the temp dir whose names carry the project's "polytropon-" prefix.
set -euo pipefail
tmp=${TMPDIR:-/tmp}
# Ceph daemons of a killed test's cluster (scripts/ceph-cluster.sh), by their pid files.
for pidfile in "$tmp"/polytropon-*/cluster/run/*.pid; do
  [[ -f $pidfile ]] || continue
  pid=$(cat "$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] && grep -qs ceph "/proc/$pid/comm" && kill -KILL "$pid" 2>/dev/null || true
done
# Deepest mountpoints first.
awk -v t="$tmp/polytropon-" 'index($2, t) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
  umount -l "$m" 2>/dev/null || true
done
find "$tmp" -maxdepth 1 -name 'polytropon-*' -exec rm -rf --one-file-system {} + 2>/dev/null || true
# Pool cgroups of killed test runs, once empty, unless a pool of the default state directory
# (/run/polytropon) owns them: test pools live in temp state directories removed above.
find /sys/fs/cgroup -maxdepth 5 -depth -type d -name 'polytropon-*' 2>/dev/null | while read -r cg; do
  pool=${cg##*/polytropon-}
  [[ -e /run/polytropon/pools/$pool ]] || rmdir "$cg" 2>/dev/null || true
done
# Host addresses of a killed test's cluster (tests/net_rate.rs: 10.214.N.1/32 on lo).
ip -o -4 addr show dev lo 2>/dev/null | awk '{print $4}' | { grep -E '^10\.214\.[0-9]+\.1/32$' || true; } | while read -r a; do
  ip addr del "$a" dev lo 2>/dev/null || true
done
