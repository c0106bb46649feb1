//! HTTP for the hostile-registry tests: a canned server on 127.0.0.1 (named `localhost`, it is
//! another host as far as the client can tell), a raw HTTP/1.0 client to put hand-made
//! documents into a real registry, and the check that no credential leaks into a text.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

pub const USER: &str = "alice";
pub const PASS: &str = "s3cret-Pa55w0rd";

pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Fail if `text` holds `pass`, `user:pass` or its base64 form.
pub fn assert_no_secret(what: &str, text: &str, user: &str, pass: &str) {
    let pair = format!("{user}:{pass}");
    for secret in [pass.to_string(), b64(&pair), pair] {
        assert!(
            !text.contains(&secret),
            "{what} leaks the credential {secret:?}:\n{text}"
        );
    }
}

/// A request as the canned server saw it: the request line and lowercased headers.
#[derive(Debug, Clone)]
pub struct Seen {
    pub line: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `(status, extra headers, body)`.
pub type Reply = (u16, Vec<(String, String)>, Vec<u8>);

pub struct Canned {
    pub host: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Canned {
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answer every request on `ip` (a free port) with `handler`; lives until the process ends.
/// A connection that does not start like HTTP (a TLS hello) is closed at once.
pub fn serve(ip: &str, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Canned {
    serve_paced(ip, handler, |_, _| None)
}

/// Like [`serve`], but a body for which `pace(request, body length)` says `Some(pause)` is
/// drip-fed: the headers at once (with the full Content-Length), then one byte per pause, for
/// at most 90 s or until the client goes away.
pub fn serve_paced(
    ip: &str,
    handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    pace: impl Fn(&Seen, usize) -> Option<Duration> + Send + Sync + 'static,
) -> Canned {
    // Traffic goes to 127.0.0.1 only; `ip` is the name clients use for it.
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let host = format!("{ip}:{}", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let pace = Arc::new(pace);
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (log, handler, pace) = (log.clone(), handler.clone(), pace.clone());
            std::thread::spawn(move || {
                let Some(req) = read_head(&conn) else { return };
                log.lock().unwrap().push(req.clone());
                let (status, headers, body) = handler(&req);
                let mut head = format!(
                    "HTTP/1.1 {status} Canned\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let mut conn = conn;
                let _ = conn.write_all(head.as_bytes());
                match pace(&req, body.len()) {
                    None => {
                        let _ = conn.write_all(&body);
                    }
                    Some(pause) => {
                        let until = std::time::Instant::now() + Duration::from_secs(90);
                        for b in body.chunks(1) {
                            if std::time::Instant::now() > until || conn.write_all(b).is_err() {
                                break;
                            }
                            std::thread::sleep(pause);
                        }
                    }
                }
            });
        }
    });
    Canned { host, seen }
}

fn read_head(mut conn: &TcpStream) -> Option<Seen> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? != 1 {
            return None;
        }
        buf.push(byte[0]);
        if !buf[0].is_ascii_uppercase() {
            return None;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let line = lines.next()?.to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Seen { line, headers })
}

/// One HTTP/1.0 request to `host`; returns (status, headers lowercased, body).
pub fn http(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, out[split + 4..].to_vec())
}
