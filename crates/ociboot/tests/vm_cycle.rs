//! The slow VM test: a real disk image, really booted under qemu with UEFI (OVMF) and
//! systemd-boot, through the whole update and rollback cycle.
//!
//! 1. `tests/vm/build-static.sh` builds the static ociboot; `tests/vm/build-os.sh` builds
//!    Debian bookworm images v1 and v2 (v2 adds `less` and a kargs.d file) carrying it.
//! 2. `ociboot install to-disk --via-loopback` writes v1 to a raw disk image (no mounts).
//! 3. Each boot gets a shell script on a small virtio disk (serial `ocistep`); the image's
//!    `ociboot-vmtest.service` runs it and powers off. A second disk (serial `ocioci`, ext4)
//!    carries the OCI layout with v2 and v3. The step's output comes back on the second serial
//!    port; the first is the console (firmware, kernel, systemd).
//!
//! Boots: v1 (status, /etc edit, /var write, read-only /usr, switch to v2) → v2 (booted,
//! v1 rollback, edits kept, v2's karg; rollback) → v1 → power cut during a switch (qemu
//! killed) → v1 healthy, switch again → v3 → an entry naming a missing deployment stops the
//! boot with a FATAL line on the console.
//!
//! The harness (tests/common/vm.rs) boots through scripts/run-vm: KVM only if its probe
//! succeeds (on the team's machines it does not: /dev/kvm is PVM), otherwise TCG. Serial logs
//! of every boot are kept under target/vm-logs/.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::vm::*;
use common::*;

/// The static ociboot and the OS layout built with it (both cached between runs).
fn vm_os() -> (PathBuf, PathBuf) {
    let out = sh(Command::new("bash").arg(repo_root().join("tests/vm/build-static.sh")));
    let bin = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let layout = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vm-os");
    let lock = std::fs::File::create(layout.with_extension("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    sh(Command::new("bash")
        .arg(repo_root().join("tests/vm/build-os.sh"))
        .arg(&layout)
        .arg(&bin));
    (bin, layout)
}

/// An ext4 image (no partitions) for the guest to mount: `v2/`, the OCI layout with v1, v2
/// and v3 = v2 plus a 48 MiB layer of random bytes (so that pulling it takes a while under
/// emulation: the power cut lands in the middle), labelled version 3.
fn oci_disk(layout: &Path, dir: &Path) -> PathBuf {
    let stage = dir.join("oci-stage");
    std::fs::create_dir_all(&stage).unwrap();
    let l = stage.join("v2");
    sh(Command::new("cp").arg("-a").arg(layout).arg(&l));
    let _ = std::fs::remove_file(l.join(".build-os"));
    let add = dir.join("big-layer");
    let big = add.join("usr/share/ociboot-vmtest");
    std::fs::create_dir_all(&big).unwrap();
    sh(Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=48", "status=none"])
        .arg(format!("of={}", big.join("big").display())));
    sh(Command::new("python3")
        .arg(repo_root().join("tests/fixtures/add-layer.py"))
        .arg(&l)
        .arg("v2")
        .arg(&add)
        .arg("v3")
        .arg("org.opencontainers.image.version=3"));
    std::fs::remove_dir_all(&add).unwrap();
    let size = du(&stage) * 12 / 10 + (64 << 20);
    let out = dir.join("oci.ext4");
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "ocioci", "-d"])
        .arg(&stage)
        .arg(&out)
        .arg(format!("{}k", size / 1024)));
    std::fs::remove_dir_all(&stage).unwrap();
    out
}

