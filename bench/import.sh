#!/usr/bin/env bash
# bench/import.sh — ociboot's image store side by side with ostree, in one run, as ratios.
#
#   1. import of one Debian bookworm rootfs (mmdebstrap, ~170 MB, one layer):
#      `ociboot image pull oci:…` vs `ostree --repo=R commit --tree=tar=FILE` (bare repo),
#      on the uncompressed tar and on the gzip one; wall time and bytes on disk.
#   2. through a local docker-registry: pulling the same image twice, then a second image
#      that shares all but one layer: extra disk and bytes downloaded (from the registry's
#      access log, not from ociboot's own report).
#   3. peak RSS of every pull.
#
# Every measurement runs on a freshly made ext4 filesystem (a loop-mounted image file), so
# neither tool pays for the other's deleted inodes; both sync to disk before they finish.
# Needs root, and: mmdebstrap skopeo umoci ostree docker-registry e2fsprogs time python3.
# Usage: bench/import.sh [RUNS]   (default 3; medians are reported)
set -euo pipefail

RUNS=${1:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-/var/tmp/ociboot-bench}
MNT=$WORK/mnt
mkdir -p "$WORK" "$MNT"
die() { echo "bench: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (mounts a scratch ext4)"
for t in skopeo umoci ostree docker-registry mkfs.ext4 /usr/bin/time python3; do
    command -v "$t" >/dev/null || die "missing $t"
done

echo "== building ociboot (release)" >&2
(cd "$REPO" && cargo build --release -q)
OCIBOOT=${CARGO_TARGET_DIR:-$REPO/target}/x86_64-unknown-linux-gnu/release/ociboot

echo "== preparing images" >&2
DEB=$WORK/debian
bash "$REPO/tests/fixtures/debian-image.sh" "$DEB" bookworm >&2
TAR=$DEB/rootfs.tar
LAYER_GZ=$(python3 - "$DEB" <<'PY'
import json, sys, os
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "index.json")))
m = [x for x in idx["manifests"] if x["annotations"]["org.opencontainers.image.ref.name"] == "bookworm"][0]
man = json.load(open(os.path.join(d, "blobs", *m["digest"].split(":"))))
print(os.path.join(d, "blobs", *man["layers"][0]["digest"].split(":")))
PY
)
# The same tar as an uncompressed layer (media type …layer.v1.tar), so both tools read
# identical bytes.
PLAIN=$WORK/plain
if [[ ! -f $PLAIN/index.json ]]; then
    python3 - "$TAR" "$PLAIN" <<'PY'
import hashlib, json, os, sys
tar, out = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(out, "blobs/sha256"), exist_ok=True)
def put(b):
    h = hashlib.sha256(b).hexdigest()
    open(os.path.join(out, "blobs/sha256", h), "wb").write(b)
    return "sha256:" + h
h = hashlib.sha256()
with open(tar, "rb") as f:
    for c in iter(lambda: f.read(1 << 20), b""):
        h.update(c)
dst = os.path.join(out, "blobs/sha256", h.hexdigest())
if not os.path.exists(dst):
    os.link(tar, dst)
cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
                  "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h.hexdigest()]}}).encode()
cd = put(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
                  "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + h.hexdigest(),
                              "size": os.path.getsize(tar)}]}).encode()
md = put(man)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
           "size": len(man), "annotations": {"org.opencontainers.image.ref.name": "plain"}}]},
          open(os.path.join(out, "index.json"), "w"))
open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
fi
# v2: the Debian image plus one small layer (~1 MB: a random file and a version file),
# made with GNU tar and gzip, and a new manifest and config beside v1's.
if ! grep -q '"v2"' "$DEB/index.json"; then
    extra=$WORK/extra && rm -rf "$extra" && mkdir -p "$extra/opt/v2"
    head -c 1000000 /dev/urandom > "$extra/opt/v2/data.bin"
    echo v2 > "$extra/opt/v2/VERSION"
    tar -C "$extra" --numeric-owner --owner=0 --group=0 -cf "$WORK/extra.tar" opt
    gzip -1 -n -c "$WORK/extra.tar" > "$WORK/extra.tar.gz"
    python3 - "$DEB" "$WORK/extra.tar" "$WORK/extra.tar.gz" <<'PY'
import hashlib, json, os, sys
d, tar, gz = sys.argv[1:]
def blob(dg): return os.path.join(d, "blobs", *dg.split(":"))
def put(b):
    h = "sha256:" + hashlib.sha256(b).hexdigest()
    open(blob(h), "wb").write(b)
    return h
idx = json.load(open(os.path.join(d, "index.json")))
v1 = [x for x in idx["manifests"] if x["annotations"]["org.opencontainers.image.ref.name"] == "bookworm"][0]
man = json.load(open(blob(v1["digest"])))
cfg = json.load(open(blob(man["config"]["digest"])))
gzb = open(gz, "rb").read()
ld = put(gzb)
cfg["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(open(tar, "rb").read()).hexdigest())
cfg.setdefault("history", []).append({"created": "2023-11-15T00:00:00Z", "created_by": "bench: add /opt/v2"})
cfg.setdefault("config", {}).setdefault("Labels", {})["org.opencontainers.image.version"] = "v2"
cb = json.dumps(cfg).encode()
man["config"] = {"mediaType": man["config"]["mediaType"], "digest": put(cb), "size": len(cb)}
man["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": len(gzb)})
mb = json.dumps(man).encode()
idx["manifests"].append({"mediaType": man["mediaType"], "digest": put(mb), "size": len(mb),
                         "annotations": {"org.opencontainers.image.ref.name": "v2"}})
json.dump(idx, open(os.path.join(d, "index.json"), "w"))
PY
fi

