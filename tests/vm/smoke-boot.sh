#!/usr/bin/env bash
# smoke-boot.sh OUTDIR
#
# Checks that the kernel + Debian initramfs inside an image built by
# build-os.sh really boot on this machine (ociboot is not involved):
#
#   1. umoci raw unpack OUTDIR:$TAG (default v1) into a scratch dir;
#   2. write a tiny PID 1 script /ociboot-smoke-init into that tree (it prints
#      "OCIBOOT-SMOKE-OK kernel=... uptime=..." on the console and powers off
#      via sysrq, falling back to `poweroff -f`);
#   3. mkfs.ext4 -d the tree into a raw ext4 image (no mounts, no partitions);
#   4. direct-boot the image's own /usr/lib/modules/$KVER/{vmlinuz,initramfs.img}
#      with root=/dev/vda (virtio) init=/ociboot-smoke-init panic=-1, serial
#      console to a log file, -no-reboot.
#
# Accelerator: if /dev/kvm is usable, a KVM attempt runs first with a
# $KVM_TIMEOUT s (20) limit; if it does not print the marker (on the team's
# machines /dev/kvm is PVM and stock kernels fail: qemu aborts on MSR 0x10a or
# spins), the boot is redone with TCG and a $TIMEOUT s (180) limit. Prints the
# accelerator used, the wall time and the guest uptime at the marker.
#
# Exit status 0 if the marker appeared. Serial logs and qemu stderr of runs
# that failed are kept under $SMOKE_LOGDIR (/var/tmp/ociboot-smoke-logs).
#
# Environment: TAG=v1, TIMEOUT=180, KVM_TIMEOUT=20, NO_KVM=1 (skip the probe),
#   MEM=1024, SMP=2, KEEP_WORK=1 (keep the unpacked tree and disk image).
# Needs root (to unpack with real owners), umoci, mkfs.ext4, qemu-system-x86_64.
set -euo pipefail

PROG=smoke-boot.sh
die() { echo "$PROG: error: $*" >&2; exit 2; }
log() { echo "$PROG: $*" >&2; }

