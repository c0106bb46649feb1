//! The VM harness of the slow tests: a disk made by `ociboot install to-disk`, booted by
//! scripts/run-vm (OVMF + the image's systemd-boot; KVM when its probe works, else TCG) once
//! per step. Each boot gets a shell script on a small virtio disk (serial `ocistep`); the
//! image's `ociboot-vmtest.service` (tests/vm/guest/) runs it and powers off. The step's output
//! comes back on the second serial port; the first is the console (firmware, kernel, systemd).
//! Serial logs of every boot are kept under target/vm-logs/.
//!
//! `Vm::boot` waits for the step and its power-off; `Vm::boot_and_cut` cuts the power after a
//! marker; `Vm::boot_observed` lets the guest end the boot itself (its own reboot or
//! power-off: qemu runs with --no-reboot) while a watcher reads the logs and acts on the host.
//! The step unit is ordered after boot-complete.target, systemd-bless-boot.service and
//! ociboot-health-assess.service, so a step sees the boot blessed and assessed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{repo_root, sh};

/// `ociboot status` as JSON (an `OCIBOOT-JSON` line) and for people.
pub const STATUS: &str = r#"echo "OCIBOOT-JSON $(ociboot status --json)"; ociboot status"#;

/// The VM tests' timings: printed, and appended to target/vm-logs/timings.log, which
/// `.ci/run` prints at the end (a passing test's own output is captured by the test runner).
pub fn report(summary: &str, timings: &[String], test: &str) {
    let mut text = format!("{summary}\n");
    for l in timings {
        text.push_str(&format!("{test}:   {l}\n"));
    }
    eprint!("{text}");
    let logs = repo_root().join("target/vm-logs");
    let _ = std::fs::create_dir_all(&logs);
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join("timings.log"))
        .and_then(|mut f| f.write_all(text.as_bytes()));
}

pub fn run_vm() -> PathBuf {
    repo_root().join("scripts/run-vm")
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Accel {
    Kvm,
    Tcg,
}

pub struct Vm {
    name: String,
    pub dir: PathBuf,
    disk: PathBuf,
    vars: PathBuf,
    step: PathBuf,
    disks: Vec<(PathBuf, &'static str)>,
    registry_port: Option<u16>,
    pub accel: Accel,
    logs: PathBuf,
    pub boots: usize,
    pub timings: Vec<String>,
}

/// What one boot printed: the step's port and the console.
pub struct Boot {
    pub log: String,
    pub console: String,
    pub path: PathBuf,
    pub wall: Duration,
    pub end: End,
}

/// How a boot ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum End {
    /// The guest powered off (the kernel's last words: `reboot: Power down`).
    PowerOff,
    /// The guest rebooted (`reboot: Restarting system`); with --no-reboot qemu exits.
    Reboot,
    /// qemu exited with neither line on the console.
    Exited,
    /// The test cut the power.
    Cut,
}

/// A boot in progress, as `Vm::boot_observed`'s watcher sees it.
pub struct Running<'a> {
    /// The step's port so far.
    pub step: &'a str,
    /// The console so far.
    pub console: &'a str,
    /// Since qemu started.
    pub elapsed: Duration,
}

/// What a watcher wants done next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    Wait,
    /// Cut the power now.
    Cut,
}

impl Boot {
    pub fn step(&self) -> &str {
        let a = self
            .log
            .find("OCIBOOT-STEP-BEGIN")
            .unwrap_or_else(|| self.fail("the step never started"));
        &self.log[a..]
    }

    /// systemd breaks an ordering cycle by dropping a unit's job (the health checks, say):
    /// the boot would pass or fail for the wrong reason.
    pub fn no_ordering_cycle(&self) {
        if self.console.contains("Found ordering cycle") {
            self.fail("systemd found an ordering cycle among the units (and dropped a job)");
        }
    }

