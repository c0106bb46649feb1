//! Helpers for the hostile-input tests: a canned HTTP server on a loopback address, a tracing
//! subscriber that keeps every log line, and the check that no credential appears in a text.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

/// The user name of the test credentials.
pub const USER: &str = "alice";
/// The password of the test credentials: distinctive, so any leak of it is found.
pub const PASS: &str = "s3cret-Pa55w0rd";

/// `USER:PASS` in base64, as auth.json and a Basic `Authorization` header carry it.
pub fn b64_creds() -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))
}

/// Fail if `text` holds the password, `user:password` or its base64 form.
pub fn assert_no_secret(what: &str, text: &str) {
    for secret in [PASS.to_string(), format!("{USER}:{PASS}"), b64_creds()] {
        assert!(
            !text.contains(&secret),
            "{what} leaks the credential {secret:?}:\n{text}"
        );
    }
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, …
    pub method: String,
    /// The path with its query.
    pub path: String,
    /// The headers, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A canned answer.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply with a status, headers and a body.
    pub fn new(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }
}

/// A server answering every request with what its handler says; it lives until the process
/// ends. Connections that do not start like an HTTP request (a TLS hello) are closed at once.
pub struct Server {
    /// The host name clients use: `127.0.0.1`, or `localhost` for "another host" (the same
    /// loopback address under another name: the tests send traffic to 127.0.0.1 only).
    pub ip: String,
    /// Its port.
    pub port: u16,
    /// Every request received, in order.
    pub seen: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// `ip:port`.
    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// Serve on a free port of 127.0.0.1 with `handler`, known to clients as `ip` (`127.0.0.1`, or
/// `localhost` to play another host).
pub fn serve(ip: &str, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler: Arc<Handler> = Arc::new(handler);
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (log, handler) = (log.clone(), handler.clone());
            std::thread::spawn(move || answer(conn, &log, &*handler));
        }
    });
    Server {
        ip: ip.to_string(),
        port,
        seen,
    }
}

fn answer(mut conn: TcpStream, log: &Mutex<Vec<Request>>, handler: &Handler) {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return,
        }
        if !buf[0].is_ascii_uppercase() {
            return; // not HTTP (a TLS client hello): hang up
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let req = Request {
        method,
        path,
        headers,
    };
    log.lock().unwrap().push(req.clone());
    let reply = handler(&req);
    let mut out = format!(
        "HTTP/1.1 {} Canned\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = conn.write_all(out.as_bytes());
    let _ = conn.write_all(&reply.body);
}

/// Every log line emitted while `f` runs on this thread, as `LEVEL field=value …`.
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = tracing::subscriber::with_default(Capture(lines.clone()), f);
    let lines = lines.lock().unwrap().clone();
    (out, lines)
}

struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut f = Fields(String::new());
        event.record(&mut f);
        let line = format!("{} {}", event.metadata().level(), f.0);
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
