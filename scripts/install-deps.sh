#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need. Idempotent: installs only what
# is missing, and nothing when everything is there.
set -euo pipefail

packages=(
  util-linux      # mount, umount, unshare (pool IPC namespaces), nsenter, ipcs, setpriv
  python3         # small real programs in the tests
  iproute2        # ip, tc: a pool's network (pool create --net-rate)
  attr            # getfattr/setfattr: xattrs in the real-program tests
  libcap2-bin     # setcap/getcap: file capabilities through the FUSE mount
  fuse3           # /dev/fuse helpers (fusermount3)
  fuse-overlayfs  # the peer the FUSE benchmark compares against
  git sqlite3 fio tar busybox-static  # real programs run on the mounts
  file            # tells the static test binary from a dynamic one
  gcc libc6-dev   # compiles the C program that uses polytropon.h
  ceph ceph-mds ceph-fuse libcephfs2 uuid-runtime   # a throwaway cluster (scripts/ceph-cluster.sh); the cephfs backend; raw copies into CephFS
  unionfs-fuse    # a peer of bench, alone and over ceph-fuse (the papers' F/F)
  rocksdb-tools   # db_bench: the rocksdb workload of bench
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# overlayfs must be available for the oracle test.
if ! grep -qw overlay /proc/filesystems; then
  modprobe overlay 2>/dev/null || true
fi
grep -qw overlay /proc/filesystems || { echo "error: kernel overlayfs is not available" >&2; exit 1; }

# The OpenMetrics parser the metrics test checks `inspect --format openmetrics` and the
# `--metrics-listen` endpoint with (Prometheus's Python client), for the python3 the tests
# run. pip first (a python3 of its own, as on the developers' machines); Debian's package
# where pip may not install (the system python3 refuses it).
if ! python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
  echo "installing: prometheus_client (python3)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'prometheus_client>=0.16' \
    || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq --no-install-recommends python3-prometheus-client; }
  python3 -c 'import prometheus_client.openmetrics.parser' \
    || { echo "error: python3 cannot import prometheus_client (needed by tests/metrics.rs)" >&2; exit 1; }
fi
