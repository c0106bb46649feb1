//! Real operating-system images: a Debian bookworm root filesystem made by mmdebstrap, and an
//! image built from a Containerfile by buildah. Slower than the other tests (the Debian image
//! is built once per target directory).

mod common;

use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};
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

/// The blob of the (first) layer of a layout's tag.
fn layer_blob(layout: &Path, tag: &str) -> PathBuf {
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    };
    let blob = |d: &serde_json::Value| {
        let hex = d.as_str().unwrap().strip_prefix("sha256:").unwrap();
        layout.join("blobs/sha256").join(hex)
    };
    let index = read(layout.join("index.json"));
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.display()));
    blob(&read(blob(&m["digest"]))["layers"][0]["digest"])
}

/// A copy of a layout (blobs hardlinked) whose blob `fifo` is a named pipe instead.
fn layout_with_fifo(from: &Path, to: &Path, fifo: &Path) -> PathBuf {
    std::fs::create_dir_all(to.join("blobs/sha256")).unwrap();
    for f in ["index.json", "oci-layout"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    for e in std::fs::read_dir(from.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let dest = to.join("blobs/sha256").join(e.file_name());
        if e.path() != fifo {
            std::fs::hard_link(e.path(), &dest).unwrap();
        } else {
            sh(Command::new("mkfifo").arg(&dest));
        }
    }
    to.join("blobs/sha256").join(fifo.file_name().unwrap())
}

/// Whether every thread of a process sleeps (none runs or waits for the disk).
fn all_threads_sleep(pid: u32) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks.into_iter().all(|t| {
        let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
        state == Some("S")
    })
}

/// Feed the first `n` bytes of `blob` to the pull reading the named pipe `fifo`, then wait
/// until it has read them all and done all it can with them: the pipe is empty and every
/// thread sleeps, three times in a row 50 ms apart.
fn feed_and_settle(child: &mut std::process::Child, fifo: &Path, blob: &Path, n: u64) {
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = Instant::now() + Duration::from_secs(120);
    let waiting = |what: &str, child: &mut std::process::Child| {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before {what}"
        );
        assert!(Instant::now() < deadline, "the pull never {what}");
        std::thread::sleep(Duration::from_millis(10));
    };
    // Opening a pipe to write without blocking fails until its reader has opened it.
    let nonblocking = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(fifo)
        {
            Ok(f) => break f,
            Err(_) => waiting("opened the layer", child),
        }
    };
    let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
    drop(nonblocking);
    let mut src = std::fs::File::open(blob).unwrap().take(n);
    assert_eq!(std::io::copy(&mut src, &mut pipe).unwrap(), n);
    let mut settled = 0;
    while settled < 3 {
        let idle = rustix::io::ioctl_fionread(&pipe).unwrap() == 0 && all_threads_sleep(child.id());
        settled = if idle { settled + 1 } else { 0 };
        waiting("settled", child);
        std::thread::sleep(Duration::from_millis(40));
    }
}

/// kill -9 at fixed points of a real pull: after it has taken in the first N bytes of its
/// layer (1 MiB, half, all but the last) and done all it can with them. The layer is
/// given through a named pipe, so each kill point is the same on every run. The store stays
/// consistent and a second pull of the same reference completes it.
#[test]
fn killed_pulls_recover() {
    let deb = debian();
    let blob = layer_blob(&deb, "bookworm");
    let size = std::fs::metadata(&blob).unwrap().len();
    for fed in [1 << 20, size / 2, size - 1] {
        let h = Host::new(&format!("kill-{fed}"));
        let layout = h.path("layout");
        let fifo = layout_with_fifo(&deb, &layout, &blob);
        let r = format!("oci:{}:bookworm", layout.display());
        let mut child = h
            .cmd()
            .args(["image", "pull", &r])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        feed_and_settle(&mut child, &fifo, &blob, fed);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        eprintln!(
            "killed after {fed} of {size} bytes of the layer ({status}): {} objects, {} in tmp/",
            h.store_files("objects").len(),
            h.store_files("tmp").len()
        );
        h.fsck();
        // The layer as a file again, under the same reference.
        std::fs::remove_file(&fifo).unwrap();
        std::fs::hard_link(&blob, &fifo).unwrap();
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
        // With this build of ociboot as the image's init (static, as every build of the
        // workspace is): staging refuses an image without one.
        sh(Command::new("bash")
            .arg(repo_root().join("tests/vm/build-os.sh"))
            .arg(&out)
            .arg(env!("CARGO_BIN_EXE_ociboot")));
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
