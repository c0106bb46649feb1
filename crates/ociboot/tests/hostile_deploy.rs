//! Hostile images against staging, the /etc merge and the boot entries, driven through the real
//! binary on a directory sysroot (tags of tests/fixtures/mkos.py):
//! - /etc, or a directory in it, a symlink to a host directory (`etc-link`, `etc-app-link`):
//!   `switch` and `finalize-staged` must not read, write or remove anything there;
//! - an image without /etc whose /usr is a symlink to a host directory (`usr-link`): install
//!   and staging refuse it without reading the host's `etc/` through it (access time kept);
//! - a deployment whose pristine /etc leads to a host directory: `diff` refuses to read it;
//! - an initramfs that is a symlink to a host file (`initrd-link`): its bytes must not reach
//!   the boot partition;
//! - a kargs.d file that sets `ociboot=` (`kargs-owned`), a `usr/bin/ociboot` that is a symlink
//!   to a shell (`init-symlink`): refused at stage time;
//! - a version label with newlines (`title-inject`): no line added to the entry;
//! - an old deployment's files (setuid binaries an update replaced) out of reach of
//!   unprivileged users.
//!
//! The images name fixed host paths; each test puts canary files there and checks them after.

mod common;

use common::*;
use std::path::Path;

/// The layout reference of a tag, as `switch --transport oci` takes it.
fn layout(tag: &str) -> String {
    format!("{}:{tag}", os_layout().display())
}

fn install_v1(m: &Machine) {
    m.install_booted(&format!("oci:{}", layout("v1")));
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
    let m = Machine::hostile("etc-app-link");
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
    let m = Machine::hostile("etc-link");
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

/// Stage `tag` on a machine booted into v1 and expect it refused: the message, nothing
/// staged, no deployment left behind.
fn refused(m: &Machine, tag: &str) -> String {
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
    let err = m.fails(&["switch", "--transport", "oci", &layout(tag)]);
    assert!(
        m.status()["status"]["staged"].is_null(),
        "something was staged"
    );
    assert_eq!(names(), deployments, "a deployment was left behind");
    err
}

/// Every file under the sysroot's boot directory, with its content.
fn boot_files(m: &Machine) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    fn walk(p: &Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                walk(&e.path(), out);
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap_or_default()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&m.root().join("boot"), &mut out);
    out
}

#[test]
fn an_initramfs_linked_to_a_host_file_never_reaches_the_boot_partition() {
    const SECRET: &str = "/tmp/ociboot-canary-secret";
    std::fs::write(SECRET, "the host's secret\n").unwrap();
    let m = Machine::hostile("initrd-link");
    install_v1(&m);
    let err = refused(&m, "initrd-link");
    assert!(err.contains("initramfs.img"), "{err}");
    for (p, data) in boot_files(&m) {
        assert!(
            !String::from_utf8_lossy(&data).contains("the host's secret"),
            "{} holds the host's file",
            p.display()
        );
    }
    let _ = std::fs::remove_file(SECRET);
}

#[test]
fn kargs_d_may_not_name_the_deployment_to_boot() {
    let m = Machine::hostile("kargs-owned");
    install_v1(&m);
    let err = refused(&m, "kargs-owned");
    assert!(
        err.contains("99-evil.toml") && err.contains("ociboot="),
        "{err}"
    );
}

#[test]
fn an_init_that_is_a_symlink_to_a_shell_is_refused() {
    let m = Machine::hostile("init-symlink");
    install_v1(&m);
    let err = refused(&m, "init-symlink");
    assert!(
        err.contains("usr/bin/ociboot") && err.contains("symlink"),
        "{err}"
    );
}

#[test]
fn a_version_label_cannot_add_lines_to_the_boot_entry() {
    let m = Machine::hostile("title-inject");
    install_v1(&m);
    m.ok(&["switch", "--transport", "oci", &layout("title-inject")]);
    m.ok(&["finalize-staged"]);
    let dir = m.root().join("boot/loader/entries");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let keys: Vec<&str> = text
            .lines()
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys.iter().filter(|k| **k == "title").count(),
            1,
            "{}:\n{text}",
            p.display()
        );
        assert!(
            !text.lines().any(|l| l.trim() == "initrd /evil"),
            "{}:\n{text}",
            p.display()
        );
    }
    let titles: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .filter_map(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("title ").map(String::from))
        })
        .collect();
    assert!(
        titles
            .iter()
            .any(|t| t.contains("2.0 initrd /evil title evil")),
        "{titles:?}"
    );
}

