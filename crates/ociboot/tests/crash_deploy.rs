//! Crash injection for deployments: an abort (like kill -9 or a power cut, see crash.rs) at
//! every named step of stage, finalize, rollback and GC. Afterwards `status` works, the default
//! boot entry names a complete deployment with its kernel and initramfs, and repeating the
//! command completes the change. Needs `--features ociboot/failpoints`.
#![cfg(feature = "failpoints")]

mod common;

use common::*;
use serde_json::Value;
use std::path::PathBuf;

fn oci(tag: &str) -> String {
    format!("{}:{tag}", os_layout().display())
}

struct M {
    h: Host,
    cmdline: PathBuf,
}

impl M {
    fn new(name: &str) -> M {
        let mut h = Host::new(name);
        let cmdline = h.path("cmdline");
        std::fs::write(&cmdline, "").unwrap();
        h.env
            .push(("OCIBOOT_PROC_CMDLINE".into(), cmdline.display().to_string()));
        M { h, cmdline }
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.h.ok(&["status", "--json"])).unwrap()
    }

    /// The default entry's options, after checking that everything it boots is complete.
    fn default_entry(&self) -> String {
        let root = self.h.sysroot();
        let dir = root.join("boot/loader/entries");
        let mut best: Option<(u32, String)> = None;
        for e in std::fs::read_dir(&dir).unwrap() {
            let t = std::fs::read_to_string(e.unwrap().path()).unwrap();
            let get = |k: &str| {
                t.lines()
                    .find_map(|l| l.strip_prefix(&format!("{k} ")))
                    .unwrap()
                    .to_string()
            };
            let v: u32 = get("version").parse().unwrap();
            for k in ["linux", "initrd"] {
                let p = root.join("boot").join(get(k).trim_start_matches('/'));
                assert!(
                    p.is_file() && std::fs::metadata(&p).unwrap().len() > 0,
                    "{k} {} missing or empty",
                    p.display()
                );
            }
            let opts = get("options");
            let key = opts
                .split_whitespace()
                .find_map(|a| a.strip_prefix("ociboot="))
                .unwrap()
                .to_string();
            let (sr, id) = key.split_once('/').unwrap();
            let droot = root.join("ociboot/deploy").join(sr).join("deploy").join(id);
            assert!(
                droot.join("usr/bin/hello").is_file() && droot.join("etc/app/config").is_file(),
                "deployment {key} incomplete"
            );
            if best.as_ref().is_none_or(|b| v > b.0) {
                best = Some((v, opts));
            }
        }
        best.expect("no boot entry").1
    }

    fn reboot(&self) {
        std::fs::write(&self.cmdline, self.default_entry()).unwrap();
        let _ = std::fs::remove_dir_all(self.h.sysroot().join("run"));
    }

    fn booted_version(&self) -> String {
        self.status()["status"]["booted"]["image"]["version"]
            .as_str()
            .unwrap_or("none")
            .to_string()
    }

    fn crash(&self, step: &str, args: &[&str]) {
        let (ok, _, err) = self.h.run_env(args, &[("OCIBOOT_FAILPOINT", step)]);
        assert!(!ok, "{step}: {args:?} should have died");
        assert!(
            err.contains(&format!("failpoint {step}")),
            "{step} was never reached by {args:?}: {err}"
        );
    }
}

fn switch_args(tag: &str) -> Vec<String> {
    vec![
        "switch".into(),
        "--transport".into(),
        "oci".into(),
        oci(tag),
    ]
}

fn setup(name: &str) -> M {
    let m = M::new(name);
    let root = m.h.sysroot();
    m.h.ok(&[
        "install",
        "to-filesystem",
        "--source-imgref",
        &format!("oci:{}", oci("v1")),
        "--bootloader",
        "none",
        root.to_str().unwrap(),
    ]);
    m.reboot();
    m
}

#[test]
fn steps_are_all_tested() {
    let tested = [
        "stage-deployed",
        "stage-staged-written",
        "gc-deployments-removed",
        "gc-store-pruned",
        "finalize-unlinked",
        "finalize-etc-merged",
        "finalize-entries-synced",
        "finalize-entries-swapped",
        "rollback-entries-synced",
    ];
    let mut a: Vec<&str> = tested.to_vec();
    let mut b: Vec<&str> = ociboot_deploy::sysroot::STEPS.to_vec();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn abort_while_staging() {
    for step in [
        "stage-deployed",
        "stage-staged-written",
        "gc-deployments-removed",
        "gc-store-pruned",
    ] {
        let m = setup(&format!("stage-{step}"));
        let sw = switch_args("v2");
        let sw: Vec<&str> = sw.iter().map(String::as_str).collect();
        m.crash(step, &sw);
        m.status();
        // The next boot is still v1, complete.
        let opts = m.default_entry();
        m.h.ok(&["image", "fsck", "--contents"]);
        // Repeating completes it (an already written staged state counts as done).
        let (ok, out, err) = m.h.run(&sw);
        assert!(ok, "{step}: repeat failed: {out}{err}");
        m.h.ok(&["cleanup"]);
        assert_eq!(
            m.status()["status"]["staged"]["image"]["version"],
            "2.0",
            "{step}"
        );
        assert_eq!(
            m.default_entry(),
            opts,
            "{step}: staging changed the boot entries"
        );
        m.h.ok(&["finalize-staged"]);
        m.reboot();
        assert_eq!(m.booted_version(), "2.0", "{step}");
        m.h.ok(&["image", "fsck", "--contents"]);
    }
}

#[test]
fn abort_while_finalizing() {
    for step in [
        "finalize-unlinked",
        "finalize-etc-merged",
        "finalize-entries-synced",
        "finalize-entries-swapped",
    ] {
        let m = setup(&format!("fin-{step}"));
        let sw = switch_args("v2");
        let sw: Vec<&str> = sw.iter().map(String::as_str).collect();
        m.h.ok(&sw);
        m.crash(step, &["finalize-staged"]);
        m.status();
        // Boot whatever is the default now: v1 (not finalized) or v2 (entries swapped).
        let opts = m.default_entry();
        let expect_new = step == "finalize-entries-swapped";
        m.reboot();
        assert_eq!(
            m.booted_version(),
            if expect_new { "2.0" } else { "1.0" },
            "{step}: {opts}"
        );
        // Repeating the change completes it.
        if !expect_new {
            m.h.ok(&sw);
            m.h.ok(&["finalize-staged"]);
            m.reboot();
        }
        assert_eq!(m.booted_version(), "2.0", "{step}");
        m.h.ok(&["cleanup"]);
        m.h.ok(&["image", "fsck", "--contents"]);
    }
}

#[test]
fn abort_while_rolling_back() {
    let m = setup("rollback");
    let sw = switch_args("v2");
    let sw: Vec<&str> = sw.iter().map(String::as_str).collect();
    m.h.ok(&sw);
    m.h.ok(&["finalize-staged"]);
    m.reboot();
    m.crash("rollback-entries-synced", &["rollback"]);
    assert_eq!(
        m.status()["status"]["rollbackQueued"],
        false,
        "the swap happened anyway"
    );
    m.default_entry();
    m.h.ok(&["rollback"]);
    m.reboot();
    assert_eq!(m.booted_version(), "1.0");
}
