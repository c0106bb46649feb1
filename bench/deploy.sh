#!/usr/bin/env bash
# bench/deploy.sh — ociboot's deployments side by side with ostree's, in one run, as ratios.
#
# Two Debian bookworm rootfs versions that differ by one package (v2 = v1 + nano, its files
# unpacked from the .deb plus dpkg's status entry), each with a (fake) kernel in
# usr/lib/modules so both tools can write boot entries.
#   ostree: `ostree admin deploy` of v2 next to a deployed v1 (init-fs sysroot, bare repo)
#   ociboot: `ociboot switch oci:…:v2` + `ociboot finalize-staged` next to an installed v1
# Reported: wall time, bytes the filesystem wrote (from the loop device's counters, synced),
# the disk cost of the second deployment against the size of the changed files, and the time
# of `ociboot rollback`. Each side runs on a fresh ext4 (loop-mounted image file), twice over:
# with mkfs.ext4's defaults, and with inline_data (small directories and files inside their
# inodes), which is how `ociboot install to-disk` makes the root filesystem.
# Needs root; reuses bench/import.sh's cache (BENCH_DIR, default /var/tmp/ociboot-bench).
# Usage: bench/deploy.sh [RUNS]
set -euo pipefail
RUNS=${1:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-/var/tmp/ociboot-bench}
MNT=$WORK/mnt
mkdir -p "$WORK" "$MNT"
die() { echo "bench: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root"
for t in ostree mkfs.ext4 python3 apt-get dpkg-deb; do command -v "$t" >/dev/null || die "missing $t"; done

(cd "$REPO" && cargo build --release -q)
OCIBOOT=${CARGO_TARGET_DIR:-$REPO/target}/x86_64-unknown-linux-gnu/release/ociboot
DEB=$WORK/debian
bash "$REPO/tests/fixtures/debian-image.sh" "$DEB" bookworm >&2
TAR=$DEB/rootfs.tar

# Extra layers: a fake kernel and the static ociboot a deployment starts as init (staging
# refuses an image without one) (both versions), nano (v2 only).
K=$WORK/kernel-layer && rm -rf "$K" && mkdir -p "$K/usr/lib/modules/6.1.0-bench"
install -D -m 0755 "$OCIBOOT" "$K/usr/bin/ociboot"
head -c 8000000 /dev/zero | tr '\0' 'k' > "$K/usr/lib/modules/6.1.0-bench/vmlinuz"
head -c 4000000 /dev/zero | tr '\0' 'i' > "$K/usr/lib/modules/6.1.0-bench/initramfs.img"
tar -C "$K" --numeric-owner --owner=0 --group=0 -cf "$WORK/kernel.tar" usr
P=$WORK/pkg-layer && rm -rf "$P" && mkdir -p "$P"
(cd "$WORK" && rm -f nano_*.deb && apt-get download -q nano >/dev/null 2>&1)
dpkg-deb -x "$WORK"/nano_*.deb "$P"
mkdir -p "$P/var/lib/dpkg"
tar -xOf "$TAR" ./var/lib/dpkg/status > "$P/var/lib/dpkg/status"
{ echo; dpkg-deb -f "$WORK"/nano_*.deb; echo "Status: install ok installed"; } >> "$P/var/lib/dpkg/status"
tar -C "$P" --numeric-owner --owner=0 --group=0 -cf "$WORK/pkg.tar" .
CHANGED=$(tar -tvf "$WORK/pkg.tar" | awk '{s += $3} END {print s}')
# ostree 2022.7 aborts on several --tree=tar, and on a tar with duplicate entries: give it
# one merged tree per version (the ostree commits are not timed).
for v in v1 v2; do
    rm -rf "$WORK/tree-$v" && mkdir -p "$WORK/tree-$v"
    tar -C "$WORK/tree-$v" --numeric-owner --xattrs --xattrs-include='*' -xf "$TAR"
    tar -C "$WORK/tree-$v" --numeric-owner -xf "$WORK/kernel.tar"
    if [[ $v == v2 ]]; then tar -C "$WORK/tree-$v" --numeric-owner -xf "$WORK/pkg.tar"; fi
    # ostree wants the image's /etc at /usr/etc (ostree-ext moves it the same way)
    mv "$WORK/tree-$v/etc" "$WORK/tree-$v/usr/etc"
done

# OCI layout with v1 = rootfs + kernel, v2 = v1 + package (uncompressed layers, as ostree reads tars).
L=$WORK/deploy-layout
rm -rf "$L"
if true; then
python3 - "$L" "$TAR" "$WORK/kernel.tar" "$WORK/pkg.tar" <<'PY'
import hashlib, json, os, sys
out, base, kern, pkg = sys.argv[1:]
os.makedirs(os.path.join(out, "blobs/sha256"), exist_ok=True)
def digest_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for c in iter(lambda: f.read(1 << 20), b""):
            h.update(c)
    return h.hexdigest()
def put_file(p):
    h = digest_file(p)
    dst = os.path.join(out, "blobs/sha256", h)
    if not os.path.exists(dst):
        # copies: the small tars are rewritten by the next run, and a hardlinked blob with them
        open(dst, "wb").write(open(p, "rb").read())
    return "sha256:" + h, os.path.getsize(p)
def put(b):
    h = hashlib.sha256(b).hexdigest()
    open(os.path.join(out, "blobs/sha256", h), "wb").write(b)
    return "sha256:" + h
layers = [put_file(p) for p in (base, kern, pkg)]
idx = {"schemaVersion": 2, "manifests": []}
for tag, n in (("v1", 2), ("v2", 3)):
    ls = layers[:n]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-01-0%dT00:00:00Z" % n,
                      "config": {"Labels": {"containers.bootc": "1", "org.opencontainers.image.version": tag}},
                      "rootfs": {"type": "layers", "diff_ids": [d for d, _ in ls]}}).encode()
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(cfg), "size": len(cfg)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s} for d, s in ls]}).encode()
    idx["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(m), "size": len(m),
                             "annotations": {"org.opencontainers.image.ref.name": tag}})
