//! Crash injection for deployments: an abort (like kill -9 or a power cut, see crash.rs) at
//! every named step of stage, finalize, rollback and GC. Afterwards `status` works, the default
//! boot entry names a complete deployment with its kernel and initramfs, and repeating the
//! command completes the change. Needs `--features ociboot/failpoints`.
#![cfg(feature = "failpoints")]

mod common;

use common::*;

fn oci(tag: &str) -> String {
    format!("{}:{tag}", os_layout().display())
}

/// Run a command that must die at the failpoint `step`.
fn crash(m: &Machine, step: &str, args: &[&str]) {
    let (ok, _, err) = m.h.run_env(args, &[("OCIBOOT_FAILPOINT", step)]);
    assert!(!ok, "{step}: {args:?} should have died");
    assert!(
        err.contains(&format!("failpoint {step}")),
        "{step} was never reached by {args:?}: {err}"
    );
}

fn switch_args(tag: &str) -> Vec<String> {
    vec![
        "switch".into(),
        "--transport".into(),
        "oci".into(),
        oci(tag),
    ]
}

/// The default entry, checked down to files of the image: its deployment is complete.
fn complete_default_entry(m: &Machine) -> String {
    let o = m.default_entry();
    let droot = m.deployment_dir(&o);
    assert!(
        droot.join("usr/bin/hello").is_file() && droot.join("etc/app/config").is_file(),
        "deployment {} incomplete",
        droot.display()
    );
    o
}

fn setup(name: &str) -> Machine {
    let m = Machine::new(name);
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
        crash(&m, step, &sw);
        m.status();
        // The next boot is still v1, complete.
        let opts = complete_default_entry(&m);
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
            complete_default_entry(&m),
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
        crash(&m, step, &["finalize-staged"]);
        m.status();
        // Boot whatever is the default now: v1 (not finalized) or v2 (entries swapped).
        let opts = complete_default_entry(&m);
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
    crash(&m, "rollback-entries-synced", &["rollback"]);
    assert_eq!(
        m.status()["status"]["rollbackQueued"],
        false,
        "the swap happened anyway"
    );
    complete_default_entry(&m);
    m.h.ok(&["rollback"]);
    m.reboot();
    assert_eq!(m.booted_version(), "1.0");
}
