//! Crash injection for deployments: an abort (like kill -9 or a power cut, see crash.rs) at
//! every failpoint of install, stage, finalize, rollback and GC, as found in the sources
//! (`common::source::failpoint_names`), so a new failpoint is crash-tested without being listed
//! here. Afterwards `status` works, the boot entries name complete deployments with their
//! kernel and initramfs, and repeating the command completes the change. Needs
//! `--features ociboot/failpoints`.
#![cfg(feature = "failpoints")]

mod common;

use common::source::failpoint_names;
use common::*;

/// The command that reaches a failpoint, by the operation its name starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Install,
    /// `switch`: staging, then the GC.
    Stage,
    Finalize,
    Rollback,
}

/// None for the pull's steps (crash.rs aborts those); a name no scenario here reaches fails.
fn op(step: &str) -> Option<Op> {
    match step.split('-').next().unwrap() {
        "install" => Some(Op::Install),
        "stage" | "gc" => Some(Op::Stage),
        "finalize" => Some(Op::Finalize),
        "rollback" => Some(Op::Rollback),
        "pull" => None,
        _ => panic!("failpoint {step}: no crash scenario reaches it, add one to crash_deploy.rs"),
    }
}

/// The failpoints of the sources that `op` reaches.
fn steps(of: Op) -> Vec<String> {
    failpoint_names()
        .into_iter()
        .filter(|s| op(s) == Some(of))
        .collect()
}

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

/// `ociboot switch` to v2, from the OCI layout.
fn switch_v2() -> Vec<String> {
    ["switch", "--transport", "oci", &oci("v2")]
        .map(String::from)
        .to_vec()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
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

fn install_args(m: &Machine) -> Vec<String> {
    [
        "install",
        "to-filesystem",
        "--source-imgref",
        &format!("oci:{}", oci("v1")),
        "--bootloader",
        "none",
        m.root().to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// v1 installed and booted.
fn setup(name: &str) -> Machine {
    let m = Machine::new(name);
    m.h.ok(&strs(&install_args(&m)));
    m.reboot();
    m
}

/// v1 booted, v2 staged.
fn staged_v2(name: &str) -> Machine {
    let m = setup(name);
    m.h.ok(&strs(&switch_v2()));
    m
}

#[test]
fn every_failpoint_is_tested() {
    let names = failpoint_names();
    for n in &names {
        op(n);
    }
    // The scanner finds at least what the libraries list.
    for s in ociboot_deploy::sysroot::STEPS
        .iter()
        .chain(ociboot_store::failpoint::PULL_STEPS)
    {
        assert!(
            names.contains(*s),
            "{s} not found in the sources: {names:?}"
        );
    }
    for o in [Op::Install, Op::Stage, Op::Finalize, Op::Rollback] {
        assert!(!steps(o).is_empty(), "no failpoint of {o:?} in {names:?}");
    }
}

#[test]
fn abort_while_installing() {
    for step in steps(Op::Install) {
        let step = step.as_str();
        let m = Machine::new(&format!("inst-{step}"));
        let args = install_args(&m);
        let args = strs(&args);
        crash(&m, step, &args);
        m.status();
        // Whatever entry files are there (a loader without loader.conf boots any of them)
        // name complete deployments.
        for (options, linux, initrd) in m.entry_files() {
            m.assert_bootable(&options, &linux, initrd.as_deref());
        }
        m.h.ok(&["image", "fsck", "--contents"]);
        // Repeating either completes the install or refuses it whole (a half-installed
        // sysroot is not resumed; it is wiped and installed again).
        let (ok, out, err) = m.h.run(&args);
        if ok {
            complete_default_entry(&m);
        } else {
            assert!(
                err.contains("already has deployments"),
                "{step}: {out}{err}"
            );
        }
    }
}

#[test]
fn abort_while_staging() {
    for step in steps(Op::Stage) {
        let step = step.as_str();
        let m = setup(&format!("stage-{step}"));
        let sw = switch_v2();
        let sw = strs(&sw);
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
    for step in steps(Op::Finalize) {
        let step = step.as_str();
        let m = staged_v2(&format!("fin-{step}"));
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
            m.h.ok(&strs(&switch_v2()));
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
    for step in steps(Op::Rollback) {
        let step = step.as_str();
        let m = staged_v2(&format!("rb-{step}"));
        m.h.ok(&["finalize-staged"]);
        m.reboot();
        crash(&m, step, &["rollback"]);
        assert_eq!(
            m.status()["status"]["rollbackQueued"],
            false,
            "{step}: the swap happened anyway"
        );
        complete_default_entry(&m);
        m.h.ok(&["rollback"]);
        m.reboot();
        assert_eq!(m.booted_version(), "1.0", "{step}");
    }
}
