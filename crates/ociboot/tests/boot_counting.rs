//! Boot counting on a directory sysroot, the test playing systemd-boot 252: a new default
//! entry is counted only when its image can bless a boot and there is an entry to fall back
//! to; the loader counts tries down in the file name and, with none left, boots the previous
//! deployment; `status` says so; `upgrade` does not stage that image again; a blessed entry
//! loses its counter. Images: tests/fixtures/mkos.py (`counted` = v2 + systemd-bless-boot),
//! retagged with skopeo in a layout the host follows.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// What systemd-boot does at a boot: pick the default (as the machine sorts entries), count a
/// try down in its file name (`+L-D` → `+L-1-D+1`), then boot it. Returns the file booted.
fn loader_boots(m: &Machine) -> String {
    let name = m.sorted_entry_names().into_iter().next().expect("no entry");
    let dir = m.root().join("boot/loader/entries");
    let stem = name.trim_end_matches(".conf");
    let booted = match stem.rsplit_once('+') {
        Some((base, counter)) => {
            let (l, d) = counter.split_once('-').unwrap_or((counter, "0"));
            let (l, d): (u32, u32) = (l.parse().unwrap(), d.parse().unwrap());
            let new = format!("{base}+{}-{}.conf", l.saturating_sub(1), d + 1);
            std::fs::rename(dir.join(&name), dir.join(&new)).unwrap();
            new
        }
        None => name,
    };
    // The entry chosen before the rename boots, even on its last try.
    let text = std::fs::read_to_string(dir.join(&booted)).unwrap();
    let options = text
        .lines()
        .find_map(|l| l.strip_prefix("options "))
        .unwrap();
    std::fs::write(&m.cmdline, options).unwrap();
    let _ = std::fs::remove_dir_all(m.root().join("run"));
    booted
}

fn retag(layout: &Path, tag: &str, to: &Path) {
    sh(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("oci:{}:os", to.display())));
}

#[test]
fn a_new_default_is_tried_then_given_up_and_not_staged_again() {
    let m = Machine::new("counting");
    let layout = os_layout();
    let follow = m.h.path("follow");
    retag(&layout, "v1", &follow);
    let src = format!("oci:{}:os", follow.display());
    m.ok(&[
        "install",
        "to-filesystem",
        "--source-imgref",
        &src,
        "--bootloader",
        "none",
        m.root().to_str().unwrap(),
    ]);
    assert!(
        !loader_boots(&m).contains('+'),
        "the only entry is not counted"
    );

    // v2 has no systemd-bless-boot: its entry is not counted, and staging says why.
    retag(&layout, "v2", &follow);
    let (ok, _, err) = m.h.run(&["upgrade"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("has no /usr/lib/systemd/systemd-bless-boot") && err.contains("not counted"),
        "{err}"
    );
    m.ok(&["finalize-staged"]);
    assert!(
        m.entry_names().iter().all(|n| !n.contains('+')),
        "{:?}",
        m.entry_names()
    );
    loader_boots(&m);
    assert_eq!(m.booted_version(), "2.0");

    // The counted image: its new default entry gets 3 tries.
    retag(&layout, "counted", &follow);
    m.ok(&["upgrade"]);
    m.ok(&["finalize-staged"]);
    let counted: Vec<String> = m
        .entry_names()
        .into_iter()
        .filter(|n| n.contains('+'))
        .collect();
    assert_eq!(counted.len(), 1, "{:?}", m.entry_names());
    assert!(counted[0].ends_with("+3.conf"), "{counted:?}");
    for (i, want) in ["+2-1.conf", "+1-2.conf", "+0-3.conf"].iter().enumerate() {
        let booted = loader_boots(&m);
        assert!(booted.ends_with(want), "try {}: {booted}", i + 1);
        assert_eq!(m.booted_version(), "2.1", "try {}", i + 1);
        let st = m.status();
        let c = &st["status"]["booted"]["ociboot"]["bootCounting"];
        assert_eq!(c["triesDone"], i + 1, "{st}");
        assert_eq!(c["triesLeft"], 2 - i, "{st}");
        // The check failed on this try (a health check run on the host against a root with
        // one failing check; the verdict is handed to the assessment through <run>).
        let root = m.h.path("checks-root");
        let check = root.join("usr/lib/ociboot/health.d/50-app");
        std::fs::create_dir_all(check.parent().unwrap()).unwrap();
        std::fs::write(
            &check,
            "#!/bin/sh\necho 'app: no answer on :8080'\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&check, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let (ok, out, err) = m.h.run(&[
            "internals",
            "health-check",
            "--root",
            root.to_str().unwrap(),
        ]);
        assert!(!ok, "a failing required check fails the unit: {out}");
        assert!(
            out.contains("50-app: FAILED: exit status 1: app: no answer on :8080"),
            "{out}"
        );
        assert!(
            err.contains("required health check failed: 50-app"),
            "{err}"
        );
    }
    // No try left: the loader boots v2 again, and status says what was given up on.
    let booted = loader_boots(&m);
    assert!(!booted.contains('+'), "{booted}");
    assert_eq!(m.booted_version(), "2.0");
    let st = m.status();
    let rb = &st["status"]["rollback"];
    assert_eq!(rb["image"]["version"], "2.1", "{st}");
    assert_eq!(rb["ociboot"]["bootCounting"]["triesLeft"], 0, "{st}");
    assert_eq!(st["status"]["rollbackQueued"], false);
    let human = m.ok(&["status", "--format", "humanreadable"]);
    assert!(human.contains("Boot: given up after 3 tries"), "{human}");

    // The source still serves that image: upgrade says so and stages nothing.
    let out = m.ok(&["upgrade"]);
    assert!(
        out.contains("No update available") && out.contains("gave up on it"),
        "{out}"
    );
    assert!(m.status()["status"]["staged"].is_null());
    // The admin rolls back to it anyway: a new default again, so it gets fresh tries; a good
    // boot is blessed (what systemd-bless-boot does after boot-complete.target: the plain
    // name) and status shows no counter.
    m.ok(&["rollback"]);
    let booted = loader_boots(&m);
    assert!(booted.ends_with("+2-1.conf"), "{booted}");
    assert_eq!(m.booted_version(), "2.1");
    let dir = m.root().join("boot/loader/entries");
    let (base, _) = booted.rsplit_once('+').unwrap();
    std::fs::rename(dir.join(&booted), dir.join(format!("{base}.conf"))).unwrap();
    let st = m.status();
    assert!(
        st["status"]["booted"]["ociboot"]["bootCounting"].is_null(),
        "{st}"
    );
    let human = m.ok(&["status", "--format", "humanreadable"]);
    assert!(!human.contains("Boot:"), "{human}");
}
