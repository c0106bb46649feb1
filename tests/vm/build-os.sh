#!/usr/bin/env bash
# build-os.sh OUTDIR [OCIBOOT_BINARY]
#
# Builds a small, really bootable Debian bookworm OS as a bootc-style OCI
# image layout at OUTDIR, for ociboot's VM tests. Two tags:
#
#   v1  layer A  Debian rootfs: mmdebstrap --variant=minbase (merged /usr, no
#                recommends, no docs/man/locales) + linux-image-amd64, systemd,
#                systemd-sysv, udev, systemd-boot-efi, e2fsprogs, kmod,
#                initramfs-tools, zstd. Kernel and Debian initramfs moved to
#                /usr/lib/modules/$KVER/{vmlinuz,initramfs.img}; /boot empty;
#                hostname "ociboot-vm"; root password locked (as debootstrap
#                leaves it). Unneeded kernel modules (sound, GPU, media, Wi-Fi,
#                wired NIC and SCSI HBA drivers, ...) are not unpacked
#                (dpkg path-exclude) to keep the image small; virtio, block,
#                fs, dm, input and USB-core modules are all there.
#       layer B  /usr/bin/ociboot (if OCIBOOT_BINARY is given, mode 0755; it must
#                be static: it runs as init= to set up the root at boot),
#                /usr/lib/bootc/kargs.d/10-console.toml
#                (kargs = ["console=ttyS0,115200"]), and, enabled by links in
#                /usr/lib/systemd/system as their [Install] sections say
#                (scripts/install-units, as in the .deb): every unit of
#                systemd/, and the VM test's guest side, ociboot-vmtest.service
#                + /usr/libexec/ociboot-vmtest (from tests/vm/guest/; idle
#                without the test's step disk).
#       label org.opencontainers.image.version = "1"
#   v2  layers A + B (shared with v1) + layer C: the package `less` installed
#       by dpkg on top of A (computed as an overlayfs upper dir, converted to
#       OCI whiteouts) and /usr/lib/bootc/kargs.d/20-v2.toml
#       (kargs = ["ociboot.v2=1"]). Label version "2".
#
# Config: amd64/linux, Labels containers.bootc=1 + the version, one history
# entry (with `created`) per layer, fixed `created` dates derived from
# SOURCE_DATE_EPOCH. Layers: GNU tar --format=pax --sort=name --numeric-owner
# --xattrs, mtimes clamped to SOURCE_DATE_EPOCH, gzip (pigz -1 if present).
# OUTDIR/build-os.json describes the result (kver, digests, sizes).
#
# Caching: OUTDIR/build-os.json records a key (sha256 of this script plus the
# parameters below). Same key and same OCIBOOT_BINARY -> nothing is done.
# Same key, different binary -> only layer B and the metadata are rebuilt
# (~1 s). Otherwise everything is rebuilt (~50 s on the team's 2-core
# machines, 40 s of it mmdebstrap). OUTDIR must be missing, empty, or an
# earlier output of this script (it is owned by this script: unreferenced blobs
# are deleted). Concurrent runs on one OUTDIR are serialised with flock.
#
# Environment:
#   MIRROR=URL               Debian mirror (default: mmdebstrap's default,
#                            i.e. deb.debian.org bookworm, -updates, -security)
#   SOURCE_DATE_EPOCH=N      tar mtime clamp and `created` base (1767225600)
#   PRUNE_MODULES=0          keep every kernel module (image gets ~70 MB bigger)
#   VERIFY=1                 after building, check both tags with skopeo and an
#                            umoci raw unpack of v2
#   KEEP_WORK=1              keep the scratch directory (rootfs, upper dir)
#
# Needs root, mmdebstrap, GNU tar, python3, overlayfs; skopeo/umoci for VERIFY.
set -euo pipefail