#[test]
fn vm_install_boot_switch_rollback_power_cut() {
    if std::env::var_os("OCIBOOT_SKIP_VM").is_some() {
        eprintln!("vm_cycle: skipped (OCIBOOT_SKIP_VM is set)");
        return;
    }
    for tool in ["qemu-system-x86_64", "mkfs.ext4", "sgdisk"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "{tool} is missing: run scripts/install-deps"
        );
    }
    let t0 = Instant::now();
    let (_bin, layout) = vm_os();
    let built = t0.elapsed();
    let dir = KeepOnFailure(Some(scratch("vm-cycle")));
    let disk = dir.path().join("disk.raw");
    let t = Instant::now();
    let h = Host::new("vm-install");
    let keys = dir.path().join("authorized_keys");
    std::fs::write(&keys, "ssh-ed25519 AAAAC3NzaVMCYCLE vm@cycle\n").unwrap();
    let out = h.ok(&[
        "install",
        "to-disk",
        "--via-loopback",
        "--root-ssh-authorized-keys",
        keys.to_str().unwrap(),
        "--source-imgref",
        &format!("oci:{}:v1", layout.display()),
        disk.to_str().unwrap(),
    ]);
    let install_time = t.elapsed();
    eprintln!("vm_cycle: {out}");
    let disk_size = std::fs::metadata(&disk).unwrap().len();
    let allocated = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&disk).unwrap().blocks() * 512
    };
    // The partition table is what sgdisk reads: two partitions, DPS types.
    let gpt = String::from_utf8(sh(Command::new("sgdisk").arg("-p").arg(&disk)).stdout).unwrap();
    assert!(gpt.contains("EF00") && gpt.contains("8304"), "{gpt}");
    sh(Command::new("sgdisk").arg("-v").arg(&disk));
    // The ESP is a FAT that mtools reads: loader.conf names the v1 deployment.
    let esp = format!("{}@@1M", disk.display());
    let conf = String::from_utf8(
        sh(Command::new("mtype").args(["-i", &esp, "::/loader/loader.conf"])).stdout,
    )
    .unwrap();
    assert!(!conf.contains("default "), "{conf}");
    let efi = String::from_utf8(sh(Command::new("mdir").args(["-i", &esp, "::/EFI/BOOT"])).stdout)
        .unwrap();
    assert!(efi.contains("BOOTX64") || efi.contains("bootx64"), "{efi}");

    let oci = oci_disk(&layout, dir.path());
    let mut vm = Vm::new(
        "vm_cycle",
        dir.path(),
        disk.clone(),
        vec![(oci, "ocioci")],
        None,
    );

    // Boot 1: v1.
    let b = vm.boot(
        "v1",
        &format!(
            r#"
echo "CMDLINE $(cat /proc/cmdline)"
{STATUS}
echo "edited in the VM" > /etc/motd
mkdir -p /var/lib/vmtest && echo "written in boot 1" > /var/lib/vmtest/data
if touch /usr/x 2>/tmp/err; then echo "USR writable"; else echo "USR-RO $(cat /tmp/err)"; fi
if sh -c 'echo changed >> /opt/ociboot-test/file' 2>/tmp/err; then echo "OPT writable"; else echo "OPT-RO $(cat /tmp/err)"; fi
if mkdir /new-top-level 2>/tmp/err; then echo "ROOT writable"; else echo "ROOT-RO $(cat /tmp/err)"; fi
echo "TMP $(findmnt -n -o FSTYPE /tmp) $(stat -c %a /tmp)"
echo "STATEDIRS $(readlink /root) $(readlink /home) $(readlink /srv) $(readlink /mnt) $(stat -c %a /var/roothome)"
echo "written by root" > /root/note && echo "ROOTNOTE $(readlink -f /root/note)"
test -f /root/.bashrc && echo "ROOT-BASHRC seeded from the image"
echo "SSHKEYS $(cat /root/.ssh/authorized_keys) $(stat -c %a /root/.ssh)"
echo "BOOTMNT $(findmnt -n -o FSTYPE /boot) SYSROOT $(findmnt -n -o FSTYPE /sysroot) ROOT $(findmnt -n -o OPTIONS / | cut -d, -f1) ETC $(findmnt -n -o OPTIONS /etc | cut -d, -f1)"
mount -o ro /dev/disk/by-id/virtio-ocioci /mnt
ociboot switch --transport oci /mnt/v2:v2
echo "SWITCH-RC $?"
{STATUS}
test -e /run/reboot-required && echo "REBOOT-REQUIRED yes"
umount /mnt
"#
        ),
    );
    let st = b.status(0);
    assert_eq!(st["kind"], "BootcHost");
    assert_eq!(b.version(&st, "booted"), "1", "v1 booted first");
    assert!(st["status"]["rollback"].is_null());
    assert!(
        b.line("USR-RO").contains("Read-only file system"),
        "/usr must be read-only"
    );
    assert_eq!(b.line("BOOTMNT"), "vfat SYSROOT ext4 ROOT ro ETC rw");
    // The whole image is read-only, not only /usr: its files are the store's objects.
    assert!(
        b.line("OPT-RO").contains("Read-only file system"),
        "an image file in /opt must not be writable"
    );
    assert!(b.line("ROOT-RO").contains("Read-only file system"));
    assert_eq!(b.line("TMP"), "tmpfs 1777");
    assert_eq!(
        b.line("STATEDIRS"),
        "var/roothome var/home var/srv var/mnt 700"
    );
    assert_eq!(b.line("ROOTNOTE"), "/var/roothome/note");
    assert_eq!(b.line("ROOT-BASHRC"), "seeded from the image");
    assert_eq!(
        b.line("SSHKEYS"),
        "ssh-ed25519 AAAAC3NzaVMCYCLE vm@cycle 700"
    );
    assert_eq!(b.line("SWITCH-RC"), "0");
    let st = b.status(1);
    assert_eq!(b.version(&st, "staged"), "2", "v2 staged");
    assert_eq!(b.version(&st, "booted"), "1");
    assert_eq!(b.line("REBOOT-REQUIRED"), "yes");
    let setup_ms = b.root_setup_ms();

    // Boot 2: v2 (finalized at the last shutdown), rollback to v1.
    let b = vm.boot(
        "v2",
        &format!(
            r#"
echo "CMDLINE $(cat /proc/cmdline)"
{STATUS}
echo "MOTD $(cat /etc/motd)"
echo "VARDATA $(cat /var/lib/vmtest/data)"
echo "ROOTNOTE $(cat /root/note)"
command -v less >/dev/null && echo "LESS yes"
NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups --"
echo "NOBODY $($NOBODY sh -c 'cat /etc/os-release >/dev/null && ls /usr/bin >/dev/null && less --version >/dev/null && echo uses-the-system' 2>&1)"
for d in /sysroot/ociboot/deploy/default/deploy/*/; do
    $NOBODY test -r "$d/usr/bin/ls" && echo "NOBODY-READS $d"
done
echo "DEPLOYMENTS $(ls -d /sysroot/ociboot/deploy/default/deploy/*/ | wc -l)"
ociboot rollback
echo "ROLLBACK-RC $?"
{STATUS}
"#
        ),
    );
    let st = b.status(0);
    assert_eq!(b.version(&st, "booted"), "2", "v2 booted after the reboot");
    assert_eq!(b.version(&st, "rollback"), "1", "v1 is the rollback");
    assert!(st["status"]["staged"].is_null());
    assert_eq!(b.line("MOTD"), "edited in the VM", "/etc edit carried over");
    assert_eq!(b.line("VARDATA"), "written in boot 1", "/var kept");
    assert_eq!(b.line("ROOTNOTE"), "written by root", "/root kept");
    assert_eq!(b.line("LESS"), "yes");
    // A normal user uses the booted system; no deployment is reachable through /sysroot.
    assert_eq!(b.line("NOBODY"), "uses-the-system");
    assert_eq!(b.line("DEPLOYMENTS"), "2");
    assert_eq!(
        b.lines("NOBODY-READS"),
        Vec::<String>::new(),
        "an unprivileged user reads these deployments through /sysroot"
    );
    assert!(
        b.line("CMDLINE")
            .split_whitespace()
            .any(|a| a == "ociboot.v2=1"),
        "v2's kargs.d karg on the command line"
    );
    assert_eq!(b.line("ROLLBACK-RC"), "0");
    assert_eq!(b.status(1)["status"]["rollbackQueued"], true);

    // Boot 3: v1 again.
    let b = vm.boot(
        "rolled-back",
        &format!("echo \"CMDLINE $(cat /proc/cmdline)\"\n{STATUS}\n"),
    );
    let st = b.status(0);
    assert_eq!(b.version(&st, "booted"), "1", "rollback boots v1");
    assert_eq!(b.version(&st, "rollback"), "2");
    assert!(!b.line("CMDLINE").contains("ociboot.v2=1"));

    // Boot 4: the power goes in the middle of a switch to v3 (while its new layer is pulled).
    let b = vm.boot_and_cut(
        "power-cut",
        r#"
mount -o ro /dev/disk/by-id/virtio-ocioci /mnt
echo "SWITCH-START uptime=$(cut -d' ' -f1 /proc/uptime)"
ociboot switch --transport oci /mnt/v2:v3
echo "SWITCH-RC $? uptime=$(cut -d' ' -f1 /proc/uptime)"
sleep 600
"#,
        "Pulling ",
        Duration::from_millis(300),
    );
    assert!(
        !b.log.contains("Queued for next boot") && !b.log.contains("SWITCH-RC"),
        "the cut came after the switch had finished; serial log: {}",
        b.path.display()
    );

    // Boot 5: v1, healthy; the store checks out; the switch completes when repeated.
    let b = vm.boot(
        "after-cut",
        &format!(
            r#"
{STATUS}
ociboot image fsck
echo "FSCK-RC $?"
mount -o ro /dev/disk/by-id/virtio-ocioci /mnt
ociboot switch --transport oci /mnt/v2:v3
echo "SWITCH-RC $?"
{STATUS}
umount /mnt
"#
        ),
    );
    let st = b.status(0);
    assert_eq!(
        b.version(&st, "booted"),
        "1",
        "after the power cut v1 boots"
    );
    assert!(st["status"]["staged"].is_null());
    let failed = b.line("OCIBOOT-STEP-BEGIN");
    assert!(failed.contains("failed=0"), "failed units: {failed}");
    assert_eq!(b.line("FSCK-RC"), "0");
    assert_eq!(b.line("SWITCH-RC"), "0");
    assert_eq!(b.version(&b.status(1), "staged"), "3");

    // Boot 6: v3.
    let b = vm.boot("switched-again", &format!("{STATUS}\n"));
    assert_eq!(b.version(&b.status(0), "booted"), "3");
    assert_eq!(b.version(&b.status(0), "rollback"), "1");

    // Boot 7: an entry naming a deployment that is not there (written onto the ESP with
    // mtools, as a damaged or hand-edited entry would be): ociboot stops the boot and says why
    // on the console.
    // The default: the highest version (no entry is counted here: this image has no
    // systemd-bless-boot).
    let listing = String::from_utf8(
        sh(Command::new("mdir").args(["-b", "-i", &esp, "::/loader/entries"])).stdout,
    )
    .unwrap();
    let (default, entry) = listing
        .lines()
        .filter(|l| l.ends_with(".conf"))
        .map(|l| {
            let name = l.rsplit('/').next().unwrap().to_string();
            let text = String::from_utf8(
                sh(Command::new("mtype").args(["-i", &esp, &format!("::/loader/entries/{name}")]))
                    .stdout,
            )
            .unwrap();
            (name, text)
        })
        .max_by_key(|(_, text)| {
            text.lines()
                .find_map(|l| l.strip_prefix("version "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .unwrap();
    assert!(!default.contains('+'), "{default}: counted");
    let key = entry
        .split_whitespace()
        .find_map(|a| a.strip_prefix("ociboot="))
        .unwrap()
        .to_string();
    let bad = entry.replace(
        &format!("ociboot={key}"),
        "ociboot=default/0000000000000000.0",
    );
    let bad_file = dir.path().join("bad.conf");
    std::fs::write(&bad_file, bad).unwrap();
    sh(Command::new("mcopy")
        .args(["-o", "-i", &esp])
        .arg(&bad_file)
        .arg(format!("::/loader/entries/{default}")));
    let b = vm.boot_and_cut_on(
        "missing-deployment",
        "true",
        "ociboot: FATAL",
        Duration::from_millis(500),
        true,
    );
    assert!(
        b.console.contains("deployment default/0000000000000000.0")
            && b.console.contains("missing"),
        "no clear error on the console; log: {}",
        b.path.with_extension("console.log").display()
    );
    assert!(
        !b.log.contains("OCIBOOT-STEP-BEGIN"),
        "the system came up anyway"
    );

    let summary = format!(
        "vm_cycle summary: accelerator {:?}; images built/cached in {:.1} s; install to-disk {:.1} s; \
         disk image {} MiB ({} MiB allocated); root set-up at boot {:.1} ms (boot 1); total {:.1} s",
        vm.accel,
        built.as_secs_f64(),
        install_time.as_secs_f64(),
        disk_size >> 20,
        allocated >> 20,
        setup_ms,
        t0.elapsed().as_secs_f64()
    );
    report(&summary, &vm.timings, "vm_cycle");
}
