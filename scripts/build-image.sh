#!/usr/bin/env bash
# Builds a small real container image from this machine's Debian packages (nothing is
# downloaded): layer 1 is a merged-/usr base with dash, coreutils, grep, sed and their shared
# libraries, plus busybox-static (httpd, a static binary); layer 2 adds the application files,
# replaces /etc/motd, whites out /etc/gone and makes /data/dir opaque (OCI whiteout forms).
#
# Writes, under OUT (default target/test-image):
#   oci/         an OCI image layout          oci.tar     the same as an archive
#   docker.tar   a `docker save` archive (manifest.json, no index.json)
# Idempotent: does nothing when OUT/.done is newer than this script.
set -euo pipefail
out=${1:-$(cd "$(dirname "$0")/.." && pwd)/target/test-image}
self=$(readlink -f "$0")
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
[[ -f $out/.done && $out/.done -nt $self ]] && exit 0
for p in dash coreutils grep sed busybox-static libgcc-s1 python3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
    echo "error: package $p is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
rm -rf "$out"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
base=$work/base app=$work/app
mkdir -p "$base"/usr/{bin,sbin,lib/x86_64-linux-gnu,lib64} "$base"/{etc,root,tmp,srv,data/dir,proc,dev,sys}
chmod 1777 "$base/tmp"
for l in bin sbin lib lib64; do ln -s "usr/$l" "$base/$l"; done

# Dynamically linked programs and every library they load, at the paths the loader expects.
programs=(dash cat ls echo mkdir rm cp mv wc head tail seq sha256sum sleep id hostname stat
          touch dd sort uname readlink env true false tr test printf ln chmod grep sed date tee
          basename dirname kill nproc tty stty ps cut)
libs=()
for p in "${programs[@]}"; do
  src=$(type -P "$p" || true)
  [[ -n $src && -x $src ]] || { echo "error: $p not found" >&2; exit 1; }
  cp -L "$src" "$base/usr/bin/$p"
  while read -r lib; do libs+=("$lib"); done < <(ldd "$src" | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\/.*ld-linux/ {print $1}')
done
libs+=(/lib/x86_64-linux-gnu/libgcc_s.so.1)   # the preload library's own needs
for lib in $(printf '%s\n' "${libs[@]}" | sort -u); do
  real=$(readlink -f "$lib")
  cp -L "$real" "$base/usr/lib/x86_64-linux-gnu/$(basename "$lib")"
done
ln -sf ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$base/usr/lib64/ld-linux-x86-64.so.2"
ln -s dash "$base/usr/bin/sh"
cp /usr/bin/busybox "$base/usr/bin/busybox"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n' > "$base/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\napp:x:1000:\n' > "$base/etc/group"
echo "root only" > "$base/root/secret"
chmod 700 "$base/root"
echo "base layer" > "$base/etc/motd"
echo "removed by the upper layer" > "$base/etc/gone"
echo "hidden by the opaque directory" > "$base/data/dir/a"
echo "from the base layer" > "$base/data/kept"

mkdir -p "$app"/{etc,data/dir,srv/www,usr/local/bin}
echo "welcome to the polytropon test image" > "$app/etc/motd"
: > "$app/etc/.wh.gone"
: > "$app/data/dir/.wh..wh..opq"
echo "the only entry of the opaque directory" > "$app/data/dir/b"
echo "hello from polytropon" > "$app/srv/www/index.html"
cat > "$app/usr/local/bin/serve" <<'SH'
#!/bin/sh
# serve PORT: busybox httpd in the foreground on PORT, serving /srv/www.
exec busybox httpd -f -p "${1:-8080}" -h /srv/www
SH
chmod 755 "$app/usr/local/bin/serve"

blobs=$out/oci/blobs/sha256
mkdir -p "$blobs"
layer() { # layer DIR gzip|plain -> prints the blob digest (hex)
  local f=$work/layer
  tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$1" -cf "$f" .
  [[ $2 == gzip ]] && { gzip -n -9 "$f"; f=$f.gz; }
  local h; h=$(sha256sum "$f" | cut -d' ' -f1)
  mv "$f" "$blobs/$h"; echo "$h"
}
l1=$(layer "$base" gzip)
l2=$(layer "$app" plain)
python3 - "$blobs" "$l1" "$l2" "$out" <<'PY'
import hashlib, json, os, sys
blobs, l1, l2, out = sys.argv[1:]
def put(obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    h = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, h), "wb").write(data)
    return h, len(data)
size = lambda h: os.path.getsize(os.path.join(blobs, h))
cfg, cfg_size = put({
    "architecture": "amd64", "os": "linux",
    "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello from the image"],
               "Cmd": ["/bin/sh"], "WorkingDir": "/srv"},
    "rootfs": {"type": "layers", "diff_ids": []},
})
man, man_size = put({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + cfg, "size": cfg_size},
    "layers": [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + l1, "size": size(l1)},
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + l2, "size": size(l2)},
    ],
})
json.dump({"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + man, "size": man_size,
    "annotations": {"io.containerd.image.name": "polytropon/test:latest", "org.opencontainers.image.ref.name": "latest"}}]},
    open(os.path.join(out, "oci", "index.json"), "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(out, "oci", "oci-layout"), "w"))
os.makedirs(os.path.join(out, "docker"), exist_ok=True)
json.dump([{"Config": "blobs/sha256/" + cfg, "RepoTags": ["polytropon/test-docker:latest"],
            "Layers": ["blobs/sha256/" + l1, "blobs/sha256/" + l2]}],
          open(os.path.join(out, "docker", "manifest.json"), "w"))
PY
tar -C "$out/oci" -cf "$out/oci.tar" .
mkdir -p "$out/docker/blobs"
cp -r "$out/oci/blobs/sha256" "$out/docker/blobs/"
tar -C "$out/docker" -cf "$out/docker.tar" .
rm -rf "$out/docker"
touch "$out/.done"
echo "image built in $out: $(du -sh "$out/oci" | cut -f1) (layers sha256:${l1:0:12}, sha256:${l2:0:12})"
