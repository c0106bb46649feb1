//! Pulls that would hold or take what is not theirs. A registry that drip-feeds a layer is cut
//! off by the minimum rate, naming the registry and the blob, and while it drips `status`,
//! `image list`, `finalize-staged` and `rollback` answer at once (only another writer of the store waits, and it
//! says for whom). Layers bigger than the disk are refused before the download (the manifest's
//! sizes) or while unpacking (a decompression bomb), before the filesystem drops under the
//! margin, leaving nothing in the store.

mod common;
mod hostile_http;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hostile_http::*;
use sha2::Digest as _;

fn os_tag(tag: &str) -> String {
    format!("oci:{}:{tag}", os_layout().display())
}

/// The layers of the os layout's image `tag`.
fn layers_of(tag: &str) -> BTreeSet<String> {
    let dir = os_layout();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    let digest = m["digest"].as_str().unwrap();
    let man: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap(),
    )
    .unwrap();
    man["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The images of the os layout as a registry (repository `os/slow`, plain HTTP); layer blobs
/// are drip-fed, one byte per `pause`.
fn drip_registry(pause: Duration) -> Canned {
    let dir = os_layout();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let blobs = dir.join("blobs/sha256");
    let mut tags = BTreeMap::new();
    let mut layers = BTreeSet::new();
    for m in index["manifests"].as_array().unwrap() {
        let digest = m["digest"].as_str().unwrap().to_string();
        if let Some(t) = m["annotations"]["org.opencontainers.image.ref.name"].as_str() {
            tags.insert(t.to_string(), digest.clone());
        }
        let man: serde_json::Value =
            serde_json::from_slice(&std::fs::read(blobs.join(&digest[7..])).unwrap()).unwrap();
        for l in man["layers"].as_array().unwrap() {
            layers.insert(l["digest"].as_str().unwrap().to_string());
        }
    }
    let path_of = |req: &Seen| req.line.split(' ').nth(1).unwrap_or("").to_string();
    serve_paced(
        "localhost",
        move |req| {
            let path = path_of(req);
            if path == "/v2/" {
                return (200, vec![], b"{}".to_vec());
            }
            let found = path.strip_prefix("/v2/os/slow/").and_then(|rest| {
                let (kind, name) = rest.split_once('/')?;
                let digest = match kind {
                    "manifests" => tags.get(name).cloned().unwrap_or(name.to_string()),
                    _ => name.to_string(),
                };
                let bytes = std::fs::read(blobs.join(digest.strip_prefix("sha256:")?)).ok()?;
                let mut headers = vec![("Docker-Content-Digest".to_string(), digest)];
                if kind == "manifests" {
                    headers.push((
                        "Content-Type".into(),
                        "application/vnd.oci.image.manifest.v1+json".into(),
                    ));
                }
                Some((200, headers, bytes))
            });
            found.unwrap_or((404, vec![], b"{}".to_vec()))
        },
        move |req, _| {
            let path = path_of(req);
            layers
                .iter()
                .any(|l| path.ends_with(l.as_str()))
                .then_some(pause)
        },
    )
}

/// Run `cmd`; it must finish within `secs` seconds (it is killed otherwise).
fn run_within(cmd: &mut Command, secs: u64) -> Output {
    let t = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} still running after {secs} s (it waits for the download); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Booted v2 with v1 as the rollback deployment.
fn booted_v2_with_rollback(name: &str) -> Machine {
    let m = Machine::hostile(name);
    m.install_booted(&os_tag("v1"));
    m.ok(&["switch", "--transport", "oci", &os_tag("v2")[4..]]);
    m.ok(&["finalize-staged"]);
    m.reboot();
    m
}

#[test]
fn a_drip_fed_layer_is_cut_off_and_nothing_but_a_writer_waits_for_it() {
    let reg = drip_registry(Duration::from_millis(200));
    let mut m = booted_v2_with_rollback("drip");
    m.h.insecure(&reg.host);
    m.h.env
        .push(("OCIBOOT_REGISTRY_MIN_RATE".into(), "1000".into()));
    m.h.env
        .push(("OCIBOOT_REGISTRY_RATE_WINDOW".into(), "8".into()));
    let refs_before = m.h.store_files("refs");
    let default_before = m.default_entry();

    // The layer v3 has and v2 (in the store) has not.
    let new_layer = layers_of("v3")
        .difference(&layers_of("v2"))
        .next()
        .unwrap()
        .clone();
    let target = format!("{}/os/slow:v3", reg.host);
    let t0 = Instant::now();
    let switch =
        m.h.cmd()
            .args(["switch", &target])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    // Until the new layer is being dripped.
    while !reg
        .requests()
        .iter()
        .any(|r| r.line.contains(&format!("/blobs/{new_layer}")))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{:?}",
            reg.requests()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Readers and the deployments' writers do not wait for it.
    let st = run_within(m.h.cmd().args(["status", "--json"]), 5);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let list = run_within(m.h.cmd().args(["image", "list"]), 5);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let fin = run_within(m.h.cmd().arg("finalize-staged"), 5);
    assert!(
        fin.status.success(),
        "{}",
        String::from_utf8_lossy(&fin.stderr)
    );
    let rb = run_within(m.h.cmd().arg("rollback"), 5);
    assert!(
        rb.status.success(),
        "{}",
        String::from_utf8_lossy(&rb.stderr)
    );
    assert_ne!(m.default_entry(), default_before, "the rollback is queued");

    // Another writer of the store waits, and says for whom.
    let mut pull =
        m.h.cmd()
            .args(["image", "pull", &os_tag("v1")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let mut lines = std::io::BufReader::new(pull.stderr.take().unwrap()).lines();
    let waiting = lines.next().unwrap().unwrap();
    assert!(
        waiting.contains("Waiting for the store lock, held by pid") && waiting.contains("(switch)"),
        "{waiting}"
    );

    // The drip is cut off after a window, naming the registry and the blob.
    let out = switch.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("too slow")
            && err.contains(&reg.host)
            && err.contains(&format!("blob {new_layer}")),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(40), "{:?}", t0.elapsed());
    assert!(pull.wait().unwrap().success());
    assert_eq!(m.h.store_files("refs"), refs_before);
    assert!(m.status()["status"]["staged"].is_null());
    m.h.fsck();
}

/// An OCI layout at `dir` with one single-layer image per `(tag, layer tar, gzip it)`.
fn layout(dir: &Path, images: &[(&str, PathBuf, bool)]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let hex = format!("{:x}", sha2::Sha256::digest(data));
        std::fs::write(blobs.join(&hex), data).unwrap();
        (format!("sha256:{hex}"), data.len())
    };
    let mut manifests = Vec::new();
    for (tag, tar, gzip) in images {
        let raw = std::fs::read(tar).unwrap();
        let diff_id = format!("sha256:{:x}", sha2::Sha256::digest(&raw));
        let (layer, media) = if *gzip {
            let out = sh(Command::new("gzip").args(["-1", "-n", "-c"]).arg(tar));
            (
                put(&out.stdout),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        } else {
            (put(&raw), "application/vnd.oci.image.layer.v1.tar")
        };
        drop(raw);
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let config = put(config.to_string().as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config.0, "size": config.1},
            "layers": [{"mediaType": media, "digest": layer.0, "size": layer.1}],
        });
        let manifest = put(manifest.to_string().as_bytes());
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest.0, "size": manifest.1,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    dir.display().to_string()
}

/// A tar of one file `name` holding `size` bytes from `source` (/dev/zero, /dev/urandom).
fn one_file_tar(dir: &Path, name: &str, source: &str, size_mib: u64) -> PathBuf {
    let src = dir.join(format!("{name}.d"));
    std::fs::create_dir_all(&src).unwrap();
    sh(Command::new("dd")
        .arg(format!("if={source}"))
        .arg(format!("of={}", src.join(name).display()))
        .args(["bs=1M", &format!("count={size_mib}"), "status=none"]));
    let tar = dir.join(format!("{name}.tar"));
    sh(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg(name));
    std::fs::remove_dir_all(&src).unwrap();
    tar
}

/// A tmpfs mounted over a directory, unmounted when dropped.
struct Tmpfs(PathBuf);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(p: &Path) -> u64 {
    let st = rustix::fs::statvfs(p).unwrap();
    st.f_bavail * st.f_frsize
}

#[test]
fn layers_bigger_than_the_disk_are_refused_before_it_fills_and_leave_nothing() {
    let mut h = Host::hostile("disk-full");
    let work = h.path("work");
    let l = layout(
        &h.path("layout"),
        &[
            (
                "small",
                one_file_tar(&work, "small", "/dev/urandom", 1),
                true,
            ),
            // 28 MiB that do not compress: the manifest says so before any download.
            ("big", one_file_tar(&work, "big", "/dev/urandom", 28), false),
            // 96 MiB of zeros in a ~100 KiB blob: only unpacking shows it.
            ("bomb", one_file_tar(&work, "bomb", "/dev/zero", 96), true),
        ],
    );
    std::fs::remove_dir_all(&work).unwrap();
    sh(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=32m", "tmpfs"])
        .arg(h.sysroot()));
    let _fs = Tmpfs(h.sysroot());
    h.env.push(("OCIBOOT_MIN_FREE_SPACE".into(), "8M".into()));

    h.ok(&["image", "pull", &format!("oci:{l}:small")]);
    let snapshot = |h: &Host| -> Vec<Vec<PathBuf>> {
        ["objects", "layers", "images", "refs", "tmp"]
            .iter()
            .map(|s| h.store_files(s))
            .collect()
    };
    let before = snapshot(&h);
    let free_before = free_bytes(&h.sysroot());
    for (tag, want) in [("big", "need at least"), ("bomb", "unpacked so far")] {
        let r = format!("oci:{l}:{tag}");
        let out = h.cmd().args(["image", "pull", &r]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{tag}: {err}");
        assert!(
            err.contains("not enough disk space") && err.contains(want) && err.contains(&r),
            "{tag}: {err}"
        );
        assert!(
            err.contains("bytes free") && err.contains("must stay free"),
            "{err}"
        );
        if tag == "bomb" {
            assert!(err.contains("layer sha256:"), "{err}");
        }
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1);
        assert_eq!(snapshot(&h), before, "{tag}: the store changed");
        let free = free_bytes(&h.sysroot());
        assert!(
            free + (1 << 20) >= free_before,
            "{tag}: {free} < {free_before}"
        );
    }
    h.fsck();
}

#[test]
fn the_store_is_root_only_and_an_older_open_store_is_closed() {
    use std::os::unix::fs::PermissionsExt;
    let h = Host::hostile("private-store");
    h.ok(&["image", "pull", &os_tag("v1")]);
    let store = h.sysroot().join("ociboot/store");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&store), 0o700);
    // What an older ociboot left: a store anyone could enter. The next writer closes it.
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    h.ok(&["image", "prune"]);
    assert_eq!(mode(&store), 0o700);
}
