//! The bootc lifecycle on a directory sysroot, with images built by tests/fixtures/mkos.py:
//! install → status → switch (staged) → /etc edits → finalize-staged → "reboot" → rollback →
//! "reboot" → upgrade → switch → GC, one test per stage, each reaching its stage through the
//! helpers below. A "reboot" hands the default boot entry's `options` line to the next command
//! through OCIBOOT_PROC_CMDLINE, as the bootloader would.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn oci(tag: &str) -> String {
    format!("{}:{tag}", os_layout().display())
}

fn fixtures_json() -> Value {
    serde_json::from_slice(&std::fs::read(os_layout().join("fixtures.json")).unwrap()).unwrap()
}

fn digest(tag: &str) -> String {
    fixtures_json()["tags"][tag]["manifest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn install(m: &Machine, tag: &str) {
    let out = m.ok(&[
        "install",
        "to-filesystem",
        "--source-imgref",
        &format!("oci:{}", oci(tag)),
        "--root-mount-spec",
        "UUID=0a1b2c3d",
        "--karg",
        "local.install=1",
        "--bootloader",
        "none",
        m.root().to_str().unwrap(),
    ]);
    assert!(out.contains("Installed"), "{out}");
}

/// Keys sorted at every level, as bootc's canonical JSON.
fn assert_sorted(v: &Value, raw: &str) {
    fn rec(v: &Value) {
        if let Value::Object(m) = v {
            let keys: Vec<&String> = m.keys().collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, sorted);
            m.values().for_each(rec);
        }
    }
    rec(v);
    assert!(
        !raw.contains(": ") && !raw.contains(", "),
        "not compact: {raw}"
    );
}

fn assert_boot_entry(e: &Value, tag: &str, version: &str) {
    for k in [
        "image",
        "cachedUpdate",
        "incompatible",
        "pinned",
        "store",
        "ociboot",
        "softRebootCapable",
        "downloadOnly",
    ] {
        assert!(e.get(k).is_some(), "BootEntry lacks {k}: {e}");
    }
    let img = &e["image"];
    assert_eq!(img["image"]["transport"], "oci");
    assert_eq!(img["image"]["image"].as_str().unwrap(), oci(tag));
    assert_eq!(img["version"], version);
    assert_eq!(img["imageDigest"].as_str().unwrap(), digest(tag));
    assert_eq!(img["architecture"], "amd64");
    assert!(img["timestamp"].as_str().unwrap().starts_with("2026-"));
    for k in ["stateroot", "id", "root"] {
        assert!(e["ociboot"][k].is_string(), "ociboot.{k}: {e}");
    }
    assert!(Path::new(e["ociboot"]["root"].as_str().unwrap())
        .join("usr/bin/hello")
        .is_file());
}

/// A machine with v1 installed and booted.
fn booted_v1(name: &str) -> Machine {
    let m = Machine::new(name);
    install(&m, "v1");
    m.reboot();
    m
}

