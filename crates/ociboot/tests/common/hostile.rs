//! The harness of the hostile-input tests (issue 9): every run of the binary under a memory
//! limit (`prlimit --as`, 512 MiB) and a time limit (`timeout`), its exit status 0 or 1 (never a
//! crash, a kill or a timeout), every message it prints checked for the credentials the test
//! set up, and a canary directory outside every sysroot hashed when the test starts and again
//! when it ends.
//!
//! A test opts in with [`Host::hostile`](super::Host::hostile) (or `Machine::hostile`); the
//! host's commands then go through [`Guard::command`] and [`Guard::check`], and the guard's
//! drop compares the canary.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Mutex;

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Address space a run may use: 512 MiB.
pub const MEMORY_LIMIT: u64 = 512 << 20;
/// Seconds a run may take before it is stopped (and the test fails).
pub const TIME_LIMIT: u64 = 120;
/// The shared canary: outside every sysroot, made once with fixed content, never written by
/// a test. Hostile images may point at `/tmp/ociboot-canary-*`; this one is always there.
pub const CANARY: &str = "/tmp/ociboot-canary-shared";

/// What makes a run hostile-safe; dropped at the end of the test, it checks the canary.
pub struct Guard {
    canary: PathBuf,
    before: String,
    secrets: Mutex<Vec<String>>,
}

/// Make the shared canary if it is not there: files, a directory, a symlink, an odd mode.
/// Built beside it and renamed into place, so parallel tests see it whole or not at all.
fn ensure_canary(dir: &Path) {
    if dir.is_dir() {
        return;
    }
    let parent = dir.parent().unwrap();
    let tmp = tempfile::Builder::new()
        .prefix(".ociboot-canary-shared.tmp")
        .tempdir_in(parent)
        .unwrap()
        .keep();
    std::fs::create_dir_all(tmp.join("etc/app")).unwrap();
    std::fs::write(tmp.join("secret"), "the host's secret\n").unwrap();
    std::fs::write(tmp.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(tmp.join("etc/app/config"), "host config\n").unwrap();
    std::os::unix::fs::symlink("../secret", tmp.join("etc/link")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    if std::fs::rename(&tmp, dir).is_err() {
        // Another test made it first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
}

/// SHA-256 over every path under `dir` (not followed): name, type, mode, owner, size,
/// modification time, content or link target.
pub fn hash_tree(dir: &Path) -> String {
    let mut h = Sha256::new();
    let mut todo = vec![dir.to_path_buf()];
    let mut seen = Vec::new();
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let rel = p.strip_prefix(dir).unwrap().display().to_string();
        let mut line = format!(
            "{rel}\0{:o}\0{}:{}\0{}\0{}\0",
            m.mode(),
            m.uid(),
            m.gid(),
            m.len(),
            m.mtime()
        )
        .into_bytes();
        if m.file_type().is_symlink() {
            line.extend(
                std::fs::read_link(&p)
                    .unwrap()
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        } else if m.is_file() {
            line.extend(std::fs::read(&p).unwrap());
        } else if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
        seen.push(line);
    }
    seen.sort();
    for l in seen {
        h.update((l.len() as u64).to_le_bytes());
        h.update(l);
    }
    format!("{:x}", h.finalize())
}

impl Guard {
    /// Make (once) and hash the canary.
    pub fn new() -> Guard {
        let canary = PathBuf::from(CANARY);
        ensure_canary(&canary);
        Guard {
            before: hash_tree(&canary),
            canary,
            secrets: Mutex::new(Vec::new()),
        }
    }

    /// A credential no message may show; with `user`, also `user:pass` and its base64.
    pub fn secret(&self, user: Option<&str>, pass: &str) {
        let mut s = self.secrets.lock().unwrap();
        s.push(pass.to_string());
        if let Some(u) = user {
            let pair = format!("{u}:{pass}");
            s.push(base64::engine::general_purpose::STANDARD.encode(&pair));
            s.push(pair);
        }
    }

    /// `bin` run under the memory and time limits.
    pub fn command(&self, bin: &Path) -> Command {
        let mut c = Command::new("prlimit");
        c.arg(format!("--as={MEMORY_LIMIT}"))
            .arg("--")
            .arg("timeout")
            .arg("--kill-after=5")
            .arg(TIME_LIMIT.to_string())
            .arg(bin);
        c
    }

    /// Check what a run left: exit status 0 or 1 (bad input is status 1; a crash, the
    /// memory limit or the time limit is a failure of the test), no credential in its output.
    pub fn check(&self, what: &str, status: ExitStatus, stdout: &[u8], stderr: &[u8]) {
        let out = String::from_utf8_lossy(stdout);
        let err = String::from_utf8_lossy(stderr);
        match (status.code(), status.signal()) {
            (Some(0 | 1), _) => {}
            (Some(124 | 137), _) => panic!(
                "{what}: stopped after the time limit of {TIME_LIMIT} s\nstdout: {out}\nstderr: {err}"
            ),
            (code, signal) => panic!(
                "{what}: exit {code:?}, signal {signal:?} (a crash, or over the memory limit of \
                 {MEMORY_LIMIT} bytes)\nstdout: {out}\nstderr: {err}"
            ),
        }
        for s in self.secrets.lock().unwrap().iter() {
            assert!(
                !out.contains(s.as_str()) && !err.contains(s.as_str()),
                "{what}: a credential in the output ({s:?}):\nstdout: {out}\nstderr: {err}"
            );
        }
    }
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        assert_eq!(
            hash_tree(&self.canary),
            self.before,
            "the canary {} outside the sysroot changed during the test",
            self.canary.display()
        );
    }
}
