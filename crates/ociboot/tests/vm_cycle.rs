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
//! KVM is used only if a probe succeeds (on the team's machines it does not: /dev/kvm is
//! PVM); otherwise TCG. Serial logs of every boot are kept under target/vm-logs/.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

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

#[derive(Clone, Copy, Debug, PartialEq)]
enum Accel {
    Kvm,
    Tcg,
}

fn qemu_base(accel: Accel, vars: &Path, log: &Path) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    match accel {
        Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => c.args(["-accel", "tcg,thread=multi"]),
    };
    c.args(["-M", "q35", "-m", "1536", "-smp", "2", "-nic", "none"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// KVM only if it really runs the firmware: on PVM hosts qemu aborts at once (MSR 0x10a).
fn probe_accel(dir: &Path) -> Accel {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Accel::Tcg;
    }
    let vars = dir.join("probe-vars.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();
    let log = dir.join("probe.log");
    let mut child = qemu_base(Accel::Kvm, &vars, &log).spawn().unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if child.try_wait().unwrap().is_some() {
            return Accel::Tcg;
        }
        if read_lossy(&log).contains("BdsDxe") {
            let _ = child.kill();
            let _ = child.wait();
            return Accel::Kvm;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    Accel::Tcg
}

struct Vm {
    dir: PathBuf,
    disk: PathBuf,
    vars: PathBuf,
    step: PathBuf,
    oci: PathBuf,
    accel: Accel,
    logs: PathBuf,
    boots: usize,
    timings: Vec<String>,
}

/// What one boot printed: the step's port and the console.
struct Boot {
    log: String,
    console: String,
    path: PathBuf,
    wall: Duration,
}

impl Boot {
    fn step(&self) -> &str {
        let a = self
            .log
            .find("OCIBOOT-STEP-BEGIN")
            .unwrap_or_else(|| self.fail("the step never started"));
        &self.log[a..]
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}; serial logs: {} (step), {} (console)\n--- step ---\n{}\n--- console, last 40 lines ---\n{}",
            self.path.display(),
            self.path.with_extension("console.log").display(),
            self.log,
            self.console
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// The value after `TAG ` on the step's lines (first one).
    fn line(&self, tag: &str) -> String {
        self.lines(tag)
            .into_iter()
            .next()
            .unwrap_or_else(|| self.fail(&format!("no {tag} line")))
    }

    fn lines(&self, tag: &str) -> Vec<String> {
        let p = format!("{tag} ");
        self.step()
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').strip_prefix(&p))
            .map(str::to_string)
            .collect()
    }

    /// The n-th `ociboot status --json` the step printed.
    fn status(&self, n: usize) -> serde_json::Value {
        let all = self.lines("OCIBOOT-JSON");
        let s = all
            .get(n)
            .unwrap_or_else(|| self.fail(&format!("no status #{n}")));
        serde_json::from_str(s).unwrap_or_else(|e| self.fail(&format!("bad status JSON: {e}")))
    }

    /// What the step printed, for people: kernel messages and the JSON lines left out.
    fn transcript(&self) -> String {
        self.step()
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.starts_with("OCIBOOT-JSON "))
            .take_while(|l| !l.starts_with("OCIBOOT-STEP-END"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn uptime_at_step(&self) -> f64 {
        let l = self.line("OCIBOOT-STEP-BEGIN");
        l.split_whitespace()
            .find_map(|w| w.strip_prefix("uptime="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    fn root_setup_ms(&self) -> f64 {
        let i = self
            .console
            .find("(set up in ")
            .unwrap_or_else(|| self.fail("ociboot's root set-up did not log"));
        let rest = &self.console[i + "(set up in ".len()..];
        rest.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    fn version(&self, st: &serde_json::Value, slot: &str) -> String {
        st["status"][slot]["image"]["version"]
            .as_str()
            .unwrap_or("none")
            .to_string()
    }
}

impl Vm {
    fn new(dir: &Path, disk: PathBuf, oci: PathBuf) -> Vm {
        let accel = probe_accel(dir);
        eprintln!(
            "vm_cycle: accelerator {}",
            match accel {
                Accel::Kvm => "KVM (probe booted the firmware)",
                Accel::Tcg => "TCG (KVM unusable here: the probe failed)",
            }
        );
        let vars = dir.join("vars.fd");
        std::fs::copy(OVMF_VARS, &vars).unwrap();
        let logs = repo_root().join("target/vm-logs");
        std::fs::create_dir_all(&logs).unwrap();
        Vm {
            dir: dir.to_path_buf(),
            disk,
            vars,
            step: dir.join("step.sh"),
            oci,
            accel,
            logs,
            boots: 0,
            timings: Vec::new(),
        }
    }

    fn spawn(&mut self, name: &str, script: &str) -> (Child, PathBuf) {
        self.boots += 1;
        // The step disk: the script, padded with newlines to whole sectors.
        let mut data = format!("set -u\n{script}\n").into_bytes();
        data.resize(data.len().div_ceil(4096) * 4096 + 4096, b'\n');
        std::fs::File::create(&self.step)
            .and_then(|mut f| f.write_all(&data))
            .unwrap();
        let log = self.logs.join(format!("boot{}-{name}.log", self.boots));
        let console = log.with_extension("console.log");
        let _ = std::fs::remove_file(&log);
        let mut c = qemu_base(self.accel, &self.vars, &console);
        c.arg("-serial")
            .arg(format!("file:{}", log.display()))
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,cache=unsafe",
                self.disk.display()
            ))
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=none,id=step,readonly=on",
                self.step.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=step,serial=ocistep"])
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=none,id=oci,readonly=on",
                self.oci.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=oci,serial=ocioci"]);
        (c.spawn().expect("starting qemu-system-x86_64"), log)
    }

    /// Boot, run `script` in the guest, wait for the power-off.
    fn boot(&mut self, name: &str, script: &str) -> Boot {
        let t = Instant::now();
        let (mut child, path) = self.spawn(name, script);
        let limit = Duration::from_secs(match self.accel {
            Accel::Kvm => 120,
            Accel::Tcg => 300,
        });
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                let b = Boot {
                    log: read_lossy(&path),
                    console: read_lossy(&path.with_extension("console.log")),
                    path: path.clone(),
                    wall: t.elapsed(),
                };
                if !st.success() {
                    b.fail(&format!("qemu exited with {st}: {err}"));
                }
                if !b.log.contains("OCIBOOT-STEP-END rc=0") {
                    b.fail(&format!("boot {name}: the step did not end with rc=0"));
                }
                self.timings.push(format!(
                    "{name}: {:.1} s wall, step started at guest uptime {:.1} s, root set-up {:.1} ms",
                    b.wall.as_secs_f64(),
                    b.uptime_at_step(),
                    b.root_setup_ms()
                ));
                eprintln!("vm_cycle: {}", self.timings.last().unwrap());
                eprintln!(
                    "---- boot {} ({name}), in the guest:\n{}\n----",
                    self.boots,
                    b.transcript()
                );
                return b;
            }
            if t.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                let b = Boot {
                    log: read_lossy(&path),
                    console: read_lossy(&path.with_extension("console.log")),
                    path,
                    wall: t.elapsed(),
                };
                b.fail(&format!("boot {name} timed out after {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Boot, run `script`, and pull the plug `delay` after the guest prints `marker`.
    fn boot_and_cut(&mut self, name: &str, script: &str, marker: &str, delay: Duration) -> Boot {
        self.boot_and_cut_on(name, script, marker, delay, false)
    }

    /// Like `boot_and_cut`, watching the step's port or (`console`) the console.
    fn boot_and_cut_on(
        &mut self,
        name: &str,
        script: &str,
        marker: &str,
        delay: Duration,
        console: bool,
    ) -> Boot {
        let t = Instant::now();
        let (mut child, path) = self.spawn(name, script);
        let read = || read_lossy(&path);
        let watched = if console {
            path.with_extension("console.log")
        } else {
            path.clone()
        };
        loop {
            assert!(
                child.try_wait().unwrap().is_none(),
                "qemu stopped before the power cut; serial log: {}",
                watched.display()
            );
            if read_lossy(&watched).contains(marker) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "no {marker} in time; serial log: {}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        self.timings.push(format!(
            "{name}: power cut {delay:?} after {marker:?}, {:.1} s after start",
            t.elapsed().as_secs_f64()
        ));
        eprintln!("vm_cycle: {}", self.timings.last().unwrap());
        Boot {
            log: read(),
            console: read_lossy(&path.with_extension("console.log")),
            path,
            wall: t.elapsed(),
        }
    }
}

/// The serial log: firmware menus and kernel messages are not all UTF-8.
fn read_lossy(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
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

/// The scratch directory (disk image, firmware variables), kept when the test fails.
struct KeepOnFailure(Option<tempfile::TempDir>);

impl KeepOnFailure {
    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for KeepOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(d) = self.0.take() {
                eprintln!(
                    "vm_cycle: failed; disk image and firmware variables kept in {}",
                    d.keep().display()
                );
            }
        }
    }
}

const STATUS: &str = r#"echo "OCIBOOT-JSON $(ociboot status --json)"; ociboot status"#;

#[test]
fn vm_install_boot_switch_rollback_power_cut() {
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
    assert!(
        Path::new(OVMF_CODE).exists(),
        "{OVMF_CODE} is missing (package ovmf)"
    );
    let t0 = Instant::now();
    let (_bin, layout) = vm_os();
    let built = t0.elapsed();
    let dir = KeepOnFailure(Some(scratch("vm-cycle")));
    let disk = dir.path().join("disk.raw");
    let t = Instant::now();
    let h = Host::new("vm-install");
    let out = h.ok(&[
        "install",
        "to-disk",
        "--via-loopback",
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
    assert!(conf.contains("default ociboot-default-"), "{conf}");
    let efi = String::from_utf8(sh(Command::new("mdir").args(["-i", &esp, "::/EFI/BOOT"])).stdout)
        .unwrap();
    assert!(efi.contains("BOOTX64") || efi.contains("bootx64"), "{efi}");

    let oci = oci_disk(&layout, dir.path());
    let mut vm = Vm::new(dir.path(), disk.clone(), oci);

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
echo "BOOTMNT $(findmnt -n -o FSTYPE /boot) SYSROOT $(findmnt -n -o FSTYPE /sysroot) USR $(findmnt -n -o OPTIONS /usr | cut -d, -f1)"
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
    assert_eq!(b.line("BOOTMNT"), "vfat SYSROOT ext4 USR ro");
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
command -v less >/dev/null && echo "LESS yes"
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
    assert_eq!(b.line("LESS"), "yes");
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
    let conf = String::from_utf8(
        sh(Command::new("mtype").args(["-i", &esp, "::/loader/loader.conf"])).stdout,
    )
    .unwrap();
    let default = conf
        .lines()
        .find_map(|l| l.strip_prefix("default "))
        .unwrap()
        .to_string();
    let entry = String::from_utf8(
        sh(Command::new("mtype").args(["-i", &esp, &format!("::/loader/entries/{default}")]))
            .stdout,
    )
    .unwrap();
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

    eprintln!(
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
    for l in &vm.timings {
        eprintln!("vm_cycle:   {l}");
    }
    let _ = vm.dir;
}