fresh_fs() {
    umount "$MNT" 2>/dev/null || true
    rm -f "$WORK/fs.img"
    truncate -s 4G "$WORK/fs.img"
    mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$WORK/fs.img"
    mount -o loop "$WORK/fs.img" "$MNT"
    sync
    # inputs in the page cache for both tools alike
    cat "$TAR" "$LAYER_GZ" > /dev/null
}
# time_cmd OUTVAR_PREFIX cmd… : sets ${P}_s (wall seconds) and ${P}_kb (max RSS)
time_cmd() {
    local p=$1; shift
    /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" > "$WORK/cmd.out" 2>&1 || { cat "$WORK/cmd.out" >&2; die "failed: $*"; }
    read -r "${p}_s" "${p}_kb" < "$WORK/time.out"
}
disk() { du -sx --block-size=1 "$1" | cut -f1; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
mb() { python3 -c "print(f'{$1/1e6:.1f}')"; }

declare -a o_plain o_gz t_plain t_gz
maxrss=0
for i in $(seq "$RUNS"); do
    echo "== run $i/$RUNS" >&2
    fresh_fs; ostree --repo="$MNT/repo" init --mode=bare
    time_cmd a ostree --repo="$MNT/repo" commit -b deb --tree=tar="$TAR"
    o_plain+=("$a_s"); ostree_disk=$(disk "$MNT/repo")
    fresh_fs; ostree --repo="$MNT/repo" init --mode=bare
    time_cmd a ostree --repo="$MNT/repo" commit -b deb --tree=tar="$LAYER_GZ"
    o_gz+=("$a_s")
    fresh_fs
    time_cmd a "$OCIBOOT" -q --sysroot "$MNT" image pull "oci:$PLAIN:plain"
    t_plain+=("$a_s"); ociboot_disk=$(disk "$MNT/ociboot"); maxrss=$(( a_kb > maxrss ? a_kb : maxrss ))
    fresh_fs
    time_cmd a "$OCIBOOT" -q --sysroot "$MNT" image pull "oci:$DEB:bookworm"
    t_gz+=("$a_s"); maxrss=$(( a_kb > maxrss ? a_kb : maxrss ))
done

echo "== registry: twice the same image, then one sharing all but one layer" >&2
REG=$WORK/registry; rm -rf "$REG"; mkdir -p "$REG"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$REG/config.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: false}}
storage: {filesystem: {rootdirectory: $REG/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$PORT}
YML
docker-registry serve "$REG/config.yml" > "$REG/log" 2>&1 &
REGPID=$!
trap 'kill $REGPID 2>/dev/null; umount "$MNT" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
skopeo copy --quiet --dest-tls-verify=false "oci:$DEB:bookworm" "docker://127.0.0.1:$PORT/deb:v1"
skopeo copy --quiet --dest-tls-verify=false "oci:$DEB:v2" "docker://127.0.0.1:$PORT/deb:v2"
printf '[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n' "$PORT" > "$WORK/registries.conf"
export CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf
# bytes the registry sent to ociboot for blob requests, from its access log
served() { awk '/ociboot\// && /\/blobs\// && $9 == 200 {s += $10} END {print s+0}' "$REG/log"; }
fresh_fs
b0=$(served)
time_cmd p1 "$OCIBOOT" -q --sysroot "$MNT" image pull "127.0.0.1:$PORT/deb:v1"; d1=$(disk "$MNT/ociboot"); b1=$(served)
time_cmd p2 "$OCIBOOT" -q --sysroot "$MNT" image pull "127.0.0.1:$PORT/deb:v1"; d2=$(disk "$MNT/ociboot"); b2=$(served)
time_cmd p3 "$OCIBOOT" --sysroot "$MNT" image pull "127.0.0.1:$PORT/deb:v2"; d3=$(disk "$MNT/ociboot"); b3=$(served)
grep -E "^  Layers:" "$WORK/cmd.out" >&2 || true
for k in "$p1_kb" "$p2_kb" "$p3_kb"; do maxrss=$(( k > maxrss ? k : maxrss )); done
umount "$MNT"

op=$(median "${o_plain[@]}"); og=$(median "${o_gz[@]}"); tp=$(median "${t_plain[@]}"); tg=$(median "${t_gz[@]}")
cat <<REPORT

ociboot image store vs ostree $(ostree --version | awk '/Version/ {print $2}' | tr -d "'"), $(date -u +%Y-%m-%d), $(nproc) cores, median of $RUNS runs, fresh ext4 each
Debian bookworm rootfs: $(mb "$(stat -c %s "$TAR")") MB tar, $(mb "$(stat -c %s "$LAYER_GZ")") MB gzip, $(tar tf "$TAR" | wc -l) entries

import (wall s)                        ostree   ociboot   ostree/ociboot
  uncompressed tar                     $op     $tp      $(ratio "$op" "$tp")x
  gzip tar                             $og     $tg      $(ratio "$og" "$tg")x
bytes on disk (MB, uncompressed)       $(mb "$ostree_disk")    $(mb "$ociboot_disk")    $(ratio "$ociboot_disk" "$ostree_disk") (ociboot/ostree)

through the registry                   wall s   store MB   downloaded MB
  pull v1                              $p1_s     $(mb "$d1")      $(mb $((b1 - b0)))
  pull v1 again                        $p2_s     $(mb "$d2")      $(mb $((b2 - b1)))
  pull v2 (v1 + one 1 MB layer)        $p3_s     $(mb "$d3")      $(mb $((b3 - b2)))
  v2's extra disk: $(python3 -c "print(f'{($d3-$d2)/1e6:.2f} MB = {100*($d3-$d2)/$d2:.2f}% of v1')")
peak RSS of any pull: $(python3 -c "print(f'{$maxrss/1024:.1f}')") MiB
REPORT