PROG=build-os.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 OUTDIR [OCIBOOT_BINARY]"
OUT=$1
BIN=${2:-}
SUITE=bookworm
MIRROR=${MIRROR:-}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}
PRUNE_MODULES=${PRUNE_MODULES:-1}
VERIFY=${VERIFY:-0}
KEEP_WORK=${KEEP_WORK:-0}
[[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be an integer"

[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap --mode=root, chroot, overlay mounts)"
for t in mmdebstrap tar python3 sha256sum chroot mount umount mkfifo flock dpkg-deb; do
    command -v "$t" >/dev/null || die "missing tool: $t"
done
tar --version | head -n1 | grep -q 'GNU tar' || die "GNU tar required"
if command -v pigz >/dev/null; then GZ=(pigz -1 -n); else GZ=(gzip -1 -n); fi

if [[ -n $BIN ]]; then
    [[ -f $BIN ]] || die "OCIBOOT_BINARY $BIN: not a regular file"
    BIN=$(realpath "$BIN")
    BIN_SHA=$(sha256sum "$BIN" | cut -d' ' -f1)
else
    BIN_SHA=none
fi
# Layer B also carries the systemd units and the VM test's guest side: part of its key, with
# every unit of systemd/ (a glob: a unit added there changes the key) and the script that
# installs and enables them.
REPO=$(cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/../.." && pwd)
shopt -s nullglob
GUEST_FILES=("$REPO"/systemd/* "$REPO/scripts/install-units" "$REPO/tests/vm/guest/ociboot-vmtest.service"
             "$REPO/tests/vm/guest/ociboot-vmtest")
shopt -u nullglob
BIN_SHA=$( { echo "$BIN_SHA"; for f in "${GUEST_FILES[@]}"; do echo "${f#"$REPO"/}"; cat "$f"; done; } \
           | sha256sum | cut -d' ' -f1)

SELF=$(realpath "${BASH_SOURCE[0]}")
KEY=$( { sha256sum <"$SELF"; echo "suite=$SUITE mirror=$MIRROR sde=$SOURCE_DATE_EPOCH prune=$PRUNE_MODULES"; } \
       | sha256sum | cut -d' ' -f1)

# ---- OUTDIR ownership -------------------------------------------------------
if [[ -e $OUT && ! -d $OUT ]]; then die "$OUT exists and is not a directory"; fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [[ -n $(ls -A "$OUT") && ! -e $OUT/.build-os ]]; then
    die "refusing to use $OUT: not empty and not made by $PROG (no .build-os marker)"
fi
exec 9>>"$OUT/.build-os"
flock -w 900 9 || die "timed out waiting for another $PROG run on $OUT (flock $OUT/.build-os)"
mkdir -p "$OUT/blobs/sha256"

T0=$EPOCHREALTIME
since() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.1f}s')" "$1" "$EPOCHREALTIME"; }

# ---- cache check: prints "fresh", "partial" or "stale" -----------------------
cache_state() {
    python3 - "$OUT" "$KEY" "$BIN_SHA" <<'PY'
import json, os, sys
out, key, binsha = sys.argv[1:4]
try:
    st = json.load(open(os.path.join(out, "build-os.json")))
    idx = json.load(open(os.path.join(out, "index.json")))
except (OSError, ValueError):
    print("stale"); sys.exit()
def have(d, size=None):
    p = os.path.join(out, "blobs", *d.split(":", 1))
    return os.path.isfile(p) and (size is None or os.path.getsize(p) == size)
if st.get("key") != key or not all(have(st["layers"][k]["digest"], st["layers"][k]["size"])
                                   for k in ("rootfs", "v2")):
    print("stale"); sys.exit()
refs = {m.get("annotations", {}).get("org.opencontainers.image.ref.name"): m
        for m in idx.get("manifests", [])}
ok = st.get("ociboot_sha256") == binsha and set(refs) >= {"v1", "v2"}
for tag in ("v1", "v2"):
    if not ok:
        break
    m = refs[tag]
    ok = have(m["digest"], m["size"])
    if ok:
        man = json.load(open(os.path.join(out, "blobs", *m["digest"].split(":", 1))))
        ok = all(have(d["digest"], d["size"]) for d in [man["config"]] + man["layers"])
print("fresh" if ok else "partial")
PY
}

summary() {
    python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
st = json.load(open(os.path.join(out, "build-os.json")))
mb = lambda n: f"{n / 1e6:.1f} MB"
print(f"  kernel {st['kver']}, ociboot binary sha256 {st['ociboot_sha256'][:16]}")
for name, l in st["layers"].items():
    print(f"  layer {name:8} {l['digest'][:19]}  {mb(l['size']):>9} gzip, {mb(l['uncompressed_size']):>9} tar")
for tag, t in st["tags"].items():
    print(f"  {tag}: manifest {t['manifest']}  {mb(t['compressed_size'])} compressed, version {t['version']}")
blobs = os.path.join(out, "blobs", "sha256")
print(f"  layout total: {mb(sum(os.path.getsize(os.path.join(blobs, b)) for b in os.listdir(blobs)))}")
PY
}

STATE=$(cache_state)
if [[ $STATE == fresh ]]; then
    log "$OUT: v1 and v2 are up to date; nothing to do"
    summary
    exit 0
fi

# ---- scratch dir (removed on exit; never crosses into mounts) ---------------
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/ociboot-build-os.XXXXXX")
export WORK
MERGED=$WORK/merged
cleanup() {
    local rc=$?
    # Undo any mount left below $WORK (our overlay and its /proc,/dev binds;
    # mmdebstrap unmounts its own). /proc/mounts escapes spaces; mktemp paths have none.
    awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    if [[ $KEEP_WORK == 1 || $rc -ne 0 && -n ${KEEP_WORK_ON_FAIL:-} ]]; then
        log "scratch directory kept: $WORK"
    else
        rm -rf --one-file-system "$WORK"
    fi
}
trap cleanup EXIT

# make_layer SRCDIR NAME: tar SRCDIR into a gzip blob under OUT/blobs; writes
# $WORK/NAME.json {digest, diff_id, size, uncompressed_size}.
make_layer() {
    local src=$1 name=$2 t
    t=$EPOCHREALTIME
    rm -f "$WORK/u.fifo" "$WORK/c.fifo"
    mkfifo "$WORK/u.fifo" "$WORK/c.fifo"
    { sha256sum | cut -d' ' -f1 >"$WORK/$name.diffid"; } <"$WORK/u.fifo" & local p1=$!
    { sha256sum | cut -d' ' -f1 >"$WORK/$name.blobsum"; } <"$WORK/c.fifo" & local p2=$!
    tar -C "$src" -cf - \
        --format=pax --sort=name --numeric-owner --xattrs --xattrs-include='*' \
        --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
        --exclude='./run/*' --exclude='./tmp/*' --exclude='./boot/*' \
        . \
      | tee "$WORK/u.fifo" | tee >(wc -c >"$WORK/$name.usize") \
      | "${GZ[@]}" | tee "$WORK/c.fifo" >"$WORK/$name.gz"
    wait "$p1" "$p2"
    local diffid blob size usize
    diffid=$(<"$WORK/$name.diffid"); blob=$(<"$WORK/$name.blobsum")
    # the >(wc) process substitution is not waited for by `wait`; poll briefly
    for _ in $(seq 50); do [[ -s $WORK/$name.usize ]] && break; sleep 0.1; done
    usize=$(<"$WORK/$name.usize")
    [[ ${#diffid} -eq 64 && ${#blob} -eq 64 && -n $usize ]] || die "hashing layer $name failed"
    size=$(stat -c %s "$WORK/$name.gz")
    mv "$WORK/$name.gz" "$OUT/blobs/sha256/$blob"
    printf '{"digest":"sha256:%s","diff_id":"sha256:%s","size":%s,"uncompressed_size":%s}\n' \
        "$blob" "$diffid" "$size" "$usize" >"$WORK/$name.json"
    log "layer $name: $((size / 1000000)) MB gzip ($((usize / 1000000)) MB tar) in $(since "$t")"
}

kargs_file() {  # kargs_file PATH KARG... -> kargs = ["a", "b"]
    local path=$1; shift
    mkdir -p "$(dirname "$path")"
    python3 -c 'import json,sys; print("kargs = [" + ", ".join(json.dumps(a) for a in sys.argv[1:]) + "]")' "$@" >"$path"
    chmod 0644 "$path"
}

ROOT=$WORK/root
UPPER=$WORK/upper

if [[ $STATE == partial ]]; then
    log "rootfs layers are cached (same script and parameters); rebuilding the ociboot layer only"
    python3 - "$OUT" "$WORK" <<'PY'
import json, os, sys
out, work = sys.argv[1:3]
st = json.load(open(os.path.join(out, "build-os.json")))
for name in ("rootfs", "v2"):
    json.dump(st["layers"][name], open(os.path.join(work, name + ".json"), "w"))
open(os.path.join(work, "kver"), "w").write(st["kver"])
open(os.path.join(work, "less.version"), "w").write(st["v2_package"]["version"])
PY
    KVER=$(<"$WORK/kver")
else
    # ---- 1. rootfs with mmdebstrap ------------------------------------------
    T1=$EPOCHREALTIME
    mkdir -p "$WORK/debs"
    DPKGOPTS=(
        --dpkgopt='path-exclude=/usr/share/doc/*'
        --dpkgopt='path-include=/usr/share/doc/*/copyright'
        --dpkgopt='path-exclude=/usr/share/man/*'
        --dpkgopt='path-exclude=/usr/share/info/*'
        --dpkgopt='path-exclude=/usr/share/locale/*'
        --dpkgopt='path-include=/usr/share/locale/locale.alias'
        --dpkgopt='path-exclude=/usr/share/lintian/*'
    )
    if [[ $PRUNE_MODULES == 1 ]]; then
        # Package paths (before merged-/usr aliasing): /lib/modules/... .
        # dpkg matches with fnmatch() without FNM_PATHNAME: '*' spans '/'.
        for d in sound \
                 drivers/gpu drivers/media drivers/infiniband drivers/staging drivers/iio \
                 drivers/comedi drivers/isdn drivers/bluetooth drivers/atm drivers/nfc drivers/mtd \
                 drivers/hwmon drivers/memstick drivers/gnss drivers/w1 drivers/parport \
                 drivers/pcmcia drivers/firewire drivers/thunderbolt drivers/ssb drivers/bcma \
                 drivers/soundwire drivers/slimbus drivers/hwtracing drivers/mfd drivers/leds \
                 drivers/video/fbdev drivers/platform/chrome drivers/platform/surface \
                 drivers/usb/serial drivers/usb/gadget drivers/usb/misc \
                 drivers/input/touchscreen drivers/input/joystick drivers/input/tablet \
                 drivers/net/wireless drivers/net/ethernet drivers/net/can drivers/net/usb \
                 drivers/net/wwan drivers/net/hamradio drivers/net/arcnet drivers/net/fddi \
                 drivers/net/wan drivers/net/appletalk drivers/net/ieee802154 \
                 net/wireless net/mac80211 net/bluetooth net/mac802154 net/ieee802154 \
                 net/6lowpan net/nfc net/atm net/ax25 net/netrom net/rose net/batman-adv \
                 net/appletalk net/can net/rxrpc net/rds net/tipc net/phonet; do
            DPKGOPTS+=("--dpkgopt=path-exclude=/lib/modules/*/kernel/$d/*")
        done
        # SCSI HBA drivers live in subdirectories; keep the top-level core
        # modules (scsi_mod, sd_mod, sr_mod, virtio_scsi, ...) and device_handler.
        DPKGOPTS+=("--dpkgopt=path-exclude=/lib/modules/*/kernel/drivers/scsi/*/*"
                   "--dpkgopt=path-include=/lib/modules/*/kernel/drivers/scsi/device_handler/*")
    fi

    # Runs inside mmdebstrap (chroot has /proc, /sys, /dev and apt lists).
    cat >"$WORK/customize.sh" <<'EOF'
set -eu
R=$1
# v2's extra package, fetched now while the chroot has package lists
chroot "$R" apt-get install -y -q --download-only --no-install-recommends less
cp "$R"/var/cache/apt/archives/less_*.deb "$WORK/debs/"
# The Debian initramfs: normally made by the kernel's postinst hook.
for m in "$R"/usr/lib/modules/*/; do
    k=$(basename "$m")
    if [ ! -s "$R/boot/initrd.img-$k" ]; then
        echo "customize: no initrd for $k yet; running update-initramfs" >&2
        chroot "$R" update-initramfs -c -k "$k"
    fi
done
EOF
    # shellcheck disable=SC2054,SC2016  # commas belong to --include; $1/$WORK expand in the hook
    MM=(mmdebstrap --mode=root --variant=minbase --format=directory
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
        --include=linux-image-amd64,systemd,systemd-sysv,udev,systemd-boot-efi,e2fsprogs,kmod,initramfs-tools,zstd
        --aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Retries "3"'
        --dpkgopt=force-unsafe-io "${DPKGOPTS[@]}"
        --customize-hook='sh "$WORK/customize.sh" "$1"'
        "$SUITE" "$ROOT")
    [[ -n $MIRROR ]] && MM+=("$MIRROR")
    log "mmdebstrap --variant=minbase $SUITE ${MIRROR:-(default mirrors)} ... (log: $WORK/mmdebstrap.log)"
    "${MM[@]}" >"$WORK/mmdebstrap.log" 2>&1 \
        || { tail -n 40 "$WORK/mmdebstrap.log" >&2; KEEP_WORK_ON_FAIL=1; die "mmdebstrap failed"; }
    log "mmdebstrap done in $(since "$T1") ($(du -sh --one-file-system "$ROOT" | cut -f1))"

    # ---- 2. make it look like a bootc image ---------------------------------
    T2=$EPOCHREALTIME
    mapfile -t KVERS < <(ls "$ROOT/usr/lib/modules")
    [[ ${#KVERS[@]} -eq 1 ]] || die "expected exactly one kernel in /usr/lib/modules, found: ${KVERS[*]:-none}"
    KVER=${KVERS[0]}
    MODDIR=$ROOT/usr/lib/modules/$KVER
    [[ -s $ROOT/boot/vmlinuz-$KVER ]] || die "no /boot/vmlinuz-$KVER"
    [[ -s $ROOT/boot/initrd.img-$KVER ]] || die "no /boot/initrd.img-$KVER (initramfs-tools did not run?)"
    [[ -s $MODDIR/modules.dep ]] || die "no modules.dep for $KVER (depmod did not run?)"
    for m in virtio_blk.ko virtio_pci.ko ext4.ko vfat.ko overlay.ko; do
        [[ -n $(find "$MODDIR/kernel" -name "$m" -print -quit) ]] || die "module $m missing (over-pruned?)"
    done
    install -m 0644 "$ROOT/boot/vmlinuz-$KVER" "$MODDIR/vmlinuz"
    install -m 0644 "$ROOT/boot/initrd.img-$KVER" "$MODDIR/initramfs.img"
    find "$ROOT/boot" -mindepth 1 -delete
    rm -f "$ROOT"/vmlinuz "$ROOT"/vmlinuz.old "$ROOT"/initrd.img "$ROOT"/initrd.img.old
    find "$MODDIR/kernel" -depth -mindepth 1 -type d -empty -delete   # left by path-exclude
    [[ -e $ROOT/usr/lib/systemd/boot/efi/systemd-bootx64.efi ]] || die "systemd-bootx64.efi missing"
    echo ociboot-vm >"$ROOT/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tociboot-vm\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
    rm -f "$ROOT/etc/resolv.conf"                 # the host's, copied by mmdebstrap
    sed -i '/^force-unsafe-io$/d' "$ROOT/etc/dpkg/dpkg.cfg.d/99mmdebstrap" 2>/dev/null || true
    : >"$ROOT/etc/machine-id"                      # first boot generates one
    # an image file outside /usr, /etc and /var: read-only at runtime like the rest
    mkdir -p "$ROOT/opt/ociboot-test" && echo "shipped in the image" >"$ROOT/opt/ociboot-test/file"
    LESS_DEB=$(ls "$WORK"/debs/less_*.deb)
    dpkg-deb -f "$LESS_DEB" Version >"$WORK/less.version"
    log "bootc layout done in $(since "$T2"): kernel $KVER, vmlinuz $(stat -c %s "$MODDIR/vmlinuz") B, initramfs.img $(stat -c %s "$MODDIR/initramfs.img") B"

    # ---- 3. layer A: the rootfs ---------------------------------------------
    make_layer "$ROOT" rootfs

    # ---- 4. layer C: less installed by dpkg on an overlay over the rootfs -----
    T4=$EPOCHREALTIME
    mkdir -p "$UPPER" "$WORK/ovl-work" "$MERGED"
    chmod 0755 "$UPPER"
    mount -t overlay overlay \
        -o "lowerdir=$ROOT,upperdir=$UPPER,workdir=$WORK/ovl-work,redirect_dir=off,metacopy=off,index=off,xino=off" \
        "$MERGED"
    mount -t proc proc "$MERGED/proc"
    mount --bind /dev "$MERGED/dev"
    # the .deb comes in through a bind mount: nothing gets copied up for it
    mount --bind -o ro "$WORK/debs" "$MERGED/mnt"
    chroot "$MERGED" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
        dpkg -i "/mnt/$(basename "$LESS_DEB")" >"$WORK/dpkg-less.log" 2>&1 \
        || { cat "$WORK/dpkg-less.log" >&2; die "dpkg -i less failed"; }
    [[ -x $MERGED/usr/bin/less ]] || die "less not installed?"
    umount "$MERGED/mnt" "$MERGED/dev" "$MERGED/proc" "$MERGED"
    # Logs and caches mmdebstrap also drops for reproducibility (none exist in
    # the lower dir, so deleting them from the upper dir needs no whiteout).
    rm -f "$UPPER"/var/log/dpkg.log "$UPPER"/var/log/alternatives.log \
          "$UPPER"/var/cache/ldconfig/aux-cache "$UPPER"/var/log/apt/*.log
    kargs_file "$UPPER/usr/lib/bootc/kargs.d/20-v2.toml" "ociboot.v2=1"
    # overlayfs -> OCI: 0/0 char devices become .wh.NAME, opaque dirs get
    # .wh..wh..opq, and trusted.overlay.* xattrs are dropped. Whiteouts and
    # opaque markers that would hide nothing in the lower dir are just dropped
    # (overlayfs marks some freshly created directories opaque).
    python3 - "$UPPER" "$ROOT" <<'PY'
import os, stat, sys
top, lower = sys.argv[1:3]
def in_lower(p, want_dir=False):
    q = os.path.join(lower, os.path.relpath(p, top))
    return os.path.isdir(q) and not os.path.islink(q) if want_dir else os.path.lexists(q)
wh = opq = 0
def entries():
    yield top, None, None
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            yield os.path.join(dirpath, name), dirpath, name
for p, dirpath, name in entries():
    st = os.lstat(p)
    if name is not None and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        os.unlink(p)
        if in_lower(p):
            open(os.path.join(dirpath, ".wh." + name), "wb").close()
            wh += 1
        continue
    if stat.S_ISLNK(st.st_mode):
        continue
    for x in os.listxattr(p, follow_symlinks=False):
        if x.startswith("trusted.overlay."):
            if x == "trusted.overlay.opaque" and stat.S_ISDIR(st.st_mode) and \
                    os.getxattr(p, x, follow_symlinks=False) == b"y" and in_lower(p, True):
                open(os.path.join(p, ".wh..wh..opq"), "wb").close()
                opq += 1
            os.removexattr(p, x, follow_symlinks=False)
print(f"upper dir: {wh} whiteouts, {opq} opaque dirs", file=sys.stderr)
PY
    log "dpkg -i less on overlay done in $(since "$T4"): $(find "$UPPER" | wc -l) entries in the upper dir"
    make_layer "$UPPER" v2
fi

# ---- 5. layer B: ociboot binary + console kargs -----------------------------
L2=$WORK/ocibootlayer
mkdir -p "$L2/usr/bin"
chmod 0755 "$L2" "$L2/usr" "$L2/usr/bin"
kargs_file "$L2/usr/lib/bootc/kargs.d/10-console.toml" "console=ttyS0,115200"
chmod 0755 "$L2/usr/lib" "$L2/usr/lib/bootc" "$L2/usr/lib/bootc/kargs.d"
if [[ -n $BIN ]]; then install -m 0755 "$BIN" "$L2/usr/bin/ociboot"; fi
# systemd units, enabled by the image itself (links under /usr, so no /etc change), as the
# .deb has them: every unit of systemd/, and the test's own
"$REPO/scripts/install-units" "$L2"
"$REPO/scripts/install-units" "$L2" "$REPO/tests/vm/guest/ociboot-vmtest.service"
install -D -m 0755 "$REPO/tests/vm/guest/ociboot-vmtest" "$L2/usr/libexec/ociboot-vmtest"
find "$L2" -type d -exec chmod 0755 {} +
make_layer "$L2" ociboot

# ---- 6. configs, manifests, index, build-os.json; drop unreferenced blobs ---
python3 - "$OUT" "$WORK" "$KEY" "$BIN_SHA" "$KVER" "$SOURCE_DATE_EPOCH" "$SUITE" <<'PY'
import datetime, hashlib, json, os, sys
out, work, key, binsha, kver, sde, suite = sys.argv[1:8]
sde = int(sde)
blobs = os.path.join(out, "blobs", "sha256")

def canon(o):
    return json.dumps(o, sort_keys=True, separators=(",", ":")).encode()

def put(data):
    h = hashlib.sha256(data).hexdigest()
    p = os.path.join(blobs, h)
    if not os.path.exists(p):
        with open(p + ".tmp", "wb") as f:
            f.write(data)
        os.replace(p + ".tmp", p)
    return {"digest": "sha256:" + h, "size": len(data)}

def ts(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

L = {n: json.load(open(os.path.join(work, n + ".json"))) for n in ("rootfs", "ociboot", "v2")}
less_version = open(os.path.join(work, "less.version")).read().strip()
c1, c2 = ts(sde), ts(sde + 86400)
hist = {
    "rootfs": {"created": c1, "created_by": f"build-os.sh: mmdebstrap --variant=minbase {suite} + linux-image-amd64 {kver}, systemd, systemd-boot-efi, initramfs-tools"},
    "ociboot": {"created": c1, "created_by": "build-os.sh: /usr/bin/ociboot, systemd units, kargs.d/10-console.toml"},
    "v2": {"created": c2, "created_by": f"build-os.sh: dpkg -i less {less_version}, kargs.d/20-v2.toml"},
}
TAGS = {"v1": ("1", c1, ["rootfs", "ociboot"]), "v2": ("2", c2, ["rootfs", "ociboot", "v2"])}
index, tags = [], {}
for tag, (version, created, names) in TAGS.items():
    config = {
        "created": created, "architecture": "amd64", "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/sbin/init"],
            "Labels": {"containers.bootc": "1", "org.opencontainers.image.version": version},
        },
        "rootfs": {"type": "layers", "diff_ids": [L[n]["diff_id"] for n in names]},
        "history": [hist[n] for n in names],
    }
    cdesc = put(canon(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cdesc},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": L[n]["digest"], "size": L[n]["size"]} for n in names],
    }
    mdesc = put(canon(manifest))
    index.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **mdesc,
                  "annotations": {"org.opencontainers.image.ref.name": tag}})
    tags[tag] = {"version": version, "created": created, "manifest": mdesc["digest"],
                 "config": cdesc["digest"], "layers": names,
                 "compressed_size": mdesc["size"] + cdesc["size"] + sum(L[n]["size"] for n in names)}

def write(name, data):
    p = os.path.join(out, name)
    with open(p + ".tmp", "wb") as f:
        f.write(data)
    os.replace(p + ".tmp", p)

write("oci-layout", canon({"imageLayoutVersion": "1.0.0"}))
write("index.json", canon({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": index}))
state = {"schema": 1, "generator": "tests/vm/build-os.sh", "key": key, "ociboot_sha256": binsha,
         "suite": suite, "kver": kver, "source_date_epoch": sde,
         "v2_package": {"name": "less", "version": less_version},
         "kargs": {"v1": ["console=ttyS0,115200"], "v2": ["console=ttyS0,115200", "ociboot.v2=1"]},
         "layers": L, "tags": tags}
write("build-os.json", (json.dumps(state, indent=1, sort_keys=True) + "\n").encode())

keep = {t[7:] for t in [L[n]["digest"] for n in L] + [v["manifest"] for v in tags.values()]
        + [v["config"] for v in tags.values()]}
for b in os.listdir(blobs):
    if b not in keep:
        os.unlink(os.path.join(blobs, b))
PY
log "done: $OUT (v1, v2) in $(since "$T0")"
summary

# ---- 7. optional verification ----------------------------------------------
if [[ $VERIFY == 1 ]]; then
    command -v skopeo >/dev/null || die "VERIFY=1 needs skopeo"
    command -v umoci >/dev/null || die "VERIFY=1 needs umoci"
    T7=$EPOCHREALTIME
    for tag in v1 v2; do
        skopeo inspect "oci:$OUT:$tag" >"$WORK/inspect-$tag.json" || die "skopeo inspect oci:$OUT:$tag failed"
        python3 - "$WORK/inspect-$tag.json" "$tag" <<'PY' || die "verify: unexpected skopeo inspect output for $tag"
import json, sys
d = json.load(open(sys.argv[1]))
tag, labels = sys.argv[2], d["Labels"]
assert labels["containers.bootc"] == "1", labels
assert labels["org.opencontainers.image.version"] == tag[1:], labels
assert len(d["Layers"]) == {"v1": 2, "v2": 3}[tag], d["Layers"]
print(f"  skopeo inspect {tag}: {len(d['Layers'])} layers, labels {labels}")
PY
    done
    umoci raw unpack --image "$OUT:v2" "$WORK/unpacked" || die "umoci raw unpack $OUT:v2 failed"
    U=$WORK/unpacked
    for f in "usr/lib/modules/$KVER/vmlinuz" "usr/lib/modules/$KVER/initramfs.img" \
             usr/lib/systemd/systemd usr/lib/systemd/boot/efi/systemd-bootx64.efi usr/bin/less \
             usr/lib/bootc/kargs.d/10-console.toml usr/lib/bootc/kargs.d/20-v2.toml etc/hostname; do
        [[ -s $U/$f ]] || die "verify: /$f missing from v2"
    done
    [[ -z $(ls -A "$U/boot") ]] || die "verify: /boot is not empty"
    [[ $(<"$U/etc/hostname") == ociboot-vm ]] || die "verify: wrong hostname"
    grep -q '^Package: less$' "$U/var/lib/dpkg/status" || die "verify: less not in dpkg status"
    if [[ -n $BIN ]]; then cmp -s "$BIN" "$U/usr/bin/ociboot" || die "verify: /usr/bin/ociboot differs"; fi
    log "verify ok in $(since "$T7"): skopeo inspect v1/v2, umoci raw unpack v2 ($(du -sh "$U" | cut -f1)) has kernel, initramfs, systemd, systemd-bootx64.efi, less, kargs.d"
fi