[[ $# -eq 1 ]] || die "usage: $0 OUTDIR   (an OCI layout made by tests/vm/build-os.sh)"
OUT=$(realpath "$1")
TAG=${TAG:-v1}
TIMEOUT=${TIMEOUT:-180}
KVM_TIMEOUT=${KVM_TIMEOUT:-20}
MEM=${MEM:-1024}
SMP=${SMP:-2}
LOGROOT=${SMOKE_LOGDIR:-/var/tmp/ociboot-smoke-logs}
MARKER=OCIBOOT-SMOKE-OK

[[ $(id -u) -eq 0 ]] || die "must run as root"
[[ -f $OUT/index.json ]] || die "$OUT is not an OCI layout (no index.json)"
for t in umoci mkfs.ext4 qemu-system-x86_64 timeout python3; do
    command -v "$t" >/dev/null || die "missing tool: $t (apt-get install umoci e2fsprogs qemu-system-x86)"
done

now() { echo "$EPOCHREALTIME"; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.1f}')" "$1" "$EPOCHREALTIME"; }

T0=$(now)
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/ociboot-smoke.XXXXXX")
RUNLOGS=$LOGROOT/$(date -u +%Y%m%dT%H%M%SZ)-$$
mkdir -p "$RUNLOGS"
KEEP_LOGS=0
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    if [[ ${KEEP_WORK:-0} == 1 ]]; then log "scratch kept: $WORK"; else rm -rf --one-file-system "$WORK"; fi
    if [[ $KEEP_LOGS == 1 ]]; then log "logs kept: $RUNLOGS"; else rm -rf "$RUNLOGS"; rmdir "$LOGROOT" 2>/dev/null || true; fi
}
trap cleanup EXIT

# ---- 1. unpack ---------------------------------------------------------------
T=$(now)
umoci raw unpack --image "$OUT:$TAG" "$WORK/rootfs" >"$WORK/umoci.log" 2>&1 \
    || { cat "$WORK/umoci.log" >&2; die "umoci raw unpack $OUT:$TAG failed"; }
R=$WORK/rootfs
mapfile -t KERNELS < <(cd "$R/usr/lib/modules" && ls -d -- */vmlinuz 2>/dev/null)
[[ ${#KERNELS[@]} -eq 1 ]] || die "expected one /usr/lib/modules/*/vmlinuz in $TAG, found ${#KERNELS[@]}"
KVER=${KERNELS[0]%/vmlinuz}
VMLINUZ=$R/usr/lib/modules/$KVER/vmlinuz
INITRD=$R/usr/lib/modules/$KVER/initramfs.img
[[ -s $INITRD ]] || die "no initramfs.img next to $VMLINUZ"
cp "$VMLINUZ" "$WORK/vmlinuz"; cp "$INITRD" "$WORK/initramfs.img"
log "unpacked $OUT:$TAG in $(since "$T") s ($(du -sh "$R" | cut -f1)), kernel $KVER"

# ---- 2. PID 1 that prints the marker and powers off --------------------------
cat >"$R/ociboot-smoke-init" <<EOF
#!/bin/sh
# PID 1 written by tests/vm/smoke-boot.sh: print a marker, power off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
[ -r /proc/uptime ] || mount -t proc proc /proc
read -r up _ </proc/uptime
rootdev=\$(awk '\$2 == "/" { r = \$1 " " \$3 " " \$4 } END { print r }' /proc/mounts)
echo "$MARKER kernel=\$(uname -r) uptime=\${up}s root=[\$rootdev]" >/dev/console
if [ -x /usr/bin/ociboot ]; then
    echo "OCIBOOT-SMOKE-INFO /usr/bin/ociboot --version: \$(/usr/bin/ociboot --version 2>&1 | head -n1)" >/dev/console
fi
sync
echo o >/proc/sysrq-trigger
sleep 5
poweroff -f
EOF
chmod 0755 "$R/ociboot-smoke-init"

# ---- 3. ext4 image -----------------------------------------------------------
T=$(now)
SIZE_MB=$(( $(du -sm "$R" | cut -f1) * 5 / 4 + 256 ))
truncate -s "${SIZE_MB}M" "$WORK/root.ext4"
mkfs.ext4 -q -F -L root -d "$R" "$WORK/root.ext4" || die "mkfs.ext4 -d failed"
log "mkfs.ext4 -d: ${SIZE_MB} MiB image in $(since "$T") s"
[[ ${KEEP_WORK:-0} == 1 ]] || rm -rf --one-file-system "$R"

# ---- 4. boot -----------------------------------------------------------------
APPEND="root=/dev/vda rw console=ttyS0 panic=-1 init=/ociboot-smoke-init"

# boot NAME LIMIT ACCEL-ARGS...: one qemu run; sets RC, WALL, FOUND
boot() {
    local name=$1 limit=$2; shift 2
    local serial=$RUNLOGS/serial-$name.log err=$RUNLOGS/qemu-$name.stderr t
    : >"$serial"
    t=$(now)
    set +e
    # In a subshell with stderr to the log, so a qemu abort (KVM here) is
    # reported there ("Aborted") and leaves no core file.
    ( ulimit -c 0
      timeout --kill-after=5 "$limit" qemu-system-x86_64 "$@" \
        -M pc -m "$MEM" -smp "$SMP" -nic none -display none -monitor none -no-reboot \
        -serial "file:$serial" \
        -drive "file=$WORK/root.ext4,format=raw,if=virtio" \
        -kernel "$WORK/vmlinuz" -initrd "$WORK/initramfs.img" -append "$APPEND" \
        </dev/null ) >"$err" 2>&1
    RC=$?
    set -e
    WALL=$(since "$t")
    if grep -aq "^$MARKER " "$serial"; then FOUND=1; else FOUND=0; fi
}

ACCEL=
KVM_NOTE="not tried"
if [[ ${NO_KVM:-0} == 1 ]]; then
    KVM_NOTE="skipped (NO_KVM=1)"
elif [[ ! -c /dev/kvm || ! -w /dev/kvm ]]; then
    KVM_NOTE="no usable /dev/kvm"
else
    log "probing KVM (limit ${KVM_TIMEOUT}s) ..."
    boot kvm "$KVM_TIMEOUT" -accel kvm -cpu host
    if [[ $FOUND == 1 ]]; then
        ACCEL=kvm
        KVM_NOTE="works"
    else
        if [[ $RC -eq 124 || $RC -eq 137 ]]; then why="timed out after ${KVM_TIMEOUT}s"; else why="qemu exit status $RC after ${WALL}s"; fi
        first=$(grep -av '^\s*$' "$RUNLOGS/qemu-kvm.stderr" | head -n 2 | tr '\n' ' ' || true)
        KVM_NOTE="failed: $why${first:+: $first}"
        KEEP_LOGS=1
    fi
    log "KVM: $KVM_NOTE"
fi
if [[ -z $ACCEL ]]; then
    log "booting with TCG (limit ${TIMEOUT}s) ..."
    boot tcg "$TIMEOUT" -accel tcg,thread=multi
    ACCEL=tcg
fi

SERIAL=$RUNLOGS/serial-$ACCEL.log
echo "smoke-boot: image $OUT:$TAG, kernel $KVER"
echo "smoke-boot: KVM probe: $KVM_NOTE"
echo "smoke-boot: accelerator used: $ACCEL"
if [[ $FOUND == 1 ]]; then
    KEEP_LOGS=0   # the KVM probe's failure was summarised above
    echo "smoke-boot: OK: marker after ${WALL}s wall (qemu exit status $RC): $(grep -a "^$MARKER " "$SERIAL" | head -n1 | tr -d '\r')"
    grep -a '^OCIBOOT-SMOKE-INFO ' "$SERIAL" | tr -d '\r' | sed 's/^OCIBOOT-SMOKE-INFO /smoke-boot: guest: /' || true
    echo "smoke-boot: total $(since "$T0")s including unpack and mkfs"
    exit 0
fi
KEEP_LOGS=1
if [[ $RC -eq 124 || $RC -eq 137 ]]; then why="timed out after ${TIMEOUT}s"; else why="qemu exited with status $RC after ${WALL}s"; fi
echo "smoke-boot: FAILED: no marker ($why); serial log: $SERIAL, qemu stderr: $RUNLOGS/qemu-$ACCEL.stderr"
echo "---- last 30 lines of the serial log ----"
tail -n 30 "$SERIAL" | tr -d '\r'
echo "---- qemu stderr ----"
tail -n 10 "$RUNLOGS/qemu-$ACCEL.stderr"
exit 1
