//! Health checks as an admin and an image write them: configuration, discovery with overrides
//! and disabling, failing, hanging and wanted checks, and what a failed boot does next.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;

fn script(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn config_from_the_admin_else_the_image_else_defaults() {
    let d = tempfile::tempdir().unwrap();
    assert_eq!(Config::load(d.path()).unwrap(), Config::default());
    std::fs::create_dir_all(d.path().join("usr/lib/ociboot")).unwrap();
    std::fs::write(
        d.path().join("usr/lib/ociboot/health.toml"),
        "[health]\ncheck-timeout-seconds = 20\n",
    )
    .unwrap();
    let c = Config::load(d.path()).unwrap();
    assert_eq!(c.check_timeout, Duration::from_secs(20));
    assert_eq!(c.reboot_delay, Duration::from_secs(30));
    std::fs::create_dir_all(d.path().join("etc/ociboot")).unwrap();
    let admin = d.path().join("etc/ociboot/health.toml");
    std::fs::write(&admin, "[health]\nreboot-delay-seconds = 0\n").unwrap();
    let c = Config::load(d.path()).unwrap();
    assert_eq!(
        c,
        Config {
            check_timeout: Duration::from_secs(300),
            reboot_delay: Duration::ZERO
        }
    );
    for (bad, says) in [
        ("[health]\ncheck-timeout = 5\n", "unknown field"),
        ("[health]\ncheck-timeout-seconds = 0\n", "out of range"),
        ("[health\n", "health.toml"),
    ] {
        std::fs::write(&admin, bad).unwrap();
        let e = Config::load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("etc/ociboot/health.toml") && e.contains(says),
            "{e}"
        );
    }
}

#[test]
fn admin_checks_override_and_disable_the_images() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    script(r, "usr/lib/ociboot/health.d/10-net", "exit 0");
    script(r, "usr/lib/ociboot/health.d/20-app", "exit 0");
    script(r, "usr/lib/ociboot/health.d/30-disk", "exit 0");
    script(r, "etc/ociboot/health.d/20-app", "exit 1");
    std::os::unix::fs::symlink("/dev/null", r.join("etc/ociboot/health.d/30-disk")).unwrap();
    std::fs::write(r.join("usr/lib/ociboot/health.d/README"), "not executable").unwrap();
    script(r, "etc/ociboot/wanted.d/90-nice", "exit 0");
    let got: Vec<(String, bool, bool)> = checks(r)
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.required, c.path.starts_with(r.join("etc"))))
        .collect();
    assert_eq!(
        got,
        [
            ("10-net".into(), true, false),
            ("20-app".into(), true, true),
            ("90-nice".into(), false, true)
        ]
    );
    script(r, "etc/ociboot/health.d/bad\nname", "exit 0");
    let e = checks(r).unwrap_err().to_string();
    assert!(e.contains("not a plain file name"), "{e}");
}

#[test]
fn failures_hangs_and_warnings() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    script(r, "usr/lib/ociboot/health.d/10-ok", "echo fine");
    script(
        r,
        "usr/lib/ociboot/health.d/20-hangs",
        &format!(
            "(sleep 30; touch {}/survived) &\necho waiting\nsleep 30",
            r.display()
        ),
    );
    script(r, "usr/lib/ociboot/health.d/30-after", "exit 0");
    script(
        r,
        "usr/lib/ociboot/wanted.d/50-warns",
        "echo 'disk \x1b[31mnearly full' >&2; exit 3",
    );
    let mut log = Vec::new();
    let t = Instant::now();
    let v = run_checks(&checks(r).unwrap(), Duration::from_secs(1), &mut |l| {
        log.push(l.to_string())
    });
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the hang was not cut"
    );
    assert_eq!(v.result, Outcome::Failed);
    assert_eq!(
        v.failed,
        [Failure {
            check: "20-hangs".into(),
            reason: "timed out after 1 s: waiting".into()
        }]
    );
    assert_eq!(
        v.warnings,
        [Failure {
            check: "50-warns".into(),
            reason: "exit status 3: disk  [31mnearly full".into()
        }]
    );
    assert!(log.contains(&"10-ok: fine".to_string()), "{log:?}");
    assert!(log.contains(&"30-after: skipped (a required check failed)".to_string()));
    assert_eq!(v.summary(), "20-hangs (timed out after 1 s: waiting)");
    // Its background process went with it.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!r.join("survived").exists());
    let v = run_checks(
        &checks(r).unwrap()[..1],
        Duration::from_secs(5),
        &mut |_| {},
    );
    assert_eq!((v.result, v.summary()), (Outcome::Passed, String::new()));
}

#[test]
fn only_a_failed_counted_try_reboots_and_only_once() {
    let c = Config::default();
    let bad = Verdict::new(
        vec![Failure {
            check: "x".into(),
            reason: "exit status 1".into(),
        }],
        vec![],
    );
    let good = Verdict::new(vec![], vec![]);
    assert_eq!(next(&good, true, false, &c), Next::Stay);
    assert_eq!(next(&bad, true, false, &c), Next::Reboot(c.reboot_delay));
    assert_eq!(next(&bad, true, true, &c), Next::AlreadyRebooted);
    assert_eq!(next(&bad, false, false, &c), Next::NotCounted);
}
