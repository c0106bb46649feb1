//! Layers beyond the store's resource limits (layout `limits` of tests/fixtures/mkimages.py):
//! paths too deep or too long (also once a symlink is resolved), names over NAME_MAX, GNU long
//! names and PAX headers claiming GiBs, whiteouts naming their own directory. Each is refused
//! by the real binary with exit status 1 and one error line naming the image, the layer and the
//! entry, and leaves nothing in the store or at the destination; layers just within the limits
//! pull and unpack. And the store's lock file is private and names no arguments.

mod common;

use common::*;

use std::os::unix::fs::PermissionsExt;

fn layout() -> String {
    fixtures().join("limits").display().to_string()
}

/// The tags of the `limits` layout: (tag, the error expected, or None for a good image).
fn cases() -> Vec<(String, Option<String>)> {
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("fixtures.json")).unwrap()).unwrap();
    let tags = j["layouts"]["limits"]["tags"].as_object().unwrap();
    tags.iter()
        .map(|(tag, t)| (tag.clone(), t["error"].as_str().map(str::to_string)))
        .collect()
}

#[test]
fn layers_beyond_the_limits_are_refused_and_leave_nothing() {
    let refused: Vec<_> = cases()
        .into_iter()
        .filter_map(|(tag, want)| want.map(|w| (tag, w)))
        .collect();
    assert!(refused.len() >= 12, "{refused:?}");
    for (tag, want) in refused {
        let h = Host::hostile(&format!("limit-{tag}"));
        let r = format!("oci:{}:{tag}", layout());
        let dest = h.path("rootfs");
        for args in [
            vec!["image", "pull", &r],
            vec!["image", "unpack", &r, dest.to_str().unwrap()],
        ] {
            let out = h.output(h.cmd().args(&args));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{tag} {args:?}: {err}");
            assert!(err.contains(&want), "{tag}: expected {want:?} in: {err}");
            assert!(
                err.contains(&r) && err.contains("layer sha256:"),
                "{tag}: the error does not name the image and the layer: {err}"
            );
            let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(errors.len(), 1, "{tag}: one error line please: {err}");
            assert!(err.len() < 4096, "{tag}: a short error please: {err}");
            h.assert_store_empty();
            assert!(!dest.exists(), "{tag}: the destination was written");
        }
    }
}

#[test]
fn layers_just_within_the_limits_pull_and_unpack() {
    let good: Vec<String> = cases()
        .into_iter()
        .filter(|(_, want)| want.is_none())
        .map(|(tag, _)| tag)
        .collect();
    assert_eq!(good, ["ok-deep", "ok-name"]);
    let h = Host::hostile("limit-ok");
    for tag in &good {
        let r = format!("oci:{}:{tag}", layout());
        let dest = h.path(tag);
        h.ok(&["image", "pull", &r]);
        h.ok(&["image", "unpack", &r, dest.to_str().unwrap()]);
    }
    let deepest: Vec<&str> = std::iter::repeat_n("d", 255).chain(["f"]).collect();
    let deepest = h.path("ok-deep").join(deepest.join("/"));
    assert_eq!(std::fs::read(deepest).unwrap(), b"deepest\n");
    let longest = h.path("ok-name").join("n".repeat(255));
    assert_eq!(std::fs::read(longest).unwrap(), b"longest name\n");
    h.fsck();
}

#[test]
fn the_store_lock_is_private_and_names_no_arguments() {
    let h = Host::hostile("lock-mode");
    let r = format!("oci:{}:ok-name", layout());
    h.ok(&["image", "pull", &r]);
    let lock = h.sysroot().join("ociboot/lock");
    let mode = std::fs::metadata(&lock).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "lock mode {mode:o}");
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(
        text.starts_with("pid ") && !text.contains("oci:") && !text.contains("--sysroot"),
        "{text}"
    );
    // A lock file left readable by anyone by an older ociboot is made private (by whoever
    // takes the lock next; `image list` reads without it).
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    h.ok(&["image", "fsck"]);
    let mode = std::fs::metadata(&lock).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "lock mode {mode:o}");
}
