//! Each lint on a good tree and on bad ones, through [`run`] as the command uses it.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::elf::tests::fake_elf;
use super::*;

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn mkdir(root: &Path, rel: &str) {
    std::fs::create_dir_all(root.join(rel)).unwrap();
}

/// A tree every lint passes on, with what the lints must not mind: empty usual /var
/// directories, an empty log file, content in /run and /tmp, symlinks out of the root.
fn good_tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "usr/lib/modules/6.1.0-1-amd64/vmlinuz", b"kernel");
    write(
        r,
        "usr/lib/modules/6.1.0-1-amd64/initramfs.img",
        b"initramfs",
    );
    mkdir(r, "usr/lib/modules/6.1.0-1-amd64/kernel/drivers");
    write(r, "usr/bin/ociboot", &fake_elf(&[1]));
    std::fs::set_permissions(
        r.join("usr/bin/ociboot"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    write(r, "usr/lib/os-release", b"ID=test\n");
    mkdir(r, "etc");
    symlink("../usr/lib/os-release", r.join("etc/os-release")).unwrap();
    write(
        r,
        "usr/lib/bootc/kargs.d/10-console.toml",
        b"kargs = [\"console=ttyS0,115200n8\"]\nmatch-architectures = [\"x86_64\"]\n",
    );
    write(r, "usr/lib/bootc/kargs.d/README", b"not toml, not read");
    for dir in [
        "var/tmp",
        "var/cache",
        "var/lib",
        "var/log/journal",
        "run",
        "tmp",
        "proc",
    ] {
        mkdir(r, dir);
    }
    write(r, "var/log/lastlog", b"");
    symlink("../run", r.join("var/run")).unwrap();
    symlink("/run/lock", r.join("var/lock")).unwrap();
    write(r, "run/\u{e9}t\u{e9}", b"x");
    std::fs::write(r.join(std::ffi::OsStr::from_bytes(b"tmp/bad\xff")), b"x").unwrap();
    // Symlinks out of the root: to the host's /usr/bin (where su is setuid) and to /.
    symlink("/usr/bin", r.join("usr/hostbin")).unwrap();
    symlink("/", r.join("usr/hostroot")).unwrap();
    d
}

/// The lints that found something, by name.
fn found(root: &Path) -> Vec<(&'static str, Problem)> {
    run(root, &[])
        .unwrap()
        .results
        .into_iter()
        .filter_map(|r| match r.outcome {
            Outcome::Found(p) => Some((r.lint.name, p)),
            _ => None,
        })
        .collect()
}

/// The one finding of `root`, which must be `name`'s: its message and items in one text.
#[track_caller]
fn only(root: &Path, name: &str) -> String {
    let f = found(root);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].0, name, "{f:#?}");
    format!("{}\n{}", f[0].1.message, f[0].1.items.join("\n"))
}

