//! The systemd units of systemd/ as an image gets them: scripts/install-units installs every
//! one and enables it as its [Install] section says (WantedBy= and RequiredBy= links under
//! /usr, the health units' kind included), the .deb from scripts/build-deb carries them so,
//! and `systemd-analyze verify` accepts each. (The units run only in the VM tests: PID 1 on
//! the test host is not systemd.)

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn install_units(root: &Path, units: &[PathBuf]) -> Output {
    Command::new(repo_root().join("scripts/install-units"))
        .arg(root)
        .args(units)
        .output()
        .unwrap()
}

fn link(p: &Path) -> String {
    std::fs::read_link(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .display()
        .to_string()
}

/// Every unit file of systemd/.
fn our_units() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_root().join("systemd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn every_unit_is_installed_and_enabled_as_its_install_section_says() {
    let dir = scratch("units");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let out = install_units(&root, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let u = root.join("usr/lib/systemd/system");
    for unit in our_units() {
        let name = unit.file_name().unwrap();
        assert_eq!(
            std::fs::read(u.join(name)).unwrap(),
            std::fs::read(&unit).unwrap()
        );
        assert_eq!(
            std::fs::metadata(u.join(name)).unwrap().mode() & 0o7777,
            0o644
        );
    }
    assert_eq!(
        link(&u.join("timers.target.wants/ociboot-fetch-apply-updates.timer")),
        "../ociboot-fetch-apply-updates.timer"
    );
    assert_eq!(
        link(&u.join("multi-user.target.wants/ociboot-finalize-staged.service")),
        "../ociboot-finalize-staged.service"
    );
    assert!(
        !u.join("multi-user.target.wants/ociboot-fetch-apply-updates.service")
            .exists(),
        "the service is started by its timer only"
    );

    // Units like the health checks': RequiredBy= gets a .requires link, each target its own.
    let units = dir.path().join("more");
    std::fs::create_dir(&units).unwrap();
    let health = units.join("ociboot-health.service");
    std::fs::write(
        &health,
        "[Unit]\nBefore=boot-complete.target\n[Service]\nType=oneshot\nExecStart=/bin/true\n\
         [Install]\nRequiredBy=boot-complete.target\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    let assess = units.join("ociboot-health-assess.service");
    std::fs::write(
        &assess,
        "[Service]\nExecStart=/bin/true\n\n[Install]\n# a comment\nWantedBy = multi-user.target \n",
    )
    .unwrap();
    let out = install_units(&root, &[health, assess]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        link(&u.join("boot-complete.target.requires/ociboot-health.service")),
        "../ociboot-health.service"
    );
    assert_eq!(
        link(&u.join("multi-user.target.wants/ociboot-health.service")),
        "../ociboot-health.service"
    );
    assert_eq!(
        link(&u.join("multi-user.target.wants/ociboot-health-assess.service")),
        "../ociboot-health-assess.service"
    );
    assert!(!u.join("boot-complete.target.wants").exists());

    // An [Install] key it does not know: exit 1, naming the file and line, nothing written.
    let bad = units.join("bad.service");
    std::fs::write(
        &bad,
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=a.target\nDefaultInstance=x\n",
    )
    .unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = install_units(&empty, &[units.join("ociboot-health.service"), bad.clone()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:5", bad.display())) && err.contains("DefaultInstance"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn systemd_analyze_verifies_every_unit() {
    let dir = scratch("units-verify");
    let root = dir.path();
    let out = install_units(root, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // What the units run: the binary where the .deb puts it, /bin/true (a merged /usr).
    let bin = root.join("usr/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    for (from, to) in [
        (env!("CARGO_BIN_EXE_ociboot"), "ociboot"),
        ("/bin/true", "true"),
    ] {
        if std::fs::hard_link(from, bin.join(to)).is_err() {
            std::fs::copy(from, bin.join(to)).unwrap();
        }
    }
    let u = root.join("usr/lib/systemd/system");
    // The targets they name, as the image's systemd has them (the host's copies).
    for e in std::fs::read_dir("/usr/lib/systemd/system").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "target") {
            let _ = std::fs::copy(&p, u.join(p.file_name().unwrap()));
        }
    }
    for unit in our_units() {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .arg(format!("--root={}", root.display()))
            .arg(u.join(unit.file_name().unwrap()))
            .output()
            .expect("systemd-analyze (Debian package systemd) must be installed");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}: {}",
            unit.display(),
            text(&out.stderr)
        );
    }
}

#[test]
fn the_deb_ships_every_unit_enabled() {
    let dir = scratch("deb");
    let out = Command::new(repo_root().join("scripts/build-deb"))
        .args(["--binary", env!("CARGO_BIN_EXE_ociboot"), "--out"])
        .arg(dir.path())
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deb = text(&out.stdout).trim().to_string();
    let list = text(&sh(Command::new("dpkg-deb").args(["-c", &deb])).stdout);
    for unit in our_units() {
        let name = unit.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            list.contains(&format!("./usr/lib/systemd/system/{name}\n")),
            "{name} not in the .deb:\n{list}"
        );
    }
    for (link, to) in [
        (
            "timers.target.wants/ociboot-fetch-apply-updates.timer",
            "../ociboot-fetch-apply-updates.timer",
        ),
        (
            "multi-user.target.wants/ociboot-finalize-staged.service",
            "../ociboot-finalize-staged.service",
        ),
    ] {
        assert!(
            list.contains(&format!("./usr/lib/systemd/system/{link} -> {to}\n")),
            "{link} not in the .deb:\n{list}"
        );
    }
}
