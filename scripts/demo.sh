#!/usr/bin/env bash
# The main job, end to end, on the embedded default (local backend), as root:
# build; build a small image from this machine's Debian packages and import it; create a pool
# and start its filesystem service; start cloned containers of the image that do real file
# work on the user-level path (and one that serves HTTP to the host); show `inspect`; tear
# everything down, leaving the host as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "error: run as root (namespaces, cgroups, FUSE mounts)" >&2; exit 1; }
scripts/install-deps.sh
cargo build --release --locked
bin=$PWD/target/release/polytropon

work=$(mktemp -d /tmp/polytropon-demo-XXXXXX)
chmod 755 "$work"   # container users other than root walk the branch directories
export POLYTROPON_STATE_DIR=$work/state POLYTROPON_DATA_DIR=$work/data
pool=demo-$$
cleanup() {
  "$bin" pool destroy "$pool" --force 2>/dev/null || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "== an image built from Debian packages (dash, coreutils, busybox-static...), imported"
scripts/build-image.sh "$work/image"
"$bin" image import "$work/image/oci.tar" --name demo:1
"$bin" image list

echo "== a pool on one cpu with 1 GiB, and its filesystem service"
cpu=$(cut -d, -f1 /sys/devices/system/cpu/online | cut -d- -f1)
"$bin" pool create "$pool" --cpus "$cpu" --memory 1G --pids-max 1024
"$bin" service run --pool "$pool" --detach >/dev/null

echo "== three cloned containers doing file work in the background, one serving HTTP"
for c in 1 2 3; do
  "$bin" exec --pool "$pool" --clone-of demo:1 --name "worker-$c" --detach -- sh -c '
    mkdir -p /work
    i=0
    while :; do
      i=$((i+1))
      seq 1 5000 | tee /work/numbers-$((i % 8)) > /dev/null
      sort -rn /work/numbers-$((i % 8)) | head -1 > /work/top
      cat /work/top /etc/motd | sha256sum > /work/sum
      sleep 0.2
    done'
done
port=$((20000 + $$ % 10000))
"$bin" exec --pool "$pool" --clone-of demo:1 --name web --detach -- serve "$port"

echo "== a container in the foreground: its own root, hostname, processes; the image's layers"
"$bin" exec --pool "$pool" --clone-of demo:1 --name hello -- sh -c '
  echo "hostname: $(hostname), pid $$, $(ls /proc | grep -c "^[0-9]") processes visible"
  cat /etc/motd
  echo "in /data/dir (opaque in the upper layer): $(ls /data/dir)"
  test -e /etc/gone || echo "/etc/gone: whited out by the upper layer"
  echo "$GREETING" > /srv/greeting; cat /srv/greeting
  grep -c libpolytropon_preload /proc/self/maps | sed "s/^/preload library mappings: /"'

sleep 2
echo "== the web container answers the host"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET / HTTP/1.0\r\nHost: demo\r\n\r\n' >&3
tail -1 <&3
exec 3>&-

echo "== inspect: the pool, its service, one mount per clone (user-level counters), containers"
"$bin" inspect --pool "$pool" | grep -Ev '^    (fuse|user) ' || true
"$bin" inspect --pool "$pool" --format json | python3 -c '
import json, sys
p = json.load(sys.stdin)[0]
for m in p["service"]["mounts"]:
    u = m["user_ops"]; f = m["fuse_ops"]
    print("  %-60s user-level ops %6d   fuse ops %6d" % (m["mountpoint"][-40:], sum(o["count"] for o in u.values()), sum(o["count"] for o in f.values())))'

echo "== stop one worker, then destroy the pool (which ends the others)"
"$bin" kill --pool "$pool" worker-1
sleep 1
"$bin" inspect --pool "$pool" | grep '^  container'
"$bin" pool destroy "$pool" --force
"$bin" image remove demo:1
left=$(grep -c "$work" /proc/mounts || true)
echo "ok: image, pool, service, 5 containers on the user-level path; all torn down ($left mounts left)"
