//! `ociboot image …` against real layouts, a real registry, skopeo and umoci.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn layout(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

/// Every tar case (whiteouts, opaque dirs, hardlinks across layers, xattrs, caps, setuid,
/// fifos, long names, type changes) unpacks exactly as umoci unpacks it.
#[test]
fn tricky_image_matches_umoci() {
    let h = Host::new("tricky");
    let oracle = h.path("umoci");
    umoci_unpack(&fixtures().join("tricky"), "gzip", &oracle);
    for tag in ["gzip", "zstd", "plain"] {
        let dest = h.path(&format!("rootfs-{tag}"));
        let r = format!("oci:{}:{tag}", layout("tricky"));
        h.ok(&["image", "pull", &r]);
        h.ok(&["image", "unpack", &r, dest.to_str().unwrap()]);
        assert_same_tree(&dest, &oracle);
        // A second, independent oracle: the tree the fixture generator expects (covers zstd,
        // which umoci cannot read).
        sh(Command::new("python3")
            .arg(repo_root().join("tests/fixtures/mkimages.py"))
            .arg("--verify-tree")
            .arg(&dest)
            .arg(fixtures().join("fixtures.json"))
            .args(["tricky", tag]));
    }
    // The three twins share every file object: the second and third pull wrote no content.
    let objects = h.store_files("objects").len();
    assert!(objects > 20 && objects < 40, "{objects} objects");
    h.fsck();
    let list = h.ok(&["image", "list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert!(v
        .to_string()
        .contains(&fixture_manifest_digest("tricky", "zstd")));
}

#[test]
fn registry_pull_oci_and_docker_manifests() {
    let reg = Registry::start(None);
    reg.push(
        &format!("oci:{}:gzip", layout("tricky")),
        "os/tricky:oci",
        None,
    );
    reg.push(
        &format!("oci:{}:gzip", layout("tricky")),
        "os/tricky:docker",
        Some("v2s2"),
    );
    reg.push(
        &format!("oci:{}:zstd", layout("tricky")),
        "os/tricky:zstd",
        None,
    );
    let h = Host::new("registry");
    // Without registries.conf saying so, plain HTTP is refused.
    let err = h.fails(&["image", "pull", &format!("{}/os/tricky:oci", reg.host())]);
    assert!(err.contains(&reg.host()), "{err}");
    h.insecure(&reg.host());
    let oracle = h.path("umoci");
    umoci_unpack(&fixtures().join("tricky"), "gzip", &oracle);
    for tag in ["oci", "docker", "zstd"] {
        let r = format!("docker://{}/os/tricky:{tag}", reg.host());
        let out = h.ok(&["image", "pull", &r]);
        assert!(out.contains("Pulled"), "{out}");
        let dest = h.path(&format!("rootfs-{tag}"));
        h.ok(&["image", "unpack", &r, dest.to_str().unwrap()]);
        assert_same_tree(&dest, &oracle);
    }
    let inspect = h.ok(&[
        "image",
        "inspect",
        &format!("{}/os/tricky:docker", reg.host()),
    ]);
    assert!(
        inspect.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{inspect}"
    );
    // The same image by digest.
    let d = fixture_manifest_digest("tricky", "gzip");
    let by_digest = format!("{}/os/tricky@{d}", reg.host());
    let out = h.ok(&["image", "pull", &by_digest]);
    assert!(out.contains(&d), "{out}");
    // Pulling the same thing again downloads nothing.
    let out = h.ok(&["image", "pull", &format!("{}/os/tricky:oci", reg.host())]);
    assert!(out.contains("up to date"), "{out}");
    h.fsck();
}

#[test]
fn registry_basic_auth() {
    let reg = Registry::start(Some(("alice", "s3cret")));
    reg.push(&format!("oci:{}:v1", layout("base")), "os/base:v1", None);
    let h = Host::new("auth");
    h.insecure(&reg.host());
    let r = format!("{}/os/base:v1", reg.host());
    let err = h.fails(&["image", "pull", &r]);
    assert!(
        err.contains("requires a login") || err.contains("401"),
        "{err}"
    );
    h.login(&reg.host(), "alice", "wrong");
    let err = h.fails(&["image", "pull", &r]);
    assert!(err.contains("denied") && err.contains("auth.json"), "{err}");
    h.assert_store_empty();
    h.login(&reg.host(), "alice", "s3cret");
    h.ok(&["image", "pull", &r]);
    h.fsck();
}

#[test]
fn registry_errors_are_clear_and_change_nothing() {
    let reg = Registry::start(None);
    reg.push(&format!("oci:{}:v1", layout("base")), "os/base:v1", None);
    reg.push(
        &format!("oci:{}:gzip", layout("tricky")),
        "os/tricky:gzip",
        None,
    );
    let h = Host::new("regerr");
    h.insecure(&reg.host());
    // unknown tag
    let err = h.fails(&["image", "pull", &format!("{}/os/base:nope", reg.host())]);
    assert!(
        err.contains("not found") && err.contains("os/base:nope"),
        "{err}"
    );
    // connection refused
    let err = h.fails(&["image", "pull", "127.0.0.1:1/os/base:v1"]);
    assert!(err.contains("127.0.0.1:1"), "{err}");
    // a server that accepts and never answers: bounded by the timeout
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let t = std::time::Instant::now();
    let (ok, _, err) = h.run_env(
        &["image", "pull", &format!("127.0.0.1:{port}/os/base:v1")],
        &[("OCIBOOT_REGISTRY_TIMEOUT", "2")],
    );
    assert!(!ok);
    assert!(err.contains("timed out"), "{err}");
    assert!(
        t.elapsed().as_secs() < 20,
        "timeout not bounded: {:?}",
        t.elapsed()
    );
    drop(silent);
    h.assert_store_empty();

    // A registry serving a corrupted or truncated layer blob.
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("fixtures.json")).unwrap()).unwrap();
    let layers = j["layouts"]["tricky"]["tags"]["gzip"]["layers"]
        .as_array()
        .unwrap()
        .clone();
    let last = layers.last().unwrap().as_str().unwrap();
    let blob = reg.blob_file(last);
    let good = std::fs::read(&blob).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&blob, &bad).unwrap();
    let r = format!("{}/os/tricky:gzip", reg.host());
    let err = h.fails(&["image", "pull", &r]);
    assert!(
        err.contains(last) && (err.contains("digest mismatch") || err.contains("malformed")),
        "{err}"
    );
    h.assert_store_empty();
    std::fs::write(&blob, &good[..good.len() / 2]).unwrap();
    let err = h.fails(&["image", "pull", &r]);
    assert!(err.contains(last), "{err}");
    h.assert_store_empty();
    std::fs::write(&blob, &good).unwrap();
    h.ok(&["image", "pull", &r]);
    h.fsck();
}

