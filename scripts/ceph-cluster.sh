#!/usr/bin/env bash
# A throwaway single-node Ceph cluster with CephFS, for tests and benchmarks: one mon, one mgr,
# one memstore OSD and one MDS on 127.0.0.1 or ADDR (cephx on), all state under DIR.
#
#   scripts/ceph-cluster.sh start DIR [PORT [ADDR]]   start it; prints DIR/ceph.conf once CephFS is up
#   scripts/ceph-cluster.sh stop DIR           stop its daemons (by their pid files) and remove DIR
#
# PORT is the mon's v1 port (default 46789; v2 is PORT+1); clusters running side by side need
# distinct ports. ADDR (default 127.0.0.1) is an address of this host the daemons listen on:
# one a pool's network namespace can reach (not loopback) for a pool whose traffic is shaped
# (`pool create --net-rate`). Clients use `-c DIR/ceph.conf --id admin` (keyring in the conf). Needs the
# Debian packages ceph, ceph-mds (scripts/install-deps.sh installs them) and root.
# CEPH_MEMSTORE_BYTES (default 1 GiB) sizes the OSD's in-memory store: benchmarks that write
# large files need more (CephFS frees a removed file's objects later, in the background; a
# full OSD blocks every writer).
set -Eeuo pipefail   # -E: the clean-up trap also fires inside functions

usage() { echo "usage: $0 start DIR [PORT [ADDR]] | stop DIR" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)   # absolute: the daemons chdir to / when they fork
port=${3:-46789}
addr=${4:-127.0.0.1}
[[ $addr =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "error: ADDR must be an IPv4 address, not $addr" >&2; exit 2; }

stop() {
  local pids=()
  for f in "$dir"/run/*.pid; do
    [[ -f $f ]] || continue
    local p; p=$(cat "$f")
    [[ $p =~ ^[0-9]+$ ]] && kill -0 "$p" 2>/dev/null && { kill -TERM "$p" 2>/dev/null || true; pids+=("$p"); }
  done
  for _ in $(seq 1 100); do   # the MDS takes ~5 s to exit cleanly
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf --one-file-system "$dir"
}

case $cmd in
  stop) stop; exit 0 ;;
  start) ;;
  *) usage ;;
esac

for b in ceph-mon ceph-mgr ceph-osd ceph-mds ceph-authtool monmaptool ceph uuidgen; do
  command -v "$b" >/dev/null || { echo "error: $b is missing (scripts/install-deps.sh installs Ceph)" >&2; exit 1; }
done
[[ -e $dir/ceph.conf ]] && { echo "error: $dir already holds a cluster (stop it first)" >&2; exit 1; }
trap 'echo "error: the cluster did not come up; logs in $dir/log" >&2; tail -n 5 "$dir"/log/*.log >&2 2>/dev/null; stop' ERR

mkdir -p "$dir"/{run,crash,log,keys,mon.a,mgr.x,osd.0,mds.a}
fsid=$(uuidgen)
conf=$dir/ceph.conf
cat > "$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:$addr:$((port + 1)),v1:$addr:$port]
public addr = $addr
cluster addr = $addr
public network = $addr/32
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = $dir/run
crash dir = $dir/crash
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
mon cluster log file = $dir/log/cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
paxos propose interval = 0.1
mon rocksdb options = write_buffer_size=4194304,compression=kNoCompression
mgr initial modules =
mds cache memory limit = 134217728
osd objectstore = memstore
memstore device bytes = ${CEPH_MEMSTORE_BYTES:-1073741824}

[mon]
pid file = $dir/run/\$name.pid
mon data = $dir/\$name
keyring = $dir/keys/\$name.keyring
[mgr]
pid file = $dir/run/\$name.pid
mgr data = $dir/\$name
keyring = $dir/keys/\$name.keyring
[osd]
pid file = $dir/run/\$name.pid
osd data = $dir/\$name
keyring = $dir/keys/\$name.keyring
[mds]
pid file = $dir/run/\$name.pid
mds data = $dir/\$name
keyring = $dir/keys/\$name.keyring
[client]
keyring = $dir/keys/client.admin.keyring
log file = $dir/log/client.log
EOF

k=$dir/keys
ceph-authtool --create-keyring "$k/mon.a.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$k/client.admin.keyring" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool --create-keyring "$k/mgr.x.keyring" --gen-key -n mgr.x \
  --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool --create-keyring "$k/mds.a.keyring" --gen-key -n mds.a \
  --cap mon 'allow profile mds' --cap osd 'allow rwx' --cap mds 'allow' --cap mgr 'allow profile mds' >/dev/null
ceph-authtool --create-keyring "$k/osd.0.keyring" --gen-key -n osd.0 \
  --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
for n in client.admin mgr.x mds.a osd.0; do
  ceph-authtool "$k/mon.a.keyring" --import-keyring "$k/$n.keyring" >/dev/null
done

monmaptool --create --addv a "[v2:$addr:$((port + 1)),v1:$addr:$port]" --fsid "$fsid" "$dir/monmap" >/dev/null
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$k/mon.a.keyring"
ceph-mon -c "$conf" --id a
ceph-mgr -c "$conf" --id x
ceph() { command ceph -c "$conf" --id admin "$@"; }
osd_uuid=$(uuidgen)
ceph osd new "$osd_uuid" 0 >/dev/null
ceph-osd -c "$conf" --id 0 --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1
ceph-osd -c "$conf" --id 0 2>/dev/null
ceph-mds -c "$conf" --id a >/dev/null
ceph osd pool create cephfs_metadata 8 >/dev/null 2>&1
ceph osd pool create cephfs_data 8 >/dev/null 2>&1
ceph fs new cephfs cephfs_metadata cephfs_data >/dev/null 2>&1
ceph fs set cephfs standby_count_wanted 0 >/dev/null 2>&1

for _ in $(seq 1 300); do
  if ceph fs status -f json 2>/dev/null | grep -q '"state": *"active"'; then
    trap - ERR
    echo "$conf"
    exit 0
  fi
  sleep 0.1
done
false