    pub fn fail(&self, what: &str) -> ! {
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
    pub fn line(&self, tag: &str) -> String {
        self.lines(tag)
            .into_iter()
            .next()
            .unwrap_or_else(|| self.fail(&format!("no {tag} line")))
    }

    pub fn lines(&self, tag: &str) -> Vec<String> {
        let p = format!("{tag} ");
        self.step()
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').strip_prefix(&p))
            .map(str::to_string)
            .collect()
    }

    /// The n-th `ociboot status --json` the step printed.
    pub fn status(&self, n: usize) -> serde_json::Value {
        let all = self.lines("OCIBOOT-JSON");
        let s = all
            .get(n)
            .unwrap_or_else(|| self.fail(&format!("no status #{n}")));
        serde_json::from_str(s).unwrap_or_else(|e| self.fail(&format!("bad status JSON: {e}")))
    }

    /// What the step printed, for people: kernel messages and the JSON lines left out.
    pub fn transcript(&self) -> String {
        self.step()
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.starts_with("OCIBOOT-JSON "))
            .take_while(|l| !l.starts_with("OCIBOOT-STEP-END"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn uptime_at_step(&self) -> f64 {
        let l = self.line("OCIBOOT-STEP-BEGIN");
        l.split_whitespace()
            .find_map(|w| w.strip_prefix("uptime="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    pub fn root_setup_ms(&self) -> f64 {
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

    pub fn version(&self, st: &serde_json::Value, slot: &str) -> String {
        st["status"][slot]["image"]["version"]
            .as_str()
            .unwrap_or("none")
            .to_string()
    }
}

impl Vm {
    /// A machine booting `disk` (through scripts/run-vm) with the given extra read-only disks
    /// (file, serial) and, with `registry_port`, the network to the host's registry.
    pub fn new(
        name: &str,
        dir: &Path,
        disk: PathBuf,
        disks: Vec<(PathBuf, &'static str)>,
        registry_port: Option<u16>,
    ) -> Vm {
        let probe = sh(Command::new(run_vm()).arg("--probe"));
        let accel = match String::from_utf8_lossy(&probe.stdout).trim() {
            "kvm" => Accel::Kvm,
            _ => Accel::Tcg,
        };
        eprintln!(
            "{name}: accelerator {}",
            match accel {
                Accel::Kvm => "KVM (the probe ran the firmware)",
                Accel::Tcg => "TCG (KVM unusable here: the probe failed)",
            }
        );
        let logs = repo_root().join("target/vm-logs");
        std::fs::create_dir_all(&logs).unwrap();
        Vm {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            vars: dir.join("vars.fd"),
            disk,
            step: dir.join("step.sh"),
            disks,
            registry_port,
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
        let log = self
            .logs
            .join(format!("{}-boot{}-{name}.log", self.name, self.boots));
        let console = log.with_extension("console.log");
        // Both logs: a marker left in an earlier run's console log would cut the power at once.
        let _ = std::fs::remove_file(&log);
        let _ = std::fs::remove_file(&console);
        let mut c = Command::new(run_vm());
        c.args(["--no-reboot", "--accel"])
            .arg(match self.accel {
                Accel::Kvm => "kvm",
                Accel::Tcg => "tcg",
            })
            .arg("--console")
            .arg(&console)
            .arg("--vars")
            .arg(&self.vars);
        match self.registry_port {
            Some(p) => c.arg("--registry-port").arg(p.to_string()),
            None => c.arg("--no-net"),
        };
        c.arg(&self.disk)
            .arg("--")
            .arg("-serial")
            .arg(format!("file:{}", log.display()));
        let mut disks = vec![(self.step.clone(), "ocistep")];
        disks.extend(self.disks.iter().cloned());
        for (i, (file, serial)) in disks.iter().enumerate() {
            c.arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=none,id=extra{i},readonly=on",
                    file.display()
                ))
                .arg("-device")
                .arg(format!("virtio-blk-pci,drive=extra{i},serial={serial}"));
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        (c.spawn().expect("starting scripts/run-vm"), log)
    }

    /// Boot, run `script` in the guest, wait for the power-off.
    pub fn boot(&mut self, name: &str, script: &str) -> Boot {
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
                    end: End::PowerOff,
                };
                if !st.success() {
                    b.fail(&format!("qemu exited with {st}: {err}"));
                }
                if !b.log.contains("OCIBOOT-STEP-END rc=0") {
                    b.fail(&format!("boot {name}: the step did not end with rc=0"));
                }
                b.no_ordering_cycle();
                self.timings.push(format!(
                    "{name}: {:.1} s wall, step started at guest uptime {:.1} s, root set-up {:.1} ms",
                    b.wall.as_secs_f64(),
                    b.uptime_at_step(),
                    b.root_setup_ms()
                ));
                eprintln!("{}: {}", self.name, self.timings.last().unwrap());
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
                    end: End::Cut,
                };
                b.fail(&format!("boot {name} timed out after {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Boot, run `script`, and pull the plug `delay` after the guest prints `marker`.
    pub fn boot_and_cut(
        &mut self,
        name: &str,
        script: &str,
        marker: &str,
        delay: Duration,
    ) -> Boot {
        self.boot_and_cut_on(name, script, marker, delay, false)
    }

    /// Like `boot_and_cut`, watching the step's port or (`console`) the console.
    pub fn boot_and_cut_on(
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
        eprintln!("{}: {}", self.name, self.timings.last().unwrap());
        Boot {
            log: read(),
            console: read_lossy(&path.with_extension("console.log")),
            path,
            wall: t.elapsed(),
            end: End::Cut,
        }
    }

    /// Boot with a step that only observes (it prints, then waits: nothing is typed in
    /// between); the boot ends when the guest reboots or powers off by itself (qemu exits), when
    /// `watch` answers `Act::Cut` (the power is cut), or fails after `limit`. `watch` sees the
    /// logs so far every 100 ms and may act on the host meanwhile (push an image, stop the
    /// registry). The step need not start: a boot that fails its health checks may reboot first.
    pub fn boot_observed(
        &mut self,
        name: &str,
        script: &str,
        limit: Duration,
        mut watch: impl FnMut(&Running) -> Act,
    ) -> Boot {
        let t = Instant::now();
        let (mut child, path) = self.spawn(name, script);
        let console = path.with_extension("console.log");
        let end = loop {
            if child.try_wait().unwrap().is_some() {
                break None;
            }
            let (step, cons) = (read_lossy(&path), read_lossy(&console));
            let r = Running {
                step: &step,
                console: &cons,
                elapsed: t.elapsed(),
            };
            if watch(&r) == Act::Cut {
                child.kill().unwrap();
                break Some(End::Cut);
            }
            if t.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                Boot {
                    log: step,
                    console: cons,
                    path,
                    wall: t.elapsed(),
                    end: End::Cut,
                }
                .fail(&format!("boot {name} did not end within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let st = child.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        let mut b = Boot {
            log: read_lossy(&path),
            console: read_lossy(&console),
            path,
            wall: t.elapsed(),
            end: end.unwrap_or(End::Exited),
        };
        if b.end != End::Cut {
            if !st.success() {
                b.fail(&format!("qemu exited with {st}: {err}"));
            }
            if b.console.contains("reboot: Restarting system") {
                b.end = End::Reboot;
            } else if b.console.contains("reboot: Power down") {
                b.end = End::PowerOff;
            }
        }
        b.no_ordering_cycle();
        let step = if b.log.contains("OCIBOOT-STEP-BEGIN") {
            format!("step started at guest uptime {:.1} s", b.uptime_at_step())
        } else {
            "the step never started".to_string()
        };
        self.timings.push(format!(
            "{name}: {:.1} s wall, ended by {:?}, {step}",
            b.wall.as_secs_f64(),
            b.end
        ));
        eprintln!("{}: {}", self.name, self.timings.last().unwrap());
        if b.log.contains("OCIBOOT-STEP-BEGIN") {
            eprintln!(
                "---- boot {} ({name}), in the guest:\n{}\n----",
                self.boots,
                b.transcript()
            );
        }
        b
    }
}

/// The test unit that runs each boot's step, as a tree for scripts/make-base-image's
/// `OCIBOOT_BASE_ADD` (vm_quickstart and vm_unattended: the same tree, so one cached base image).
pub fn step_runner_tree(dir: &Path) -> PathBuf {
    let t = dir.join("base-add");
    let unit = t.join("usr/lib/systemd/system");
    std::fs::create_dir_all(unit.join("multi-user.target.wants")).unwrap();
    std::fs::create_dir_all(t.join("usr/libexec")).unwrap();
    let guest = repo_root().join("tests/vm/guest");
    std::fs::copy(
        guest.join("ociboot-vmtest.service"),
        unit.join("ociboot-vmtest.service"),
    )
    .unwrap();
    let runner = t.join("usr/libexec/ociboot-vmtest");
    std::fs::copy(guest.join("ociboot-vmtest"), &runner).unwrap();
    std::fs::set_permissions(&runner, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(
        "../ociboot-vmtest.service",
        unit.join("multi-user.target.wants/ociboot-vmtest.service"),
    )
    .unwrap();
    t
}

/// The serial log: firmware menus and kernel messages are not all UTF-8.
pub fn read_lossy(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

/// The scratch directory (disk image, firmware variables), kept when the test fails.
pub struct KeepOnFailure(pub Option<tempfile::TempDir>);

impl KeepOnFailure {
    pub fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for KeepOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(d) = self.0.take() {
                eprintln!(
                    "VM test failed; disk image and firmware variables kept in {}",
                    d.keep().display()
                );
            }
        }
    }
}