#[test]
fn broken_images_are_refused_and_leave_nothing() {
    let cases = [
        ("bad-digest", "digest mismatch"),
        ("bad-size", "bytes"),
        ("bad-diffid", "diff_id"),
        ("truncated", "truncated"),
        ("bad-manifest-json", "not valid JSON"),
        ("bad-config-json", "malformed image config"),
        ("unknown-mediatype", "unsupported media type"),
        ("hostile-dotdot", "'..'"),
        ("hostile-hardlink", "'..'"),
        ("hostile-hardlink-abs", "does not exist"),
    ];
    for (name, want) in cases {
        let h = Host::new(name);
        let r = format!("oci:{}:latest", layout(name));
        let dest = h.path("rootfs");
        let err = h.fails(&["image", "unpack", &r, dest.to_str().unwrap()]);
        assert!(err.contains(want), "{name}: expected {want:?} in: {err}");
        assert!(
            err.contains(&layout(name)),
            "{name}: error does not name the image: {err}"
        );
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{name}: one error line please: {err}");
        h.assert_store_empty();
        assert!(!dest.exists(), "{name}: DEST was created");
    }
}

/// Symlink escapes are confined: what a layer writes "through" a symlink lands inside the root.
#[test]
fn symlink_escapes_are_confined() {
    // The target exists on the host, so an unpacker that followed the symlink would write there.
    let target = std::path::Path::new("/tmp/ociboot-escape-target");
    std::fs::create_dir_all(target).unwrap();
    for name in ["hostile-symlink", "hostile-symlink-rel", "hostile-abs"] {
        let h = Host::new(name);
        let r = format!("oci:{}:latest", layout(name));
        let dest = h.path("rootfs");
        h.ok(&["image", "unpack", &r, dest.to_str().unwrap()]);
        assert_eq!(
            std::fs::read_dir(target).unwrap().count(),
            0,
            "{name} wrote outside the root"
        );
        match name {
            "hostile-abs" => assert!(dest.join("abs-escape").is_file()),
            _ => {
                assert!(
                    dest.join("tmp/ociboot-escape-target/pwned").is_file(),
                    "{name}"
                );
                assert!(std::fs::symlink_metadata(dest.join("evil"))
                    .unwrap()
                    .file_type()
                    .is_symlink());
            }
        }
        h.fsck();
    }
}

