//! The README's quick start, run as a newcomer would: the host blocks exactly as README.md
//! prints them (bash, from the repository root), the guest blocks in the VM through the test
//! unit (tests/vm/guest/), which the base image gets through `OCIBOOT_BASE_ADD`.
//!
//! Blocks are the README's fenced blocks whose first line is `# quickstart: NAME`. The
//! `reboot` lines of the guest blocks are the harness's power-off and next boot (the unit must
//! live to report); the v2 push (host 2) happens before the first boot, so that guest blocks 1
//! and 2 share one boot. Boots: v1 (status, the image's package, file and service; upgrade) →
//! v2 (booted, v1 the rollback, the new package; rollback) → v1.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::vm::*;
use common::*;

/// The README's `# quickstart: NAME` blocks, in order.
fn quickstart_blocks() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        if !l.starts_with("```sh") {
            continue;
        }
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        if let Some(name) = body.first().and_then(|f| f.strip_prefix("# quickstart: ")) {
            blocks.push((name.to_string(), body[1..].join("\n") + "\n"));
        }
    }
    blocks
}

fn block(blocks: &[(String, String)], name: &str) -> String {
    blocks
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("README.md has no `# quickstart: {name}` block"))
        .1
        .clone()
}

/// A guest block as the step runs it: `reboot` is the harness's job.
fn guest(blocks: &[(String, String)], name: &str) -> String {
    block(blocks, name)
        .lines()
        .filter(|l| l.trim() != "reboot")
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run a host block as printed, from the repository root; returns how long it took.
fn host(name: &str, script: &str, env: &[(&str, &Path)]) -> f64 {
    let t = Instant::now();
    eprintln!("vm_quickstart: host block {name}:\n{script}");
    let mut c = Command::new("bash");
    c.args(["-euo", "pipefail", "-c", script])
        .current_dir(repo_root());
    for (k, v) in env {
        c.env(k, v);
    }
    let st = c.status().expect("running bash");
    assert!(
        st.success(),
        "README quick start block `{name}` failed: {st}"
    );
    t.elapsed().as_secs_f64()
}

/// Stops the README's registry when the test ends, whatever happened.
struct RegistryStop;

impl Drop for RegistryStop {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/local-registry"))
            .arg("stop")
            .status();
    }
}

#[test]
fn vm_quickstart_from_the_readme() {
    if std::env::var_os("OCIBOOT_SKIP_VM").is_some() {
        eprintln!("vm_quickstart: skipped (OCIBOOT_SKIP_VM is set)");
        return;
    }
    let t0 = Instant::now();
    let blocks = quickstart_blocks();
    let my_os = repo_root().join("my-os");
    let _ = std::fs::remove_dir_all(&my_os);
    let dir = KeepOnFailure(Some(scratch("vm-quickstart")));
    let add = step_runner_tree(dir.path());
    // The binary the README's `install to-disk` line runs (its `cargo build --release`).
    sh(Command::new("bash").arg(repo_root().join("tests/vm/build-static.sh")));
    let _stop = RegistryStop;
    let t_host1 = host(
        "host 1",
        &block(&blocks, "host 1"),
        &[("OCIBOOT_BASE_ADD", &add)],
    );
    let t_host2 = host("host 2", &block(&blocks, "host 2"), &[]);
    let boot_line = block(&blocks, "boot");
    assert_eq!(
        boot_line.trim(),
        "scripts/run-vm my-os/disk.raw",
        "the harness boots the README's disk with scripts/run-vm"
    );

    let mut vm = Vm::new(
        "vm_quickstart",
        dir.path(),
        my_os.join("disk.raw"),
        vec![],
        Some(5000),
    );
    // Boot 1: v1; guest blocks 1 and 2.
    let b = vm.boot(
        "v1",
        &format!(
            "{STATUS}\n{}\necho \"HELLO $(cat /run/hello)\"\necho \"TMUX $(command -v tmux)\"\n\
             {}\necho \"UPGRADE-RC $?\"\n{STATUS}\n",
            guest(&blocks, "guest 1"),
            guest(&blocks, "guest 2"),
        ),
    );
    let st = b.status(0);
    assert_eq!(b.version(&st, "booted"), "1", "my-os version 1 booted");
    assert_eq!(
        st["spec"]["image"]["image"], "10.0.2.100:5000/my-os:latest",
        "the host follows the registry as the guest names it"
    );
    assert!(b
        .step()
        .contains("Welcome to my-os, built from a Containerfile."));
    assert_eq!(
        b.line("HELLO"),
        "hello from my-os",
        "the image's service ran"
    );
    assert_eq!(b.line("TMUX"), "/usr/bin/tmux", "the image's package");
    assert_eq!(b.line("UPGRADE-RC"), "0");
    assert_eq!(b.version(&b.status(1), "staged"), "2", "version 2 staged");

    // Boot 2: v2; guest block 3.
    let b = vm.boot(
        "v2",
        &format!(
            "{STATUS}\n{}\necho \"ROLLBACK-RC $?\"\necho \"TREE $(command -v tree)\"\n{STATUS}\n",
            guest(&blocks, "guest 3")
        ),
    );
    let st = b.status(0);
    assert_eq!(b.version(&st, "booted"), "2", "version 2 booted");
    assert_eq!(b.version(&st, "rollback"), "1", "version 1 is the rollback");
    assert_eq!(b.line("TREE"), "/usr/bin/tree", "version 2's new package");
    assert_eq!(b.line("ROLLBACK-RC"), "0");
    assert_eq!(b.status(1)["status"]["rollbackQueued"], true);

    // Boot 3: v1 again; guest block 4.
    let b = vm.boot(
        "rolled-back",
        &format!("{}\n{STATUS}\n", guest(&blocks, "guest 4")),
    );
    assert_eq!(b.version(&b.status(0), "booted"), "1", "rolled back to 1");

    let summary = format!(
        "vm_quickstart summary: accelerator {:?}; host block 1 {t_host1:.1} s (base image, \
         registry, build, push, install to-disk); host block 2 {t_host2:.1} s (rebuild, push); \
         total {:.1} s",
        vm.accel,
        t0.elapsed().as_secs_f64()
    );
    report(&summary, &vm.timings, "vm_quickstart");
    let _ = std::fs::remove_dir_all(&my_os);
}