json.dump(idx, open(os.path.join(out, "index.json"), "w"))
open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
fi

LOOPDEV=
fresh_fs() {
    umount "$MNT" 2>/dev/null || true
    rm -f "$WORK/fs.img"; truncate -s 6G "$WORK/fs.img"
    mkfs.ext4 -q $MKFS_OPTS -E lazy_itable_init=0,lazy_journal_init=0 "$WORK/fs.img"
    mount -o loop "$WORK/fs.img" "$MNT"
    LOOPDEV=$(findmnt -n -o SOURCE "$MNT" | xargs basename)
    cat "$TAR" "$WORK/pkg.tar" "$WORK/kernel.tar" > /dev/null
}
written() { sync; awk '{printf "%.0f\n", $7 * 512}' "/sys/block/$LOOPDEV/stat"; }
disk() { du -sx --block-size=1 "$1" | cut -f1; }
now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
mb() { python3 -c "print(f'{$1/1e6:.1f}')"; }

# measure LABEL MKFS_OPTS: both tools, RUNS times each, on fresh filesystems made with MKFS_OPTS.
measure() {
    local LABEL=$1 MKFS_OPTS=$2
    ot=(); ow=(); od=(); it=(); iw=(); id=(); rb=()
    for i in $(seq "$RUNS"); do
        echo "== run $i/$RUNS" >&2
        # ostree
        fresh_fs
        S=$MNT/sysroot; mkdir -p "$S"
        ostree admin init-fs "$S" >/dev/null 2>&1
        ostree admin os-init --sysroot="$S" debian >/dev/null
        ostree --repo="$S/ostree/repo" commit -b v1 --tree=dir="$WORK/tree-v1" >/dev/null
        ostree --repo="$S/ostree/repo" commit -b v2 --tree=dir="$WORK/tree-v2" >/dev/null
        ostree admin deploy --sysroot="$S" --os=debian v1 >/dev/null
        d0=$(disk "$S"); w0=$(written); t0=$(now)
        ostree admin deploy --sysroot="$S" --os=debian v2 >/dev/null
        sync; t1=$(now); w1=$(written); d1=$(disk "$S")
        ot+=("$(python3 -c "print($t1-$t0)")"); ow+=($((w1 - w0))); od+=($((d1 - d0)))
        # ociboot
        fresh_fs
        S=$MNT/sysroot; mkdir -p "$S"
        "$OCIBOOT" -q install to-filesystem --source-imgref "oci:$L:v1" --bootloader none "$S"
        export OCIBOOT_PROC_CMDLINE=$WORK/cmdline
        sed -n 's/^options //p' "$S/boot/loader/entries/$(sed -n 's/^default //p' "$S/boot/loader/loader.conf")" > "$OCIBOOT_PROC_CMDLINE"
        "$OCIBOOT" -q --sysroot "$S" image pull "oci:$L:v2"   # the download is not what is compared
        d0=$(disk "$S"); w0=$(written); t0=$(now)
        "$OCIBOOT" -q --sysroot "$S" switch --transport oci "$L:v2"
        "$OCIBOOT" -q --sysroot "$S" finalize-staged
        sync; t1=$(now); w1=$(written); d1=$(disk "$S")
        it+=("$(python3 -c "print($t1-$t0)")"); iw+=($((w1 - w0))); id+=($((d1 - d0)))
        t0=$(now); "$OCIBOOT" -q --sysroot "$S" rollback; t1=$(now)
        rb+=("$(python3 -c "print(($t1-$t0)*1000)")")
        unset OCIBOOT_PROC_CMDLINE
    done
    umount "$MNT"

    OT=$(median "${ot[@]}"); IT=$(median "${it[@]}"); OW=$(median "${ow[@]}"); IW=$(median "${iw[@]}")
    OD=$(median "${od[@]}"); ID=$(median "${id[@]}"); RB=$(median "${rb[@]}")
    cat <<REPORT

ociboot deployments vs ostree $(ostree --version | awk '/Version/ {print $2}' | tr -d "'"), $(date -u +%Y-%m-%d), median of $RUNS runs
filesystem: $LABEL, fresh for each run and each tool
Debian bookworm minbase ($(mb "$(stat -c %s "$TAR")") MB) v1 -> v2 = + nano ($(mb "$CHANGED") MB of changed files)

second deployment                      ostree admin deploy   ociboot switch+finalize   ostree/ociboot
  wall time (s)                        $(printf '%.3f' "$OT")                 $(printf '%.3f' "$IT")                     $(ratio "$OT" "$IT")x
  bytes written (MB, synced)           $(mb "$OW")                 $(mb "$IW")                     $(ratio "$OW" "$IW")x
  disk cost (MB)                       $(mb "$OD")                 $(mb "$ID")
ociboot's disk cost vs changed files: $(python3 -c "print(f'{$ID/1e6:.2f} MB = changed files + {100*($ID-$CHANGED)/$CHANGED:.0f}% of them (+{($ID-$CHANGED)/1e6:.2f} MB)')")
ociboot rollback: $(printf '%.1f' "$RB") ms
REPORT
}

measure "ext4, mkfs.ext4 defaults" ""
measure "ext4 with inline_data (the root filesystem ociboot install to-disk makes)" "-O inline_data"
