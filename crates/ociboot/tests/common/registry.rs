//! A real `docker-registry` (distribution) on 127.0.0.1, filled with skopeo.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{scratch, sh};

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

/// Start `docker-registry` on DIR/config.yml and wait until it answers on `port`.
fn serve(dir: &Path, port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("registry.log"))
        .unwrap();
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("docker-registry (Debian package docker-registry) must be installed");
    let start = Instant::now();
    let problem = loop {
        match http_status(port, "/v2/") {
            Some(200 | 401) => return child,
            Some(code) => break format!("registry answered {code}"),
            None if start.elapsed() > Duration::from_secs(15) => {
                break "registry did not start".to_string()
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    panic!("{problem} (log: {})", dir.join("registry.log").display());
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
        let child = serve(dir.path(), port);
        Registry {
            dir,
            port,
            child,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }

    /// Stop the registry (its data stays): clients now find nothing listening on its port.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same port with the same data (after `stop`).
    pub fn restart(&mut self) {
        self.stop();
        self.child = serve(self.dir.path(), self.port);
    }

    /// Bytes the registry process has written so far (`wchar` of /proc/PID/io: sockets and
    /// sendfile included): served blobs show up here while a client pulls.
    pub fn bytes_written(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/io", self.child.id()))
            .ok()
            .and_then(|io| {
                io.lines()
                    .find_map(|l| l.strip_prefix("wchar: "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
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