/// Whether the user nobody can read `p` (through every directory on its way).
fn nobody_reads(p: &Path) -> bool {
    std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "cat",
        ])
        .arg(p)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn deployments_are_out_of_reach_of_unprivileged_users() {
    use std::os::unix::fs::PermissionsExt;
    let m = Machine::hostile("private-deploy");
    install_v1(&m);
    let v1 = m.deployment_root("booted");
    m.ok(&["switch", "--transport", "oci", &layout("v2")]);
    m.ok(&["finalize-staged"]);
    m.reboot();
    // Open the scratch directory (tempfile makes it 0700) so that only ociboot's own modes
    // stand between the user and the files.
    std::fs::set_permissions(m.h.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let control = m.root().join("boot/loader/loader.conf");
    assert!(
        nobody_reads(&control),
        "the check itself cannot see the sysroot"
    );
    let old = v1.join("usr/bin/hello");
    assert!(old.is_file(), "{}", old.display());
    assert!(!nobody_reads(&old), "nobody reads {}", old.display());
    let deploy = m.root().join("ociboot/deploy/default/deploy");
    let mode = std::fs::metadata(&deploy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", deploy.display());
    // The store holds the very same inodes: out of reach too.
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(&old).unwrap().ino();
    let object = std::fs::read_dir(m.root().join("ociboot/store/objects"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().ino() == ino)
        .expect("the object of usr/bin/hello");
    assert!(!nobody_reads(&object), "nobody reads {}", object.display());
}

/// Every file under `dir` with its content, for what a test finds in a sysroot.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                out.push((
                    e.path(),
                    std::fs::read_to_string(e.path()).unwrap_or_default(),
                ));
            }
        }
    }
    out
}

/// Make `p` look untouched since 2000 (access and modification time): with `relatime`, the
/// next read of it moves its access time to now, so a test can tell it was read.
fn age(p: &str) -> std::time::SystemTime {
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(946_684_800);
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_times(
        std::fs::FileTimes::new()
            .set_accessed(old)
            .set_modified(old),
    )
    .unwrap();
    old
}

fn accessed(p: &str) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().accessed().unwrap()
}

#[test]
fn an_image_whose_usr_is_a_symlink_reads_nothing_of_the_host() {
    // The image has no /etc and its /usr points at a host directory that has an etc/: a copy
    // of "usr/etc" made on the host would bring the host's files into the new /etc.
    const DIR: &str = "/tmp/ociboot-canary-usr";
    let _ = std::fs::remove_dir_all(DIR);
    std::fs::create_dir_all(format!("{DIR}/etc")).unwrap();
    let secret = format!("{DIR}/etc/host-secret");
    std::fs::write(&secret, "host's secret\n").unwrap();
    let old = age(&secret);
    let no_host_file = |m: &Machine| {
        for (p, text) in files_under(&m.root()) {
            assert!(!text.contains("host's"), "{} is the host's", p.display());
        }
        assert_eq!(accessed(&secret), old, "the host's {secret} was read");
    };
    // As the first image: install refuses it.
    let m = Machine::hostile("usr-link-install");
    let err = m.fails(&[
        "install",
        "to-filesystem",
        "--source-imgref",
        &format!("oci:{}", layout("usr-link")),
        "--bootloader",
        "none",
        m.root().to_str().unwrap(),
    ]);
    no_host_file(&m);
    assert!(err.contains("usr") && err.contains("symlink"), "{err}");
    // As an update: staging refuses it, and finalize has nothing to do.
    let m = Machine::hostile("usr-link");
    install_v1(&m);
    let err = refused(&m, "usr-link");
    m.ok(&["finalize-staged"]);
    no_host_file(&m);
    assert!(
        err.contains("usr") && err.contains("symlink") && err.contains("real directory"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(DIR);
}

#[test]
fn diff_does_not_read_a_pristine_etc_behind_a_symlink() {
    const DIR: &str = "/tmp/ociboot-canary-drift";
    let before = canary(DIR, &["host-only"]);
    let m = Machine::hostile("drift-link");
    install_v1(&m);
    // A deployment whose pristine /etc leads to a host directory (as one made by an older
    // ociboot from an image whose /usr/etc was a symlink): diff must not list the host's.
    let usr_etc = m.deployment_root("booted").join("usr/etc");
    std::fs::remove_dir_all(&usr_etc).unwrap();
    std::os::unix::fs::symlink(DIR, &usr_etc).unwrap();
    let (ok, out, err) = m.h.run(&["diff"]);
    assert!(
        !out.contains("host-only") && !err.contains("host-only"),
        "{out}{err}"
    );
    assert!(!ok, "diff read through the symlink:\n{out}");
    assert!(err.contains("usr/etc") && err.contains("symlink"), "{err}");
    assert_eq!(listing(DIR), before, "the host's {DIR} changed");
    let _ = std::fs::remove_dir_all(DIR);
}

#[test]
fn the_hostile_harness_limits_every_run_and_catches_what_it_must() {
    use std::process::Command;
    let g = hostile::Guard::new();
    // The limits reach the binary: 512 MiB of address space, a time limit.
    let out = g
        .command(Path::new("/bin/sh"))
        .args(["-c", "ulimit -v"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "524288");
    let status = |code: &str| {
        Command::new("sh")
            .args(["-c", &format!("exit {code}")])
            .status()
            .unwrap()
    };
    let caught = |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
    g.check("ok", status("0"), b"", b"");
    g.check("bad input", status("1"), b"", b"error: x");
    assert!(caught(&|| g.check("timeout", status("124"), b"", b"")));
    assert!(caught(&|| g.check("crash", status("134"), b"", b"")));
    g.secret(Some("alice"), "pw-1234");
    assert!(caught(&|| g.check(
        "leak",
        status("1"),
        b"",
        b"error: pw-1234"
    )));
    assert!(caught(&|| g.check(
        "leak",
        status("0"),
        b"YWxpY2U6cHctMTIzNA==",
        b""
    )));
}
