//! `ociboot container lint` on good and bad root filesystems, run as the real binary: exit
//! status, and every problem named in the report.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

const OCIBOOT: &str = env!("CARGO_BIN_EXE_ociboot");

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// An image root the lints pass: one kernel with its initramfs, the (static) ociboot binary
/// under test as /usr/bin/ociboot, os-release, kargs.d, /var with only the usual.
fn good_tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "usr/lib/modules/6.1.0-1-amd64/vmlinuz", b"kernel");
    write(
        r,
        "usr/lib/modules/6.1.0-1-amd64/initramfs.img",
        b"initramfs",
    );
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::copy(OCIBOOT, r.join("usr/bin/ociboot")).unwrap();
    write(r, "usr/lib/os-release", b"ID=test\nPRETTY_NAME=\"Test\"\n");
    std::fs::create_dir_all(r.join("etc")).unwrap();
    symlink("../usr/lib/os-release", r.join("etc/os-release")).unwrap();
    write(
        r,
        "usr/lib/bootc/kargs.d/10-console.toml",
        b"kargs = [\"console=ttyS0\"]\n",
    );
    for dir in [
        "var/tmp",
        "var/lib",
        "var/cache",
        "var/log/journal",
        "run",
        "tmp",
    ] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    write(r, "var/log/wtmp", b"");
    symlink("../run", r.join("var/run")).unwrap();
    symlink("../run/lock", r.join("var/lock")).unwrap();
    d
}

/// Run `ociboot container lint ARGS`: success, stdout, stderr.
fn lint(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(OCIBOOT)
        .args(["container", "lint"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lint_root(root: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["--rootfs", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    lint(&args)
}

#[test]
fn good_image_passes() {
    let d = good_tree();
    let (ok, out, err) = lint_root(d.path(), &["--fatal-warnings"]);
    assert!(ok, "{out}\n{err}");
    let n = lint(&["--list"]).1.matches("- name: ").count();
    assert!(n >= 9, "{n}");
    assert!(out.contains(&format!("Checks passed: {n}\n")), "{out}");
    assert!(
        !out.contains("Failed lint") && !out.contains("Lint warning"),
        "{out}"
    );
}

#[test]
fn bad_image_names_every_problem() {
    let d = good_tree();
    let r = d.path();
    // kernel: a second one.
    write(r, "usr/lib/modules/6.2.0-1-amd64/vmlinuz", b"kernel");
    // bootc-kargs: an unknown key.
    write(
        r,
        "usr/lib/bootc/kargs.d/20-bad.toml",
        b"kargs = []\nkarg = \"x\"\n",
    );
    // etc-usretc.
    std::fs::create_dir_all(r.join("usr/etc")).unwrap();
    // os-release: only /etc/os-release.
    std::fs::remove_file(r.join("etc/os-release")).unwrap();
    std::fs::rename(r.join("usr/lib/os-release"), r.join("etc/os-release")).unwrap();
    // var-run: a directory.
    std::fs::remove_file(r.join("var/run")).unwrap();
    std::fs::create_dir(r.join("var/run")).unwrap();
    // static-ociboot: a dynamically linked binary.
    std::fs::copy("/bin/true", r.join("usr/bin/ociboot")).unwrap();
    // utf8.
    std::fs::write(
        r.join(std::ffi::OsStr::from_bytes(b"usr/bin/bad\xffname")),
        b"",
    )
    .unwrap();
    // setuid (a warning).
    write(r, "usr/bin/su", b"x");
    std::fs::set_permissions(
        r.join("usr/bin/su"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    // var-content (a warning): 7 files, 5 shown.
    for i in 0..7 {
        write(r, &format!("var/lib/app/f{i}"), b"state");
    }

    let (ok, out, err) = lint_root(r, &[]);
    assert!(!ok, "{out}");
    for needle in [
        "Failed lint: kernel: 2 kernels",
        "6.2.0-1-amd64/vmlinuz",
        "Failed lint: bootc-kargs: 1 of 2 files",
        "20-bad.toml",
        "Failed lint: etc-usretc:",
        "Failed lint: os-release: /usr/lib/os-release is missing",
        "Failed lint: var-run:",
        "/var/run is a directory",
        "Failed lint: static-ociboot: /usr/bin/ociboot is dynamically linked",
        "Failed lint: utf8: 1 file names",
        "/usr/bin/bad\\xffname",
        "Lint warning: setuid:",
        "/usr/bin/su (setuid, mode 4755)",
        "Lint warning: var-content: 7 entries in /var",
        "  /var/lib/app/f4\n  ...and 2 more\n",
        "Checks passed: 0\n",
        "Warnings: 2\n",
        "Checks failed: 7\n",
    ] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
    assert!(err.contains("Checks failed: 7"), "{err}");
    let (_, out, _) = lint_root(r, &["--no-truncate"]);
    assert!(
        out.contains("/var/lib/app/f6") && !out.contains("more"),
        "{out}"
    );
}

#[test]
fn warnings_fail_only_when_fatal() {
    let d = good_tree();
    write(d.path(), "var/lib/app/state", b"state");
    let (ok, out, _) = lint_root(d.path(), &[]);
    assert!(ok && out.contains("Lint warning: var-content") && out.contains("Warnings: 1"));
    let (ok, _, err) = lint_root(d.path(), &["--fatal-warnings"]);
    assert!(!ok && err.contains("Checks failed: 1"), "{err}");
    let (ok, out, _) = lint_root(d.path(), &["--fatal-warnings", "--skip", "var-content"]);
    assert!(ok && out.contains("Checks skipped: 1"), "{out}");
}

#[test]
fn skip_and_list() {
    let d = good_tree();
    std::fs::remove_dir_all(d.path().join("usr/lib/modules")).unwrap();
    let (ok, out, _) = lint_root(d.path(), &[]);
    assert!(
        !ok && out.contains("Failed lint: kernel: no kernel"),
        "{out}"
    );
    let (ok, out, _) = lint_root(d.path(), &["--skip", "kernel"]);
    assert!(ok && out.contains("Checks skipped: 1"), "{out}");
    let (ok, _, err) = lint_root(d.path(), &["--skip", "kernel", "--skip", "nonesuch"]);
    assert!(!ok && err.contains("nonesuch"), "{err}");

    let (ok, out, _) = lint(&["--list"]);
    assert!(ok);
    for (name, level) in [
        ("bootc-kargs", "fatal"),
        ("etc-usretc", "fatal"),
        ("kernel", "fatal"),
        ("os-release", "fatal"),
        ("setuid", "warning"),
        ("static-ociboot", "fatal"),
        ("utf8", "fatal"),
        ("var-content", "warning"),
        ("var-run", "fatal"),
    ] {
        assert!(
            out.contains(&format!(
                "- name: {name}\n  level: {level}\n  description: \""
            )),
            "{name}: {out}"
        );
    }
}
