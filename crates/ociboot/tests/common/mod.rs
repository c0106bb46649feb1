//! Test harness shared by the integration tests: the real `ociboot` binary, fixture images
//! made by tests/fixtures/mkimages.py, a real `docker-registry` on 127.0.0.1, skopeo, umoci,
//! and a comparison of two root filesystems as a user would check them.

#![allow(dead_code)]

pub mod vm;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// A sysroot and the `ociboot` binary pointed at it.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Host {
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
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        std::fs::write(
            self.path("auth.json"),
            format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ociboot"));
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
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
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

/// A `docker-registry` (distribution) serving on 127.0.0.1, stopped on drop.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
    pub auth: Option<(String, String)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Registry {
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
        let dir = scratch("registry");
        let port = free_port();
        let mut conf = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((u, p)) = auth {
            let out = sh(Command::new("htpasswd").args(["-Bbn", u, p]));
            std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
            conf.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: ociboot-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), conf).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let start = Instant::now();
        loop {
            if let Some(code) = http_status(port, "/v2/") {
                assert!(code == 200 || code == 401, "registry answered {code}");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            dir,
            port,
            child,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Push a layout image with skopeo (`format`: None keeps OCI, Some("v2s2") for Docker).
    pub fn push(&self, src: &str, repo_tag: &str, format: Option<&str>) {
        let mut c = Command::new("skopeo");
        c.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some((u, p)) = &self.auth {
            c.arg(format!("--dest-creds={u}:{p}"));
        }
        if let Some(f) = format {
            c.args(["--format", f]);
        }
        c.arg(src)
            .arg(format!("docker://{}/{repo_tag}", self.host()));
        sh(&mut c);
    }

    /// The registry's file for a blob (to corrupt it on purpose).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a person would compare in two root filesystems, per path.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct EntryView {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: String,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub rdev: u64,
    /// For regular files: the sorted other paths sharing this inode.
    pub links: Vec<String>,
}

pub fn snapshot(root: &Path) -> BTreeMap<String, EntryView> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    fn rec(
        root: &Path,
        p: &Path,
        out: &mut BTreeMap<String, EntryView>,
        inodes: &mut BTreeMap<u64, Vec<String>>,
    ) {
        let m = std::fs::symlink_metadata(p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let ft = m.file_type();
        let (kind, content) = if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_symlink() {
            (
                "symlink",
                std::fs::read_link(p).unwrap().display().to_string(),
            )
        } else if ft.is_file() {
            let data = std::fs::read(p).unwrap();
            ("file", format!("{:x}", sha2::Sha256::digest(&data)))
        } else if ft.is_fifo() {
            ("fifo", String::new())
        } else if ft.is_char_device() {
            ("chr", String::new())
        } else if ft.is_block_device() {
            ("blk", String::new())
        } else {
            ("other", String::new())
        };
        let mut xattrs = Vec::new();
        if let Ok(names) = xattr_list(p) {
            for n in names {
                xattrs.push((n.clone(), xattr_get(p, &n)));
            }
        }
        xattrs.sort();
        if ft.is_file() {
            inodes.entry(m.ino()).or_default().push(rel.clone());
        }
        out.insert(
            rel,
            EntryView {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                content,
                xattrs,
                rdev: m.rdev(),
                links: vec![],
            },
        );
        if ft.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                rec(root, &e.unwrap().path(), out, inodes);
            }
        }
    }
    rec(root, root, &mut out, &mut inodes);
    for paths in inodes.values() {
        if paths.len() > 1 {
            for p in paths {
                let mut others: Vec<String> = paths.iter().filter(|x| *x != p).cloned().collect();
                others.sort();
                out.get_mut(p).unwrap().links = others;
            }
        }
    }
    out
}

fn xattr_list(p: &Path) -> std::io::Result<Vec<String>> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut buf)?;
    Ok(buf[..n]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

fn xattr_get(p: &Path, n: &str) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    let name = std::ffi::CString::new(n).unwrap();
    let len = rustix::fs::lgetxattr(p, name.as_c_str(), &mut buf).unwrap();
    buf.truncate(len);
    buf
}

