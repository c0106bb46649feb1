//! Credentials against a real `docker-registry`: a registry with token auth whose realm is
//! plain HTTP on another host never gets them (the token service is a thread of the test
//! signing real JWTs with openssl), a realm on the insecure registry's own host does; wrong,
//! malformed and world-readable auth files never put a credential into the output, and an
//! auth file that group or others can read is warned about.

mod common;
mod hostile_http;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::*;
use hostile_http::*;

fn layout(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

fn url64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A token issuer: an RSA key and its self-signed certificate, which the registry trusts.
struct Issuer {
    dir: tempfile::TempDir,
    x5c: String,
}

impl Issuer {
    fn new() -> Issuer {
        let dir = scratch("issuer");
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        sh(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=ociboot-test-token"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        let der = sh(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert))
        .stdout;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        Issuer { dir, x5c }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// A JWT granting pull on `os/base`, as distribution's token auth expects it.
    fn token(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = format!(r#"{{"typ":"JWT","alg":"RS256","x5c":["{}"]}}"#, self.x5c);
        let claims = format!(
            r#"{{"iss":"ociboot-test-issuer","sub":"someone","aud":"ociboot-test","exp":{},"nbf":{},"iat":{},"jti":"t{now}","access":[{{"type":"repository","name":"os/base","actions":["pull"]}}]}}"#,
            now + 600,
            now - 60,
            now - 60
        );
        let input = format!("{}.{}", url64(header.as_bytes()), url64(claims.as_bytes()));
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let data = self.dir.path().join(format!("signing-input-{n}"));
        std::fs::write(&data, &input).unwrap();
        let sig = sh(Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(self.dir.path().join("key.pem"))
            .arg(&data))
        .stdout;
        format!("{input}.{}", url64(&sig))
    }
}

/// A token service on `ip`: a token for a request with the right Basic credentials, and for
/// an anonymous one only when `anonymous` says so.
fn token_service(ip: &str, issuer: Arc<Issuer>, anonymous: bool) -> Canned {
    let good = format!("Basic {}", b64(&format!("{USER}:{PASS}")));
    serve(ip, move |req| {
        if req.header("authorization") == Some(good.as_str()) || anonymous {
            let body = format!(r#"{{"token":"{}","expires_in":600}}"#, issuer.token());
            let ct = vec![("Content-Type".into(), "application/json".into())];
            (200, ct, body.into_bytes())
        } else {
            (401, vec![], b"{}".to_vec())
        }
    })
}

/// A `docker-registry` serving the storage `data` (another registry's) with token auth.
struct TokenRegistry {
    _dir: tempfile::TempDir,
    host: String,
    child: Child,
}

impl TokenRegistry {
    fn start(data: &Path, realm: &str, cert: &Path) -> TokenRegistry {
        let dir = scratch("token-registry");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    realm: {realm}\n    service: ociboot-test\n    issuer: ociboot-test-issuer\n    rootcertbundle: {}\n",
            data.display(),
            cert.display()
        );
        std::fs::write(dir.path().join("config.yml"), conf).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let host = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let (status, headers, _) = http(&host, "GET", "/v2/", &[], b"");
        assert_eq!(status, 401, "{headers:?}");
        TokenRegistry {
            _dir: dir,
            host,
            child,
        }
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_plain_http_token_realm_on_another_host_never_gets_the_credentials() {
    let reg = Registry::start(None);
    reg.push(&format!("oci:{}:v1", layout("base")), "os/base:v1", None);
    let data = reg.dir.path().join("data");
    let issuer = Arc::new(Issuer::new());

    // The realm is plain HTTP on `localhost` (another host) and grants anonymous pulls: the image is pulled
    // with an anonymous token, and the credentials never leave.
    let tok = token_service("localhost", issuer.clone(), true);
    let treg = TokenRegistry::start(&data, &format!("http://{}/token", tok.host), &issuer.cert());
    let h = Host::hostile("realm-elsewhere");
    h.insecure(&treg.host);
    h.login(&treg.host, USER, PASS);
    let r = format!("{}/os/base:v1", treg.host);
    let (ok, out, err) = h.run(&["image", "pull", &r]);
    assert!(ok, "{out}\n{err}");
    let seen = tok.requests();
    assert!(
        !seen.is_empty(),
        "the registry did not send us to its realm"
    );
    for s in &seen {
        assert_eq!(s.header("authorization"), None, "credentials sent: {s:?}");
    }
    assert!(
        err.contains("not sending the credentials") && err.contains(&tok.host),
        "no warning naming the realm: {err}"
    );
    assert_no_secret("the output", &format!("{out}{err}"), USER, PASS);
    drop(treg);

    // The same, but the realm wants a login: the error says the credentials were withheld.
    let tok = token_service("localhost", issuer.clone(), false);
    let treg = TokenRegistry::start(&data, &format!("http://{}/token", tok.host), &issuer.cert());
    let h = Host::hostile("realm-elsewhere-login");
    h.insecure(&treg.host);
    h.login(&treg.host, USER, PASS);
    let err = h.fails(&["image", "pull", &format!("{}/os/base:v1", treg.host)]);
    assert!(err.contains("withheld") && err.contains(&tok.host), "{err}");
    assert!(tok
        .requests()
        .iter()
        .all(|s| s.header("authorization").is_none()));
    assert_no_secret("the error", &err, USER, PASS);
    h.assert_store_empty();
    drop(treg);

    // A plain-HTTP realm on the insecure registry's own host gets them, and the pull works.
    let tok = token_service("127.0.0.1", issuer.clone(), false);
    let treg = TokenRegistry::start(&data, &format!("http://{}/token", tok.host), &issuer.cert());
    let h = Host::hostile("realm-same-host");
    h.insecure(&treg.host);
    h.login(&treg.host, USER, PASS);
    let (ok, out, err) = h.run(&["image", "pull", &format!("{}/os/base:v1", treg.host)]);
    assert!(ok, "{out}\n{err}");
    assert!(tok
        .requests()
        .iter()
        .any(|s| s.header("authorization").is_some()));
    assert_no_secret("the output", &format!("{out}{err}"), USER, PASS);
    h.fsck();
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn auth_files_never_leak_into_the_output() {
    let reg = Registry::start(Some((USER, PASS)));
    reg.push(&format!("oci:{}:v1", layout("base")), "os/base:v1", None);
    let h = Host::hostile("auth-leaks");
    // Every run of this test is checked for these, whatever auth file it holds.
    h.secret(Some(USER), PASS);
    h.secret(None, &b64(&format!("{USER}{PASS}")));
    h.insecure(&reg.host());
    let r = format!("{}/os/base:v1", reg.host());
    let auth = h.path("auth.json");
    let trace = [("OCIBOOT_LOG", "trace")];

    // A wrong password: refused, and not repeated.
    let wrong = "wr0ng-Pa55w0rd";
    h.login(&reg.host(), USER, wrong);
    let (ok, out, err) = h.run_env(&["image", "pull", &r], &trace);
    assert!(!ok && err.contains("denied"), "{err}");
    assert_no_secret("the output", &format!("{out}{err}"), USER, wrong);

    // Malformed auth files: the error names the file, never what it holds.
    let good = b64(&format!("{USER}:{PASS}"));
    let host = reg.host();
    for text in [
        format!(r#"{{"auths":{{"{host}":"{good}"}}}}"#),
        format!(r#"{{"auths":"{good}"}}"#),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{good}!"}}}}}}"#),
        format!(r#"{{"auths":{{"{host}":{{"auth":["{good}"]}}}}}}"#),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{good}"}}}}}} {PASS}"#),
        format!(
            r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
            b64(&format!("{USER}{PASS}"))
        ),
    ] {
        std::fs::write(&auth, &text).unwrap();
        set_mode(&auth, 0o600);
        let (ok, out, err) = h.run_env(&["image", "pull", &r], &trace);
        assert!(!ok, "{text}: {out}");
        assert!(err.contains(&auth.display().to_string()), "{err}");
        assert_no_secret(
            &format!("the output for {text}"),
            &format!("{out}{err}"),
            USER,
            PASS,
        );
    }
    h.assert_store_empty();

    // A good auth file others can read: used, and warned about by name.
    h.login(&reg.host(), USER, PASS);
    set_mode(&auth, 0o644);
    let (ok, out, err) = h.run_env(&["image", "pull", &r], &trace);
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains(&auth.display().to_string()) && err.contains("chmod 600"),
        "no warning about {}: {err}",
        auth.display()
    );
    assert_no_secret("the output", &format!("{out}{err}"), USER, PASS);
    set_mode(&auth, 0o600);
    let (ok, out, err) = h.run(&["image", "pull", &r]);
    assert!(ok && out.contains("up to date"), "{out}\n{err}");
    assert!(!err.contains("chmod 600"), "{err}");
    h.fsck();
}
