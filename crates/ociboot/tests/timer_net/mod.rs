//! The network of the update-timer tests: Debian's docker-registry started and stopped with
//! tests/fixtures/registry.sh as an admin would, and a TCP relay on 127.0.0.1 in front of it
//! that counts the connections, requests and bytes crossing it, and can hold connections or
//! answer garbage.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};

use crate::common::{os_layout, repo_root, scratch, sh};

/// Debian's docker-registry, through tests/fixtures/registry.sh (access log on).
pub struct Registry {
    dir: tempfile::TempDir,
    pub port: u16,
}

fn registry_sh(args: &[&str]) {
    sh(Command::new("bash")
        .arg(repo_root().join("tests/fixtures/registry.sh"))
        .args(args));
}

impl Registry {
    pub fn start() -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = Registry {
            dir: scratch("timer-registry"),
            port,
        };
        r.up();
        r
    }

    pub fn up(&self) {
        registry_sh(&[
            "start",
            self.dir.path().to_str().unwrap(),
            &self.port.to_string(),
        ]);
    }

    pub fn down(&self) {
        registry_sh(&["stop", self.dir.path().to_str().unwrap()]);
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The fixture OS image `tag` as `os:<dest>`, digests kept.
    pub fn push(&self, tag: &str, dest: &str) {
        sh(Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:{tag}", os_layout().display()))
            .arg(format!("docker://{}/os:{dest}", self.host())));
    }

    /// The registry's log (its access log lines among them).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.down();
    }
}

/// What crossed the relay: connections, request lines, bytes each way.
#[derive(Debug, Default, Clone)]
pub struct Traffic {
    pub connections: usize,
    pub requests: Vec<String>,
    pub sent: u64,
    pub received: u64,
}

/// What the relay does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Carry it to the registry.
    Open,
    /// Hold it (the client waits for its answer) until the gate changes.
    Held,
    /// Answer every request with garbage, as a broken registry or a captive portal would.
    Garbage,
}

/// A TCP relay in front of the registry, counting what crosses it.
pub struct Relay {
    port: u16,
    traffic: Arc<Mutex<Traffic>>,
    gate: Arc<(Mutex<Gate>, Condvar)>,
}

impl Relay {
    pub fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        let gate = Arc::new((Mutex::new(Gate::Open), Condvar::new()));
        let (t, o) = (traffic.clone(), gate.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (t, o) = (t.clone(), o.clone());
                std::thread::spawn(move || relay_one(client, upstream, &t, &o));
            }
        });
        Relay {
            port,
            traffic,
            gate,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What crossed since the last call.
    pub fn take(&self) -> Traffic {
        std::mem::take(&mut *self.traffic.lock().unwrap())
    }

    pub fn connections(&self) -> usize {
        self.traffic.lock().unwrap().connections
    }

    pub fn set(&self, gate: Gate) {
        *self.gate.0.lock().unwrap() = gate;
        self.gate.1.notify_all();
    }
}

fn relay_one(
    mut client: TcpStream,
    upstream: u16,
    traffic: &Arc<Mutex<Traffic>>,
    gate: &(Mutex<Gate>, Condvar),
) {
    traffic.lock().unwrap().connections += 1;
    let g = *gate
        .1
        .wait_while(gate.0.lock().unwrap(), |g| *g == Gate::Held)
        .unwrap();
    if g == Gate::Garbage {
        let mut buf = [0u8; 4096];
        while let Ok(1..) = client.read(&mut buf) {
            let junk = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n<garbage>";
            if client.write_all(junk).is_err() {
                break;
            }
        }
        return;
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (mut c2, mut s2, t2) = (
        client.try_clone().unwrap(),
        server.try_clone().unwrap(),
        traffic.clone(),
    );
    let down = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n @ 1..) = s2.read(&mut buf) {
            t2.lock().unwrap().received += n as u64;
            if c2.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = c2.shutdown(std::net::Shutdown::Write);
    });
    // Requests of a pull have no body: each ends at its blank line.
    let (mut buf, mut head) = ([0u8; 65536], Vec::new());
    while let Ok(n @ 1..) = client.read(&mut buf) {
        let mut t = traffic.lock().unwrap();
        t.sent += n as u64;
        head.extend_from_slice(&buf[..n]);
        while let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let req: Vec<u8> = head.drain(..i + 4).collect();
            let line = String::from_utf8_lossy(&req);
            t.requests
                .push(line.lines().next().unwrap_or_default().to_string());
        }
        drop(t);
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Write);
    let _ = down.join();
}
