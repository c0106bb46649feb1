//! A sysroot and the `ociboot` binary pointed at it, with no registries.conf or auth file of
//! the machine leaking in.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::hostile::Guard;
use super::scratch;

/// A sysroot and the `ociboot` binary pointed at it.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    /// For hostile-input tests: limits on every run, output checks, the canary.
    pub guard: Option<Guard>,
}

impl Host {
    /// A host for a hostile-input test: every run of the binary under the memory and time
    /// limits, its output checked for credentials, the canary compared when the host goes.
    pub fn hostile(name: &str) -> Host {
        let mut h = Host::new(name);
        h.guard = Some(Guard::new());
        h
    }

    pub fn new(name: &str) -> Host {
        let dir = scratch(name);
        std::fs::create_dir(dir.path().join("sysroot")).unwrap();
        // No system registries.conf or auth files leak in.
        let conf = dir.path().join("registries.conf");
        std::fs::write(&conf, "").unwrap();
        Host {
            env: vec![
                (
                    "CONTAINERS_REGISTRIES_CONF".into(),
                    conf.display().to_string(),
                ),
                (
                    "REGISTRY_AUTH_FILE".into(),
                    dir.path().join("auth.json").display().to_string(),
                ),
                ("HOME".into(), dir.path().display().to_string()),
                (
                    "XDG_CONFIG_HOME".into(),
                    dir.path().join("config").display().to_string(),
                ),
            ],
            dir,
            guard: None,
        }
    }

    pub fn sysroot(&self) -> PathBuf {
        self.dir.path().join("sysroot")
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Mark a registry insecure (plain HTTP) in this host's registries.conf.
    pub fn insecure(&self, location: &str) {
        let conf = self.path("registries.conf");
        let mut s = std::fs::read_to_string(&conf).unwrap();
        s.push_str(&format!(
            "[[registry]]\nlocation = \"{location}\"\ninsecure = true\n"
        ));
        std::fs::write(conf, s).unwrap();
    }

    pub fn login(&self, registry: &str, user: &str, pass: &str) {
        use base64::Engine as _;
        self.secret(Some(user), pass);
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        std::fs::write(
            self.path("auth.json"),
            format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
    }

    /// A credential no output may show (checked on a hostile host's runs).
    pub fn secret(&self, user: Option<&str>, pass: &str) {
        if let Some(g) = &self.guard {
            g.secret(user, pass);
        }
    }

    /// The binary pointed at this sysroot; on a hostile host, under the limits (run it with
    /// [`Host::output`] so its status and output are checked).
    pub fn cmd(&self) -> Command {
        let bin = Path::new(env!("CARGO_BIN_EXE_ociboot"));
        let mut c = match &self.guard {
            Some(g) => g.command(bin),
            None => Command::new(bin),
        };
        c.arg("--sysroot").arg(self.sysroot());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.env_remove("OCIBOOT_FAILPOINT");
        c
    }

    /// Run ociboot with args; return (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        let mut c = self.cmd();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = self.output(&mut c);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Run `c` (from [`Host::cmd`]); on a hostile host, check its status and output.
    pub fn output(&self, c: &mut Command) -> std::process::Output {
        let out = c.output().unwrap();
        if let Some(g) = &self.guard {
            g.check(&format!("{c:?}"), out.status, &out.stdout, &out.stderr);
        }
        out
    }

    /// Run and insist on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "ociboot {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }

    /// Run and insist on failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(
            !ok,
            "ociboot {args:?} should have failed:\nstdout: {out}\nstderr: {err}"
        );
        err
    }

    pub fn store(&self) -> PathBuf {
        self.sysroot().join("ociboot/store")
    }

    /// Files in a store subdirectory (recursively).
    pub fn store_files(&self, sub: &str) -> Vec<PathBuf> {
        let mut v = Vec::new();
        fn rec(p: &Path, v: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    let t = e.file_type().unwrap();
                    if t.is_dir() {
                        rec(&e.path(), v);
                    } else {
                        v.push(e.path());
                    }
                }
            }
        }
        rec(&self.store().join(sub), &mut v);
        v
    }

    /// Assert the store holds nothing at all of any image.
    pub fn assert_store_empty(&self) {
        for sub in ["objects", "layers", "images", "refs", "tmp"] {
            let f = self.store_files(sub);
            assert!(f.is_empty(), "store/{sub} should be empty, has {f:?}");
        }
    }

    pub fn fsck(&self) {
        let out = self.ok(&["image", "fsck", "--contents"]);
        assert!(out.contains("consistent"), "{out}");
    }

    /// Bytes used by the store (allocated blocks, each inode once).
    pub fn store_bytes(&self) -> u64 {
        du(&self.store())
    }
}

/// Disk usage of a tree, counting each inode once.
pub fn du(p: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    fn rec(p: &Path, seen: &mut std::collections::HashSet<(u64, u64)>, total: &mut u64) {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return;
        };
        if seen.insert((m.dev(), m.ino())) {
            *total += m.blocks() * 512;
        }
        if m.is_dir() {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                rec(&e.path(), seen, total);
            }
        }
    }
    rec(p, &mut seen, &mut total);
    total
}