/// Local changes on the booted deployment: an edit, an addition, a deletion, a chmod in /etc,
/// and a file of its own in /var.
fn edit_locally(m: &Machine) {
    let etc = m.etc();
    std::fs::write(etc.join("app/config"), "edited locally\n").unwrap();
    std::fs::write(etc.join("app/local-added"), "mine\n").unwrap();
    std::fs::remove_file(etc.join("hostname")).unwrap();
    std::fs::set_permissions(
        etc.join("app/private"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    std::fs::write(
        m.root().join("ociboot/deploy/default/var/lib/app/mine"),
        "state\n",
    )
    .unwrap();
}

fn switch(m: &Machine, tag: &str) -> String {
    m.ok(&["switch", "--transport", "oci", &oci(tag)])
}

/// v1 booted and edited locally, v2 staged.
fn staged_v2(name: &str) -> Machine {
    let m = booted_v1(name);
    edit_locally(&m);
    switch(&m, "v2");
    m
}

/// An edit made after staging, which the merge at finalize must still carry.
fn edit_after_staging(m: &Machine) {
    std::fs::write(m.etc().join("app/late"), "after staging\n").unwrap();
}

/// v2 finalized and booted, v1 (edited locally) the rollback.
fn booted_v2(name: &str) -> Machine {
    let m = staged_v2(name);
    edit_after_staging(&m);
    m.ok(&["finalize-staged"]);
    m.reboot();
    m
}

/// Back on v1 by a rollback, v2 the rollback.
fn rolled_back_to_v1(name: &str) -> Machine {
    let m = booted_v2(name);
    m.ok(&["rollback"]);
    m.reboot();
    m
}

#[test]
fn install_and_first_boot() {
    let m = Machine::new("life-install");
    install(&m, "v1");
    // Not booted yet: nothing is "booted".
    let s = m.status();
    assert!(s["status"]["booted"].is_null() && s["status"]["type"].is_null());
    m.reboot();
    let raw = m.ok(&["status", "--json"]);
    let s: Value = serde_json::from_str(&raw).unwrap();
    assert_sorted(&s, raw.trim());
    assert_eq!(s["apiVersion"], "org.containers.bootc/v1");
    assert_eq!(s["kind"], "BootcHost");
    assert_eq!(s["metadata"]["name"], "host");
    assert_eq!(s["status"]["type"], "bootcHost");
    assert_eq!(s["spec"]["bootOrder"], "default");
    assert_eq!(s["spec"]["image"]["image"].as_str().unwrap(), oci("v1"));
    assert_boot_entry(&s["status"]["booted"], "v1", "1.0");
    assert!(s["status"]["staged"].is_null() && s["status"]["rollback"].is_null());
    assert_eq!(s["status"]["rollbackQueued"], false);
    let opts = &m.entries()[0].0;
    for k in [
        "root=UUID=0a1b2c3d",
        "rw",
        "console=ttyS0,115200",
        "local.install=1",
        "ociboot=default/",
    ] {
        assert!(opts.contains(k), "{k} missing from {opts}");
    }
    // A deployment's files are the store's objects: hardlinks, no copies.
    let v1root = m.deployment_root("booted");
    let hello = std::fs::metadata(v1root.join("usr/bin/hello")).unwrap();
    assert!(std::os::unix::fs::MetadataExt::nlink(&hello) >= 2);
    assert_eq!(
        read(&v1root.join("usr/etc/app/config")),
        "default v1\n",
        "pristine /etc kept at usr/etc"
    );
    assert_eq!(
        read(&m.root().join("ociboot/deploy/default/var/lib/app/data")),
        "seed v1\n"
    );
    // Users' state lives in /var: the image's /root became the stateroot's var/roothome.
    for (top, var) in [("root", "roothome"), ("home", "home"), ("srv", "srv")] {
        let link = std::fs::read_link(v1root.join(top)).unwrap();
        assert_eq!(link, Path::new("var").join(var), "/{top}");
    }
    let var = m.root().join("ociboot/deploy/default/var");
    assert_eq!(read(&var.join("roothome/.profile")), "image profile v1\n");
    let mode = std::fs::metadata(var.join("roothome")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o700
    );
}

#[test]
fn local_changes_show_in_diff() {
    let m = booted_v1("life-diff");
    edit_locally(&m);
    let diff = m.ok(&["diff", "etc"]);
    assert!(
        diff.contains("M /etc/app/config")
            && diff.contains("A /etc/app/local-added")
            && diff.contains("D /etc/hostname"),
        "{diff}"
    );
}

#[test]
fn switch_stages_without_touching_the_entries() {
    let m = booted_v1("life-switch");
    edit_locally(&m);
    let (ok, out, err) = m.h.run(&["switch", "--transport", "oci", &oci("v2")]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("Queued for next boot") && out.contains(&digest("v2")),
        "{out}"
    );
    // The image's new /root content is not applied to an existing /var, and it says so.
    assert!(
        err.contains("the image's /root holds 1 entries (.profile)"),
        "{err}"
    );
    let var = m.root().join("ociboot/deploy/default/var");
    assert_eq!(read(&var.join("roothome/.profile")), "image profile v1\n");
    let s = m.status();
    assert_boot_entry(&s["status"]["staged"], "v2", "2.0");
    assert_boot_entry(&s["status"]["booted"], "v1", "1.0");
    assert_eq!(s["spec"]["image"]["image"].as_str().unwrap(), oci("v2"));
    assert_eq!(
        m.entries().len(),
        1,
        "staging must not touch the boot entries"
    );
    let out = switch(&m, "v2");
    assert!(out.contains("Image specification is unchanged."), "{out}");
}

#[test]
fn finalize_merges_etc_and_kargs() {
    let m = staged_v2("life-finalize");
    edit_after_staging(&m);
    let out = m.ok(&["finalize-staged"]);
    assert!(out.contains("Finalized"), "{out}");
    assert_eq!(m.entries().len(), 2);
    m.reboot();
    let s = m.status();
    assert_boot_entry(&s["status"]["booted"], "v2", "2.0");
    assert_boot_entry(&s["status"]["rollback"], "v1", "1.0");
    assert!(s["status"]["staged"].is_null());
    let etc = m.etc();
    assert_eq!(
        read(&etc.join("app/config")),
        "edited locally\n",
        "local edit wins over the image's change"
    );
    assert_eq!(
        read(&etc.join("app/untouched")),
        "image v2\n",
        "untouched files follow the image"
    );
    assert_eq!(read(&etc.join("app/local-added")), "mine\n");
    assert_eq!(read(&etc.join("app/late")), "after staging\n");
    assert_eq!(read(&etc.join("app/new-in-v2")), "new\n");
    assert!(!etc.join("app/removed-in-v2").exists());
    assert!(!etc.join("hostname").exists(), "local deletion kept");
    let mode = std::fs::metadata(etc.join("app/private")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o7777,
        0o640,
        "local chmod kept"
    );
    assert_eq!(
        read(&m.root().join("ociboot/deploy/default/var/lib/app/data")),
        "seed v1\n",
        "/var is never re-seeded"
    );
    assert_eq!(
        read(&m.root().join("ociboot/deploy/default/var/lib/app/mine")),
        "state\n"
    );
    let opts = &m.entries()[0].0;
    for k in [
        "quiet",
        "ociboot.test=v2",
        "console=ttyS0,115200",
        "local.install=1",
        "root=UUID=0a1b2c3d",
    ] {
        assert!(opts.contains(k), "{k} missing from {opts}");
    }
    assert!(!opts.contains("arm-only"), "{opts}");
}

#[test]
fn status_for_people() {
    let m = booted_v2("life-human");
    // Human layout, as bootc's.
    let human = m.ok(&["status", "--format", "humanreadable"]);
    assert!(
        human.contains(&format!("● Booted image: oci:{}", oci("v2"))),
        "{human}"
    );
    assert!(
        human.contains("  Rollback image:")
            && human.contains("Version: 2.0 (2026-02-01T00:00:00Z)"),
        "{human}"
    );
    let yaml = m.ok(&["status", "--format", "yaml"]);
    assert!(
        yaml.contains("apiVersion: org.containers.bootc/v1") && yaml.contains("kind: BootcHost"),
        "{yaml}"
    );
}

#[test]
fn rollback_queues_reverts_and_boots() {
    let m = booted_v2("life-rollback");
    // rollback: instant, entries only; twice undoes it.
    let out = m.ok(&["rollback"]);
    assert!(out.contains("Next boot: rollback deployment"), "{out}");
    let s = m.status();
    assert_eq!(s["status"]["rollbackQueued"], true);
    assert_eq!(s["spec"]["bootOrder"], "rollback");
    let out = m.ok(&["rollback"]);
    assert!(out.contains("Reverting queued rollback state"), "{out}");
    assert_eq!(m.status()["status"]["rollbackQueued"], false);
    m.ok(&["rollback"]);
    m.reboot();
    let s = m.status();
    assert_boot_entry(&s["status"]["booted"], "v1", "1.0");
    assert_boot_entry(&s["status"]["rollback"], "v2", "2.0");
    let etc = m.etc();
    assert_eq!(
        read(&etc.join("app/untouched")),
        "image v1\n",
        "v1 keeps its own /etc"
    );
    assert_eq!(read(&etc.join("app/config")), "edited locally\n");
}

#[test]
fn upgrade_without_news() {
    let m = rolled_back_to_v1("life-upgrade");
    // Nothing new: upgrade says so.
    let out = m.ok(&["upgrade"]);
    assert!(out.contains("No update available."), "{out}");
    let out = m.ok(&["upgrade", "--check"]);
    assert!(out.contains("No changes in"), "{out}");
}

#[test]
fn gc_keeps_booted_and_rollback_only() {
    let m = rolled_back_to_v1("life-gc");
    // switch v3 and boot it: GC keeps v3 and v1, frees v2.
    let v2root = m.deployment_root("rollback");
    let store_before = m.h.store_bytes();
    switch(&m, "v3");
    m.ok(&["finalize-staged"]);
    m.reboot();
    let s = m.status();
    assert_boot_entry(&s["status"]["booted"], "v3", "3.0");
    assert_boot_entry(&s["status"]["rollback"], "v1", "1.0");
    assert!(!v2root.exists(), "v2's deployment was not collected");
    let deployments: Vec<_> = std::fs::read_dir(m.root().join("ociboot/deploy/default/deploy"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .collect();
    assert_eq!(deployments.len(), 2);
    let opts = &m.entries()[0].0;
    assert!(
        opts.contains("console=ttyS1,115200")
            && !opts.contains("console=ttyS0")
            && !opts.contains("quiet"),
        "{opts}"
    );
    assert!(opts.contains("local.install=1"));
    let kernels: Vec<_> = std::fs::read_dir(m.root().join("boot/ociboot"))
        .unwrap()
        .collect();
    assert_eq!(kernels.len(), 2, "v1's and v3's kernels");
    let list = m.ok(&["image", "list"]);
    assert!(!list.contains(":v2"), "v2 still referenced: {list}");
    // v2's unique payload (300 kB) is gone from the store.
    assert!(
        m.h.store_bytes() < store_before,
        "nothing freed: {store_before} -> {}",
        m.h.store_bytes()
    );
    m.ok(&["image", "fsck", "--contents"]);
}

#[test]
fn etc_conflicts_are_refused_at_stage_time() {
    let m = Machine::new("conflict");
    install(&m, "v1");
    m.reboot();
    std::fs::write(m.etc().join("app/localthing"), "a file\n").unwrap();
    let before: Vec<_> = std::fs::read_dir(m.root().join("ociboot/deploy/default/deploy"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let err = m.fails(&["switch", "--transport", "oci", &oci("conflict")]);
    assert!(
        err.contains("/etc/app/localthing") && err.contains("directory"),
        "{err}"
    );
    let s = m.status();
    assert!(s["status"]["staged"].is_null(), "something was staged");
    let after: Vec<_> = std::fs::read_dir(m.root().join("ociboot/deploy/default/deploy"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "a deployment was left behind");
}

#[test]
fn upgrade_check_download_only_and_pin() {
    let m = Machine::new("upgrade");
    // The machine follows a tag that moves from v1 to v2.
    let layout = m.h.path("moving");
    sh(Command::new("skopeo")
        .args(["copy", "--quiet", "--preserve-digests"])
        .arg(format!("oci:{}", oci("v1")))
        .arg(format!("oci:{}:latest", layout.display())));
    let r = format!("oci:{}:latest", layout.display());
    m.ok(&[
        "install",
        "to-filesystem",
        "--source-imgref",
        &r,
        "--bootloader",
        "none",
        m.root().to_str().unwrap(),
    ]);
    m.reboot();
    assert!(m.ok(&["upgrade"]).contains("No update available."));
    sh(Command::new("skopeo")
        .args(["copy", "--quiet", "--preserve-digests"])
        .arg(format!("oci:{}", oci("v2")))
        .arg(format!("oci:{}:latest", layout.display())));
    let out = m.ok(&["upgrade", "--check"]);
    assert!(
        out.contains("Update available for") && out.contains(&digest("v2")),
        "{out}"
    );
    let s = m.status();
    assert_eq!(
        s["status"]["booted"]["cachedUpdate"]["imageDigest"]
            .as_str()
            .unwrap(),
        digest("v2")
    );
    assert!(s["status"]["staged"].is_null(), "--check staged something");
    let out = m.ok(&["upgrade", "--download-only"]);
    assert!(out.contains("Queued for next boot"), "{out}");
    let s = m.status();
    assert_eq!(s["status"]["staged"]["downloadOnly"], true);
    // A download-only deployment is not applied at shutdown.
    assert!(m.ok(&["finalize-staged"]).contains("No staged deployment"));
    assert_eq!(m.entries().len(), 1);
    m.ok(&["upgrade", "--from-downloaded"]);
    assert_eq!(m.status()["status"]["staged"]["downloadOnly"], false);
    assert!(m
        .ok(&["upgrade"])
        .contains("Staged update present, not changed"));
    m.ok(&["finalize-staged"]);
    m.reboot();
    assert_eq!(m.status()["status"]["booted"]["image"]["version"], "2.0");
    // Pin the rollback (v1); after another update it stays, as another deployment.
    m.ok(&["pin", "1"]);
    sh(Command::new("skopeo")
        .args(["copy", "--quiet", "--preserve-digests"])
        .arg(format!("oci:{}", oci("v3")))
        .arg(format!("oci:{}:latest", layout.display())));
    m.ok(&["upgrade"]);
    m.ok(&["finalize-staged"]);
    m.reboot();
    let s = m.status();
    assert_eq!(s["status"]["booted"]["image"]["version"], "3.0");
    assert_eq!(s["status"]["rollback"]["image"]["version"], "2.0");
    let others = s["status"]["otherDeployments"]
        .as_array()
        .expect("pinned v1 kept");
    assert_eq!(others.len(), 1);
    assert_eq!(others[0]["image"]["version"], "1.0");
    assert_eq!(others[0]["pinned"], true);
    assert_eq!(m.entries().len(), 3);
}