#[test]
fn lints_are_named_sorted_and_described() {
    let names: Vec<_> = LINTS.iter().map(|l| l.name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for l in LINTS {
        assert!(l
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        assert!(!l.description.is_empty());
    }
}

#[test]
fn good_tree_passes() {
    let d = good_tree();
    let rep = run(d.path(), &[]).unwrap();
    let f = found(d.path());
    assert!(f.is_empty(), "{f:#?}");
    assert_eq!(rep.passed(), LINTS.len());
    assert!(rep.ok(true) && rep.notes.is_empty());
}

#[test]
fn kernel() {
    let d = good_tree();
    let r = d.path();
    write(r, "usr/lib/modules/6.2.0-1-amd64/vmlinuz", b"kernel");
    let m = only(r, "kernel");
    assert!(
        m.contains("2 kernels") && m.contains("6.2.0-1-amd64/vmlinuz"),
        "{m}"
    );
    std::fs::remove_file(r.join("usr/lib/modules/6.2.0-1-amd64/vmlinuz")).unwrap();
    std::fs::remove_file(r.join("usr/lib/modules/6.1.0-1-amd64/initramfs.img")).unwrap();
    let m = only(r, "kernel");
    assert!(m.contains("6.1.0-1-amd64/initramfs.img is missing"), "{m}");
    std::fs::remove_dir_all(r.join("usr/lib/modules")).unwrap();
    assert!(only(r, "kernel").contains("no kernel"));
}

#[test]
fn bootc_kargs() {
    let d = good_tree();
    let r = d.path();
    write(
        r,
        "usr/lib/bootc/kargs.d/20-bad.toml",
        b"kargs = [\"x\"]\nunknown = 1\n",
    );
    write(
        r,
        "usr/lib/bootc/kargs.d/30-bad.toml",
        b"kargs = \"not a list\"\n",
    );
    let m = only(r, "bootc-kargs");
    assert!(m.contains("2 of 3 files"), "{m}");
    assert!(m.contains("20-bad.toml") && m.contains("unknown"), "{m}");
    assert!(m.contains("30-bad.toml"), "{m}");
    // A link out of the root is looked up inside it, where it names nothing.
    for f in ["20-bad.toml", "30-bad.toml"] {
        std::fs::remove_file(r.join("usr/lib/bootc/kargs.d").join(f)).unwrap();
    }
    symlink("/etc/hostname", r.join("usr/lib/bootc/kargs.d/40-out.toml")).unwrap();
    assert!(only(r, "bootc-kargs").contains("40-out.toml: a symlink to nothing"));
}

#[test]
fn etc_usretc() {
    let d = good_tree();
    mkdir(d.path(), "usr/etc");
    assert!(only(d.path(), "etc-usretc").contains("/usr/etc"));
}

#[test]
fn os_release() {
    let d = good_tree();
    let r = d.path();
    std::fs::remove_file(r.join("usr/lib/os-release")).unwrap();
    std::fs::remove_file(r.join("etc/os-release")).unwrap();
    write(r, "etc/os-release", b"ID=test\n");
    assert!(only(r, "os-release").contains("/usr/lib/os-release is missing"));
    // A symlink that stays inside the image is fine (Fedora's os.release.d).
    write(r, "usr/lib/os.release.d/os-release-x", b"ID=x\n");
    symlink("os.release.d/os-release-x", r.join("usr/lib/os-release")).unwrap();
    assert!(found(r).is_empty());
}

#[test]
fn var_run() {
    let d = good_tree();
    let r = d.path();
    std::fs::remove_file(r.join("var/run")).unwrap();
    mkdir(r, "var/run/foo");
    std::fs::remove_file(r.join("var/lock")).unwrap();
    symlink("../tmp", r.join("var/lock")).unwrap();
    let m = only(r, "var-run");
    assert!(m.contains("/var/run is a directory"), "{m}");
    assert!(m.contains("/var/lock -> ../tmp"), "{m}");
    // Both are optional.
    std::fs::remove_dir_all(r.join("var/run")).unwrap();
    std::fs::remove_file(r.join("var/lock")).unwrap();
    assert!(found(r).is_empty());
}

#[test]
fn setuid() {
    let d = good_tree();
    let r = d.path();
    for (f, mode) in [
        ("usr/bin/su", 0o4755),
        ("usr/bin/wall", 0o2755),
        ("usr/bin/x", 0o6755),
    ] {
        write(r, f, b"x");
        std::fs::set_permissions(r.join(f), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let m = only(r, "setuid");
    assert!(m.contains("/usr/bin/su (setuid, mode 4755)"), "{m}");
    assert!(m.contains("/usr/bin/wall (setgid, mode 2755)"), "{m}");
    assert!(
        m.contains("/usr/bin/x (setuid and setgid, mode 6755)"),
        "{m}"
    );
}

#[test]
fn utf8() {
    let d = good_tree();
    let r = d.path();
    mkdir(r, "usr/share/doc");
    let bad = r.join(std::ffi::OsStr::from_bytes(b"usr/share/doc/caf\xe9"));
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("inside"), b"x").unwrap();
    let m = only(r, "utf8");
    assert!(
        m.contains("1 file names") && m.contains("/usr/share/doc/caf\\xe9"),
        "{m}"
    );
}

#[test]
fn static_ociboot() {
    let d = good_tree();
    let r = d.path();
    std::fs::copy("/bin/true", r.join("usr/bin/ociboot")).unwrap();
    assert!(only(r, "static-ociboot").contains("dynamically linked"));
    std::fs::remove_file(r.join("usr/bin/ociboot")).unwrap();
    assert!(only(r, "static-ociboot").contains("has no /usr/bin/ociboot"));
    write(r, "usr/libexec/ociboot", &fake_elf(&[1]));
    symlink("../libexec/ociboot", r.join("usr/bin/ociboot")).unwrap();
    assert!(only(r, "static-ociboot").contains("is a symlink"));
}

#[test]
fn var_content() {
    let d = good_tree();
    let r = d.path();
    write(r, "var/lib/app/state.db", b"data");
    write(r, "var/log/app.log", b"started\n");
    write(r, "var/log/empty.log", b"");
    mkdir(r, "var/lib/app/empty");
    mkdir(r, "var/spool"); // usual, empty: fine
    symlink("../mail", r.join("var/lib/maillink")).unwrap();
    let f = found(r);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].0, "var-content");
    assert_eq!(
        f[0].1.items,
        [
            "/var/lib/app/empty/",
            "/var/lib/app/state.db",
            "/var/lib/maillink",
            "/var/log/app.log"
        ]
    );
    assert!(f[0].1.message.starts_with("4 entries in /var"));
}

#[test]
fn findings_are_bounded() {
    let d = good_tree();
    let r = d.path();
    for i in 0..MAX_ITEMS + 5 {
        write(r, &format!("var/lib/many/{i:05}"), b"x");
    }
    let f = found(r);
    assert_eq!(f[0].1.items.len(), MAX_ITEMS);
    assert_eq!(f[0].1.total_items, MAX_ITEMS + 5);
    assert_eq!(f[0].1.items[0], "/var/lib/many/00000");
}

#[test]
fn depth_is_bounded() {
    let d = good_tree();
    let r = d.path();
    let deep = "d/".repeat(MAX_DEPTH + 2);
    mkdir(r, &format!("usr/{deep}"));
    std::fs::write(
        r.join(format!("usr/{deep}"))
            .join(std::ffi::OsStr::from_bytes(b"\xff")),
        b"",
    )
    .unwrap();
    let rep = run(r, &[]).unwrap();
    assert!(rep.ok(true), "{rep:#?}");
    assert_eq!(rep.notes.len(), 1);
    assert!(
        rep.notes[0].contains("more than 256 levels deep"),
        "{:?}",
        rep.notes
    );
}

#[test]
fn skip() {
    let d = good_tree();
    let r = d.path();
    std::fs::remove_dir_all(r.join("usr/lib/modules")).unwrap();
    write(r, "var/lib/x", b"x");
    let rep = run(r, &["kernel".into(), "var-content".into()]).unwrap();
    assert_eq!(rep.skipped(), 2);
    assert!(rep.ok(true), "{rep:#?}");
    let e = run(&r.join("nonesuch"), &[]).unwrap_err();
    assert!(e.to_string().contains("nonesuch"), "{e}");
    let e = run(r, &["kernel".into(), "no-such-lint".into()]).unwrap_err();
    assert!(e.to_string().contains("no-such-lint"), "{e}");
    let rep = run(r, &[]).unwrap();
    assert_eq!((rep.failed(), rep.warnings()), (1, 1));
    assert!(!rep.ok(false));
}
