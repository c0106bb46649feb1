//! Real operating-system images: a Debian bookworm root filesystem made by mmdebstrap, and an
//! image built from a Containerfile by buildah. Slower than the other tests (the Debian image
//! is built once per target directory).

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The Debian layout (tag `bookworm`), built once and cached in the target dir.
fn debian() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("debian");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    sh(Command::new("bash")
        .arg(repo_root().join("tests/fixtures/debian-image.sh"))
        .arg(&dir)
        .arg("bookworm"));
    dir
}

#[test]
fn debian_rootfs_through_a_registry_matches_umoci() {
    let deb = debian();
    let reg = Registry::start(None);
    reg.push(
        &format!("oci:{}:bookworm", deb.display()),
        "debian:bookworm",
        None,
    );
    let h = Host::new("debian");
    h.insecure(&reg.host());
    let r = format!("{}/debian:bookworm", reg.host());
    let t = Instant::now();
    h.ok(&["image", "pull", &r]);
    eprintln!("pulled Debian bookworm in {:?}", t.elapsed());
    let dest = h.path("rootfs");
    h.ok(&["image", "unpack", &r, dest.to_str().unwrap()]);
    let oracle = h.path("umoci");
    umoci_unpack(&deb, "bookworm", &oracle);
    assert_same_tree(&dest, &oracle);
    assert!(dest.join("usr/bin/apt").is_file());
    // setuid programs keep their bit
    let su = std::fs::metadata(dest.join("usr/bin/su")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&su.permissions()) & 0o4000,
        0o4000
    );
    h.fsck();
}

/// kill -9 at several moments of a real pull: the store stays consistent and a second pull
/// completes it.
#[test]
fn killed_pulls_recover() {
    let deb = debian();
    let r = format!("oci:{}:bookworm", deb.display());
    for delay_ms in [150u64, 600, 1500] {
        let h = Host::new(&format!("kill-{delay_ms}"));
        let mut child = h
            .cmd()
            .args(["image", "pull", &r])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        eprintln!("killed after {delay_ms} ms: {status}");
        h.fsck();
        h.ok(&["image", "pull", &r]);
        h.fsck();
        assert!(h.store_files("tmp").is_empty());
        let list = h.ok(&["image", "list"]);
        assert!(list.contains("bookworm"), "{list}");
    }
}

#[test]
fn buildah_containerfile_image() {
    let out = scratch("buildah");
    let layout = out.path().join("layout");
    sh(Command::new("bash")
        .arg(repo_root().join("tests/fixtures/buildah-image.sh"))
        .arg(&layout)
        .arg("app"));
    let h = Host::new("buildah");
    let r = format!("oci:{}:app", layout.display());
    let dest = h.path("rootfs");
    h.ok(&["image", "unpack", &r, dest.to_str().unwrap()]);
    let oracle = h.path("umoci");
    umoci_unpack(&layout, "app", &oracle);
    assert_same_tree(&dest, &oracle);
    assert_eq!(
        std::fs::read_to_string(dest.join("etc/app/conf")).unwrap(),
        "hello\n"
    );
    assert!(
        !dest.join("some/file").exists(),
        "buildah's whiteout was not applied"
    );
    let list = h.ok(&["image", "list", "--format", "json"]);
    assert!(list.contains("\"version\""), "{list}");
}

/// The VM test OS (tests/vm/build-os.sh: Debian with kernel, systemd, systemd-boot; v2 adds
/// `less` and a kargs.d file) through the deployment life on a directory sysroot: the same
/// content issue 4 boots in a VM.
#[test]
fn vm_os_image_install_switch_rollback() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vm-os");
    {
        let lock = std::fs::File::create(out.with_extension("lock")).unwrap();
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
        sh(Command::new("bash")
            .arg(repo_root().join("tests/vm/build-os.sh"))
            .arg(&out));
    }
    let m = Machine::new("vm-os");
    let h = &m.h;
    let root = m.root();
    let boot = |_: &Host| m.reboot();
    let status = |_: &Host| m.status();
    h.ok(&[
        "install",
        "to-filesystem",
        "--source-imgref",
        &format!("oci:{}:v1", out.display()),
        "--root-mount-spec",
        "LABEL=root",
        "--bootloader",
        "none",
        root.to_str().unwrap(),
    ]);
    let opts = boot(h);
    assert!(
        opts.contains("console=ttyS0,115200") && opts.contains("root=LABEL=root"),
        "{opts}"
    );
    let s = status(h);
    let v1root = PathBuf::from(s["status"]["booted"]["ociboot"]["root"].as_str().unwrap());
    assert!(v1root.join("usr/lib/systemd/systemd").exists());
    assert!(v1root.join("etc/systemd").is_dir() && v1root.join("usr/etc/systemd").is_dir());
    assert!(!v1root.join("usr/bin/less").exists());
    std::fs::write(v1root.join("etc/motd"), "local motd\n").unwrap();
    h.ok(&[
        "switch",
        "--transport",
        "oci",
        &format!("{}:v2", out.display()),
    ]);
    h.ok(&["finalize-staged"]);
    let opts = boot(h);
    assert!(
        opts.contains("ociboot.v2=1") && opts.contains("console=ttyS0,115200"),
        "{opts}"
    );
    let s = status(h);
    assert_eq!(s["status"]["booted"]["image"]["version"], "2");
    let v2root = PathBuf::from(s["status"]["booted"]["ociboot"]["root"].as_str().unwrap());
    assert!(v2root.join("usr/bin/less").is_file());
    assert_eq!(
        std::fs::read_to_string(v2root.join("etc/motd")).unwrap(),
        "local motd\n"
    );
    // The kernel and initramfs the entries name are the image's own.
    let kernels: Vec<_> = std::fs::read_dir(root.join("boot/ociboot"))
        .unwrap()
        .collect();
    assert_eq!(kernels.len(), 1, "v1 and v2 share one kernel");
    h.ok(&["rollback"]);
    boot(h);
    assert_eq!(status(h)["status"]["booted"]["image"]["version"], "1");
    h.ok(&["image", "fsck", "--contents"]);
}
