//! A hostile or careless registry: token realms that would receive the credentials over plain
//! HTTP, redirects to other hosts, error bodies full of terminal escapes. Canned HTTP servers
//! on loopback addresses play the registry and the token service (`localhost` is another host
//! as far as the client can tell).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use ociboot_oci::registry::RegistrySession;
use ociboot_oci::{fetch_image, AuthFiles, Error, RegistriesConf, RegistryClient, RegistryOptions};

/// An auth.json (mode 0600) holding `USER:PASS` for `host`.
fn auth_file(dir: &tempfile::TempDir, host: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let p = dir.path().join("auth.json");
    std::fs::write(
        &p,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#, b64_creds()),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A session for `os/app:v1` on `registry`, which registries.conf marks insecure, with the
/// credentials of `auth_file`.
fn session(registry: &Server, dir: &tempfile::TempDir) -> RegistrySession {
    let mut conf = RegistriesConf::default();
    conf.add_insecure(&registry.host());
    let opts = RegistryOptions {
        registries_conf: conf,
        auth: AuthFiles {
            files: vec![auth_file(dir, &registry.host())],
        },
        timeout: Duration::from_secs(10),
        min_rate: Default::default(),
    };
    let r = format!("{}/os/app:v1", registry.host()).parse().unwrap();
    RegistryClient::new(&opts).open(r).unwrap()
}

/// A token service that grants `granted` to a request with Basic credentials and
/// `anonymous` to one without.
fn token_service(ip: &str) -> Server {
    serve(ip, |req| {
        let tok = match req.header("authorization") {
            Some(a) if a.starts_with("Basic ") => "granted",
            _ => "anonymous",
        };
        Reply::new(
            200,
            &[("Content-Type", "application/json")],
            format!(r#"{{"token":"{tok}"}}"#),
        )
    })
}

/// A registry that wants a bearer token from `realm` and, given the `granted` one, answers
/// that the manifest is unknown.
fn bearer_registry(realm: String) -> Server {
    serve("127.0.0.1", move |req| {
        let challenge =
            format!(r#"Bearer realm="{realm}",service="fake",scope="repository:os/app:pull""#);
        match req.header("authorization") {
            Some("Bearer granted") => Reply::new(
                404,
                &[("Content-Type", "application/json")],
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
            _ => Reply::new(401, &[("WWW-Authenticate", challenge.as_str())], ""),
        }
    })
}

#[test]
fn credentials_never_go_to_a_plain_http_realm_on_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_service("localhost");
    let registry = bearer_registry(format!("http://{}/token", token.host()));
    let mut s = session(&registry, &dir);
    let (res, logs) = capture_logs(|| fetch_image(&mut s));
    let err = res.unwrap_err();
    let reqs = token.requests();
    assert!(!reqs.is_empty(), "the token service was never asked");
    for r in &reqs {
        assert_eq!(
            r.header("authorization"),
            None,
            "credentials sent to a plain-HTTP realm on another host: {r:?}"
        );
    }
    for r in registry.requests() {
        let a = r.header("authorization").unwrap_or("");
        assert!(!a.starts_with("Basic"), "{r:?}");
    }
    // The anonymous token is refused: the error says the credentials were withheld and why.
    let msg = err.to_string();
    assert!(matches!(err, Error::Auth(_)), "{msg}");
    assert!(
        msg.contains(&token.host()) && msg.contains("withheld"),
        "{msg}"
    );
    assert!(msg.contains(&registry.host()), "{msg}");
    assert_no_secret("the error", &msg);
    let logs = logs.join("\n");
    assert!(
        logs.contains("WARN") && logs.contains(&token.host()),
        "no warning naming the realm: {logs}"
    );
    assert_no_secret("the log", &logs);
}

#[test]
fn credentials_go_to_a_plain_http_realm_on_the_insecure_registrys_own_host() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_service("127.0.0.1");
    let registry = bearer_registry(format!("http://{}/token?x=1", token.host()));
    let mut s = session(&registry, &dir);
    let (res, logs) = capture_logs(|| fetch_image(&mut s));
    let err = res.unwrap_err();
    let sent: Vec<_> = token
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .collect();
    assert_eq!(sent, vec![format!("Basic {}", b64_creds())]);
    // The granted token opened the door; the manifest is simply not there.
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert_no_secret("the error", &err.to_string());
    assert_no_secret("the log", &logs.join("\n"));
}

#[test]
fn realms_that_are_not_http_urls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for realm in ["file:///etc/shadow", "gopher://localhost/token", "/token"] {
        let registry = bearer_registry(realm.to_string());
        let mut s = session(&registry, &dir);
        let err = fetch_image(&mut s).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Auth(_)), "{msg}");
        assert!(msg.contains("realm") && msg.contains(realm), "{msg}");
        assert_no_secret("the error", &msg);
    }
}

#[test]
fn a_redirect_to_another_host_carries_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let other = serve("localhost", |_| Reply::new(404, &[], ""));
    let target = format!("http://{}/elsewhere", other.host());
    let registry = serve("127.0.0.1", move |req| match req.header("authorization") {
        Some(_) => Reply::new(302, &[("Location", target.as_str())], ""),
        None => Reply::new(401, &[("WWW-Authenticate", r#"Basic realm="fake""#)], ""),
    });
    let mut s = session(&registry, &dir);
    let err = fetch_image(&mut s).unwrap_err();
    assert!(
        !other.requests().is_empty(),
        "the redirect was not followed"
    );
    for r in other.requests() {
        assert_eq!(r.header("authorization"), None, "{r:?}");
    }
    assert_no_secret("the error", &err.to_string());
}

/// A registry error body with a screen clear, colours, a forged second line, a bell, a bidi
/// override, a C1 CSI and 20 kB of padding.
const NASTY: &str = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"\u001b[2J\u001b[1;31mALL GOOD\r\nerror: forged line\u0007\u202e\u009b31m PADDING"}]}"#;

#[test]
fn registry_error_bodies_are_printed_safely() {
    let dir = tempfile::tempdir().unwrap();
    for status in [404u16, 401, 403, 500] {
        let body = NASTY.replace("PADDING", &"A".repeat(20_000));
        let registry = serve("127.0.0.1", move |_| {
            Reply::new(
                status,
                &[("Content-Type", "application/json")],
                body.clone(),
            )
        });
        let mut s = session(&registry, &dir);
        let msg = fetch_image(&mut s).unwrap_err().to_string();
        let bad: Vec<char> = msg
            .chars()
            .filter(|c| c.is_control() || ('\u{2066}'..='\u{2069}').contains(c) || *c == '\u{202e}')
            .collect();
        assert!(bad.is_empty(), "HTTP {status}: raw {bad:?} in {msg:?}");
        assert!(msg.contains("MANIFEST_UNKNOWN"), "{msg}");
        assert!(msg.contains("ALL GOOD"), "the readable text is kept: {msg}");
        assert!(
            msg.len() < 1500,
            "HTTP {status}: {} bytes: {msg}",
            msg.len()
        );
        assert_no_secret("the error", &msg);
    }
}
