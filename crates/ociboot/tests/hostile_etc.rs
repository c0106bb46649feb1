//! Hostile images against the /etc merge (issue 9, item 1), driven through the real binary on a
//! directory sysroot: an image whose /etc, or a directory in it, is a symlink to a host
//! directory must not make `switch` or `finalize-staged` read, write or remove anything there.
//! The images (tags `etc-app-link`, `etc-link` of tests/fixtures/mkos.py) name fixed host paths;
//! each test puts canary files there and checks them afterwards.

mod common;

use common::*;
use std::path::Path;

/// The layout reference of a tag, as `switch --transport oci` takes it.
fn layout(tag: &str) -> String {
    format!("{}:{tag}", os_layout().display())
}

fn install_v1(m: &Machine) {
    m.ok(&[
        "install",
        "to-filesystem",
        "--source-imgref",
        &format!("oci:{}", layout("v1")),
        "--root-mount-spec",
        "UUID=0a1b2c3d",
        "--bootloader",
        "none",
        m.root().to_str().unwrap(),
    ]);
    m.reboot();
}

/// A host directory the image points at, with files in it; returns its listing with content.
fn canary(dir: &str, files: &[&str]) -> Vec<(String, String)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for f in files {
        std::fs::write(Path::new(dir).join(f), format!("host's {f}\n")).unwrap();
    }
    listing(dir)
}

fn listing(dir: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let content = std::fs::read_to_string(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().to_string(), content)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_directory_of_etc_made_a_symlink_does_not_let_a_local_removal_reach_the_host() {
    const DIR: &str = "/tmp/ociboot-canary-etc-app";
    let before = canary(DIR, &["untouched", "config"]);
    let m = Machine::new("etc-app-link");
    install_v1(&m);
    // The admin removes a file the image ships; the new image makes /etc/app a symlink to a
    // host directory that has a file of that name.
    std::fs::remove_file(m.etc().join("app/untouched")).unwrap();
    m.ok(&["switch", "--transport", "oci", &layout("etc-app-link")]);
    m.ok(&["finalize-staged"]);
    m.reboot();
    assert_eq!(listing(DIR), before, "the merge changed the host's {DIR}");
    let app = m.etc().join("app");
    assert!(
        app.symlink_metadata().unwrap().file_type().is_symlink(),
        "the new /etc/app is the image's symlink"
    );
    let _ = std::fs::remove_dir_all(DIR);
}

#[test]
fn an_image_whose_etc_is_a_symlink_is_refused_at_stage_time() {
    const DIR: &str = "/tmp/ociboot-canary-etc";
    let before = canary(DIR, &["passwd"]);
    let m = Machine::new("etc-link");
    install_v1(&m);
    std::fs::write(m.etc().join("app/local-file"), "admin's\n").unwrap();
    let deploys = m.root().join("ociboot/deploy/default/deploy");
    let names = || {
        let mut v: Vec<_> = std::fs::read_dir(&deploys)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let deployments = names();
    let err = m.fails(&["switch", "--transport", "oci", &layout("etc-link")]);
    assert!(
        err.contains("/etc") && err.contains("symlink") && err.contains("directory"),
        "{err}"
    );
    assert!(
        m.status()["status"]["staged"].is_null(),
        "something was staged"
    );
    assert_eq!(names(), deployments, "a deployment was left behind");
    assert_eq!(listing(DIR), before, "the host's {DIR} changed");
    let _ = std::fs::remove_dir_all(DIR);
}
