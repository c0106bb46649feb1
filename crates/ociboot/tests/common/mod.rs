//! Test harness shared by the integration tests: the real `ociboot` binary, fixture images
//! made by tests/fixtures/mkimages.py, a real `docker-registry` on 127.0.0.1, skopeo, umoci,
//! and a comparison of two root filesystems as a user would check them.
//!
//! `host` (a sysroot and the binary pointed at it), `machine` (a host whose bootloader the
//! test plays), `registry`, `tree` (root filesystems compared) and `source` (the workspace's
//! own Rust sources, read by the tidy and crash tests), `hostile` (limits, credential checks
//! and a canary for the hostile-input tests); everything is re-exported here.

#![allow(dead_code, unused_imports)]

pub mod host;
pub mod hostile;
pub mod machine;
pub mod registry;
pub mod source;
pub mod tree;
pub mod vm;

pub use host::*;
pub use machine::*;
pub use registry::*;
pub use tree::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A scratch directory under the target dir, removed on drop.
pub fn scratch(name: &str) -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(base).unwrap();
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(base)
        .unwrap()
}

/// Run a command and insist it succeeds.
pub fn sh(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Output of a fixture script (`python3 tests/fixtures/SCRIPT DIR`), made once per target dir
/// and again when the script changes; a lock file lets parallel test binaries share it.
pub fn cached_fixture(name: &str, script: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let script = repo_root().join("tests/fixtures").join(script);
    let stamp = dir.join(".done");
    let script_mtime = std::fs::metadata(&script).unwrap().modified().unwrap();
    let fresh = std::fs::metadata(&stamp).is_ok_and(|m| m.modified().unwrap() >= script_mtime);
    if !fresh {
        sh(Command::new("python3").arg(&script).arg(&dir));
        std::fs::write(&stamp, b"").unwrap();
    }
    dir
}

/// The layouts of tests/fixtures/mkimages.py.
pub fn fixtures() -> PathBuf {
    cached_fixture("fixtures", "mkimages.py")
}

/// The OS images (v1, v2, v3, conflict) of tests/fixtures/mkos.py.
pub fn os_layout() -> PathBuf {
    cached_fixture("os", "mkos.py")
}

/// The digest fixtures.json gives for a layout's tag.
pub fn fixture_manifest_digest(layout: &str, tag: &str) -> String {
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("fixtures.json")).unwrap()).unwrap();
    j["layouts"][layout]["tags"][tag]["manifest"]
        .as_str()
        .unwrap()
        .to_string()
}