#[test]
fn index_picks_the_host_platform() {
    let h = Host::new("multiarch");
    let dest = h.path("rootfs");
    h.ok(&[
        "image",
        "unpack",
        &format!("oci:{}:latest", layout("multiarch")),
        dest.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(dest.join("arch")).unwrap(),
        "amd64\n"
    );
}

#[test]
fn oci_archive_transport() {
    let h = Host::new("archive");
    let archive = h.path("tricky.tar");
    sh(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:gzip", layout("tricky")))
        .arg(format!("oci-archive:{}:mytag", archive.display())));
    let r = format!("oci-archive:{}:mytag", archive.display());
    let dest = h.path("rootfs");
    h.ok(&["image", "unpack", &r, dest.to_str().unwrap()]);
    let oracle = h.path("umoci");
    umoci_unpack(&fixtures().join("tricky"), "gzip", &oracle);
    assert_same_tree(&dest, &oracle);
    let err = h.fails(&[
        "image",
        "pull",
        &format!("oci-archive:{}:other", archive.display()),
    ]);
    assert!(err.contains("mytag"), "{err}");
}

/// A second image sharing a layer downloads only its own layer and costs little disk;
/// removing one image frees what only it used.
#[test]
fn shared_layers_dedup_and_gc() {
    let reg = Registry::start(None);
    reg.push(&format!("oci:{}:v1", layout("base")), "os/base:v1", None);
    reg.push(&format!("oci:{}:v2", layout("base")), "os/base:v2", None);
    let h = Host::new("dedup");
    h.insecure(&reg.host());
    let v1 = format!("{}/os/base:v1", reg.host());
    let v2 = format!("{}/os/base:v2", reg.host());
    let out = h.ok(&["image", "pull", &v1]);
    assert!(out.contains("2 fetched, 0 already stored"), "{out}");
    let after_v1 = h.store_bytes();
    let out = h.ok(&["image", "pull", &v2]);
    assert!(out.contains("1 fetched, 1 already stored"), "{out}");
    let after_v2 = h.store_bytes();
    // v2 differs from v1 in one small layer: it may not cost more than a tenth of v1.
    assert!(
        after_v2 - after_v1 < after_v1 / 10,
        "v1 {after_v1} B, v1+v2 {after_v2} B"
    );
    let list = h.ok(&["image", "list"]);
    assert!(
        list.contains("os/base:v1") && list.contains("os/base:v2"),
        "{list}"
    );
    let out = h.ok(&["image", "rm", &v1]);
    assert!(out.contains("Removed") && out.contains("Freed"), "{out}");
    let list = h.ok(&["image", "list"]);
    assert!(
        !list.contains("os/base:v1") && list.contains("os/base:v2"),
        "{list}"
    );
    let dest = h.path("v2");
    h.ok(&["image", "unpack", &v2, dest.to_str().unwrap()]);
    h.fsck();
    h.ok(&["image", "rm", &v2]);
    let out = h.ok(&["image", "prune"]);
    assert!(out.contains("Freed"), "{out}");
    h.assert_store_empty();
}

#[test]
fn store_lock_makes_writers_wait() {
    let h = Host::new("lock");
    h.ok(&["image", "pull", &format!("oci:{}:v1", layout("base"))]);
    let lock = h.sysroot().join("ociboot/lock");
    let f = std::fs::File::open(&lock).unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let mut child = h
        .cmd()
        .args(["image", "pull", &format!("oci:{}:v2", layout("base"))])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the second writer to say it waits (no guessed delay): every line of its
    // stderr is passed on as it comes, and all of it is kept.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let line = line.unwrap();
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("Waiting for the store lock") => break,
            Ok(_) => {}
            Err(e) => panic!(
                "the second writer never said it waits for the lock ({e}); exit status: {:?}",
                child.try_wait().unwrap()
            ),
        }
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the second writer did not wait"
    );
    assert_eq!(
        h.store_files("refs").len(),
        1,
        "the second writer wrote a ref while the lock was held"
    );
    drop(f);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let err = reader.join().unwrap();
    assert!(err.contains("Waiting for the store lock"), "{err}");
    assert_eq!(h.store_files("refs").len(), 2);
}

#[test]
fn quiet_and_usage() {
    let h = Host::new("quiet");
    let (ok, out, err) = h.run(&[
        "--quiet",
        "image",
        "pull",
        &format!("oci:{}:v1", layout("base")),
    ]);
    assert!(ok && out.is_empty() && err.is_empty(), "{out}{err}");
    let err = h.fails(&["image", "pull", "containers-storage:foo"]);
    assert!(err.contains("not supported"), "{err}");
    let err = h.fails(&[
        "image",
        "unpack",
        "nothing-here-at-all.invalid/x:1",
        "/nonexistent/dest",
    ]);
    assert!(err.contains("nothing-here-at-all.invalid"), "{err}");
    let help = h.ok(&["image", "pull", "--help"]);
    assert!(help.contains("oci-archive:PATH"), "{help}");
    // man pages and completions come from the same definitions
    let man = h.path("man");
    h.ok(&["man", man.to_str().unwrap()]);
    let page = std::fs::read_to_string(man.join("ociboot-image-pull.8")).unwrap();
    assert!(
        page.contains("sysroot") && page.contains(r"oci\-archive"),
        "{page}"
    );
    let bash = h.ok(&["completion", "bash"]);
    assert!(bash.contains("unpack"), "{bash}");
}