/// Assert two root filesystems are the same entry for entry; print every difference.
pub fn assert_same_tree(ours: &Path, oracle: &Path) {
    let a = snapshot(ours);
    let b = snapshot(oracle);
    let mut diffs = Vec::new();
    for k in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if a.get(k) != b.get(k) {
            diffs.push(format!(
                "{k}:\n  ociboot: {:?}\n  oracle:  {:?}",
                a.get(k),
                b.get(k)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert!(a.len() > 1, "empty tree");
}

/// `umoci raw unpack` of a layout tag into DEST (umoci reads gzip but not zstd layers).
pub fn umoci_unpack(layout: &Path, tag: &str, dest: &Path) {
    sh(Command::new("umoci")
        .args(["--log", "error", "raw", "unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(dest)
        .stdout(Stdio::null()));
}

/// A sysroot whose bootloader is played by the test: `reboot` hands the default entry's
/// `options` line to later commands through OCIBOOT_PROC_CMDLINE.
pub struct Machine {
    pub h: Host,
    pub cmdline: PathBuf,
}

impl Machine {
    pub fn new(name: &str) -> Machine {
        let h = Host::new(name);
        let cmdline = h.path("cmdline");
        std::fs::write(&cmdline, "").unwrap();
        let mut m = Machine { h, cmdline };
        m.h.env.push((
            "OCIBOOT_PROC_CMDLINE".into(),
            m.cmdline.display().to_string(),
        ));
        m
    }

    pub fn root(&self) -> PathBuf {
        self.h.sysroot()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.h.ok(args)
    }

    pub fn fails(&self, args: &[&str]) -> String {
        self.h.fails(args)
    }

    /// The entries as the loader sees them, default first: (options, linux, initrd). The
    /// default is the one loader.conf names; the rest follow ociboot's order line.
    pub fn entries(&self) -> Vec<(String, String, Option<String>)> {
        let conf = std::fs::read_to_string(self.root().join("boot/loader/loader.conf")).unwrap();
        let default = conf
            .lines()
            .find_map(|l| l.strip_prefix("default "))
            .expect("no default in loader.conf")
            .to_string();
        let order: Vec<String> = conf
            .lines()
            .find_map(|l| l.strip_prefix("# ociboot-order: "))
            .expect("no order line")
            .split_whitespace()
            .map(|k| format!("ociboot-{}.conf", k.replacen('/', "-", 1)))
            .collect();
        assert_eq!(order[0], default, "the default leads the order");
        let dir = self.root().join("boot/loader/entries");
        order
            .iter()
            .map(|name| {
                let t = std::fs::read_to_string(dir.join(name)).unwrap();
                let get = |k: &str| {
                    t.lines()
                        .find_map(|l| l.strip_prefix(&format!("{k} ")))
                        .map(str::to_string)
                };
                (
                    get("options").unwrap(),
                    get("linux").unwrap(),
                    get("initrd"),
                )
            })
            .collect()
    }

    /// The default entry's options, after checking that what it boots is complete: a
    /// non-empty kernel and initramfs, and a deployment root with usr/ and etc/.
    pub fn default_entry(&self) -> String {
        let (options, linux, initrd) = self.entries().into_iter().next().expect("no boot entry");
        for f in std::iter::once(&linux).chain(initrd.as_ref()) {
            let p = self.root().join("boot").join(f.trim_start_matches('/'));
            assert!(
                p.is_file() && std::fs::metadata(&p).unwrap().len() > 0,
                "{} missing or empty",
                p.display()
            );
        }
        let droot = self.deployment_dir(&options);
        assert!(
            droot.join("usr").is_dir() && droot.join("etc").is_dir(),
            "deployment {} incomplete",
            droot.display()
        );
        options
    }

    /// The directory of the deployment an entry's options name (`ociboot=STATEROOT/ID`).
    pub fn deployment_dir(&self, options: &str) -> PathBuf {
        let key = options
            .split_whitespace()
            .find_map(|a| a.strip_prefix("ociboot="))
            .expect("no ociboot= in the entry");
        let (sr, id) = key.split_once('/').expect("ociboot=STATEROOT/ID");
        self.root()
            .join("ociboot/deploy")
            .join(sr)
            .join("deploy")
            .join(id)
    }

    /// Play the bootloader: boot the default entry. /run does not survive a reboot, and with
    /// it goes any staged state. Returns the kernel command line.
    pub fn reboot(&self) -> String {
        let options = self.default_entry();
        std::fs::write(&self.cmdline, &options).unwrap();
        let _ = std::fs::remove_dir_all(self.root().join("run"));
        options
    }

    pub fn status(&self) -> serde_json::Value {
        let out = self.ok(&["status", "--json"]);
        assert_eq!(out.trim().lines().count(), 1, "compact JSON on one line");
        serde_json::from_str(&out).unwrap()
    }

    /// The root directory of the deployment in a status slot.
    pub fn deployment_root(&self, slot: &str) -> PathBuf {
        let s = self.status();
        PathBuf::from(
            s["status"][slot]["ociboot"]["root"]
                .as_str()
                .unwrap_or("/nonexistent"),
        )
    }

    pub fn etc(&self) -> PathBuf {
        self.deployment_root("booted").join("etc")
    }

    /// The version label of the booted image ("none" when not booted).
    pub fn booted_version(&self) -> String {
        self.status()["status"]["booted"]["image"]["version"]
            .as_str()
            .unwrap_or("none")
            .to_string()
    }
}
