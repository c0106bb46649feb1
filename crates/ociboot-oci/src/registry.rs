//! The OCI distribution API v2 client: manifests and blobs over HTTPS (or HTTP where
//! `registries.conf` says `insecure = true`), with anonymous, basic and bearer-token auth.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use oci_spec::image::Descriptor;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::Agent;

use crate::config::{AuthFiles, Credentials, RegistriesConf};
use crate::digest::Sha256Digest;
use crate::error::{Error, Result};
use crate::manifest::{RawManifest, MANIFEST_ACCEPT, MAX_MANIFEST_SIZE};
use crate::reference::RegistryRef;
use crate::source::ImageSource;

/// Settings for talking to registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Which registries may be reached over plain HTTP or without TLS verification.
    pub registries_conf: RegistriesConf,
    /// Where credentials are looked up.
    pub auth: AuthFiles,
    /// Bound on connecting and on each wait for data.
    pub timeout: Duration,
}

impl RegistryOptions {
    /// The system's registries.conf and auth files; `OCIBOOT_REGISTRY_TIMEOUT` (seconds)
    /// overrides the 30 s network timeout.
    pub fn from_env() -> Result<Self> {
        let timeout = std::env::var("OCIBOOT_REGISTRY_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(30));
        Ok(RegistryOptions {
            registries_conf: RegistriesConf::load_default()?,
            auth: AuthFiles::default_files(),
            timeout,
        })
    }
}

/// Makes connections to registries.
pub struct RegistryClient {
    opts: RegistryOptions,
}

impl RegistryClient {
    /// A client using these settings (copied).
    pub fn new(opts: &RegistryOptions) -> Self {
        RegistryClient { opts: opts.clone() }
    }

    /// A session for one repository. Nothing is sent until the first request.
    pub fn open(&self, r: RegistryRef) -> Result<RegistrySession> {
        let insecure = self
            .opts
            .registries_conf
            .is_insecure(&r.domain, &r.repository);
        let creds = self.opts.auth.lookup(&r.domain, &r.repository)?;
        let tls = if insecure {
            TlsConfig::builder().disable_verification(true).build()
        } else {
            TlsConfig::builder().root_certs(system_roots()).build()
        };
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(self.opts.timeout))
            .timeout_recv_response(Some(self.opts.timeout))
            .timeout_per_read(Some(self.opts.timeout))
            .timeout_resolve(Some(self.opts.timeout))
            .max_redirects(10)
            .user_agent(concat!("ociboot/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into();
        Ok(RegistrySession {
            agent,
            host: api_host(&r.domain),
            insecure,
            scheme: None,
            creds,
            authorization: None,
            r,
        })
    }
}

fn api_host(domain: &str) -> String {
    if domain == crate::reference::DEFAULT_DOMAIN {
        "registry-1.docker.io".to_string()
    } else {
        domain.to_string()
    }
}

/// The system's CA bundle; the compiled-in web PKI roots when there is none.
fn system_roots() -> RootCerts {
    for p in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        if let Ok(pem) = std::fs::read(p) {
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
                    _ => None,
                })
                .collect();
            if !certs.is_empty() {
                return RootCerts::Specific(Arc::new(certs));
            }
        }
    }
    RootCerts::WebPki
}

/// One repository on one registry.
pub struct RegistrySession {
    agent: Agent,
    host: String,
    insecure: bool,
    scheme: Option<&'static str>,
    creds: Option<Credentials>,
    authorization: Option<String>,
    r: RegistryRef,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The authentication scheme as the registry wrote it, e.g. `Bearer` or `Basic`.
    pub scheme: String,
    /// The `key=value` parameters in order, with quotes and escapes removed.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `k` (compared case-insensitively), e.g. `realm` or `scope`.
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse `Bearer realm="…",service="…",scope="…"` (or `Basic realm="…"`).
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = match h.find(' ') {
        Some(i) => (&h[..i], &h[i + 1..]),
        None => (h, ""),
    };
    let mut params = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = &s[eq + 1..];
        let value;
        if let Some(stripped) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = stripped.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n)
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end?;
            value = v;
            s = &stripped[end + 1..];
        } else {
            let end = s.find(',').unwrap_or(s.len());
            value = s[..end].trim().to_string();
            s = &s[end..];
        }
        params.push((key, value));
        s = s.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_string(),
        params,
    })
}

fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn basic(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
    )
}

type Response = ureq::http::Response<ureq::Body>;

impl RegistrySession {
    fn name(&self) -> String {
        self.r.to_string()
    }

    fn net_err(&self, url: &str, e: ureq::Error) -> Error {
        let msg = match &e {
            ureq::Error::Timeout(t) => format!("timed out ({t}) after {:?}", self.timeout_hint()),
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused".to_string()
            }
            ureq::Error::HostNotFound => "host not found".to_string(),
            other => other.to_string(),
        };
        Error::Transport(format!("{}: {url}: {msg}", self.name()))
    }

    fn timeout_hint(&self) -> Duration {
        self.agent.config().timeouts().connect.unwrap_or_default()
    }

    /// Decide between https and (for insecure registries) http, once.
    fn base(&mut self) -> Result<String> {
        if let Some(s) = self.scheme {
            return Ok(format!("{s}://{}", self.host));
        }
        let https = format!("https://{}/v2/", self.host);
        match self.agent.get(&https).call() {
            Ok(_) => self.scheme = Some("https"),
            Err(e) if self.insecure && !matches!(e, ureq::Error::Timeout(_)) => {
                tracing::debug!("{https}: {e}; trying plain HTTP (insecure registry)");
                let http = format!("http://{}/v2/", self.host);
                self.agent
                    .get(&http)
                    .call()
                    .map_err(|e| self.net_err(&http, e))?;
                self.scheme = Some("http");
            }
            Err(e) => return Err(self.net_err(&https, e)),
        }
        Ok(format!(
            "{}://{}",
            self.scheme.unwrap_or("https"),
            self.host
        ))
    }

    /// GET with authentication; answers a 401 challenge once.
    fn get(&mut self, path: &str, accept: Option<&str>) -> Result<(String, Response)> {
        let url = format!("{}{path}", self.base()?);
        for attempt in 0..2 {
            let mut req = self.agent.get(&url);
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if let Some(auth) = &self.authorization {
                req = req.header("Authorization", auth);
            }
            let resp = req.call().map_err(|e| self.net_err(&url, e))?;
            if resp.status().as_u16() == 401 && attempt == 0 {
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                match challenge {
                    Some(c) => {
                        self.authenticate(&c)?;
                        continue;
                    }
                    None => return Ok((url, resp)),
                }
            }
            return Ok((url, resp));
        }
        unreachable!("the loop returns on its second pass")
    }

    fn authenticate(&mut self, c: &Challenge) -> Result<()> {
        let name = self.name();
        if c.scheme.eq_ignore_ascii_case("basic") {
            let creds = self.creds.as_ref().ok_or_else(|| {
                Error::Auth(format!(
                    "{name}: the registry requires a login and no credentials were found (searched containers auth files and /etc/ociboot/auth.json)"
                ))
            })?;
            self.authorization = Some(basic(creds));
            return Ok(());
        }
        if !c.scheme.eq_ignore_ascii_case("bearer") {
            return Err(Error::Auth(format!(
                "{name}: unsupported authentication scheme {}",
                c.scheme
            )));
        }
        let realm = c
            .param("realm")
            .ok_or_else(|| Error::Auth(format!("{name}: bearer challenge without realm")))?;
        let mut url = realm.to_string();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        if let Some(s) = c.param("service") {
            url.push_str(&format!("{sep}service={}", query_escape(s)));
            sep = '&';
        }
        let scope = c
            .param("scope")
            .map(str::to_string)
            .unwrap_or_else(|| format!("repository:{}:pull", self.r.repository));
        url.push_str(&format!("{sep}scope={}", query_escape(&scope)));
        let mut req = self.agent.get(&url);
        if let Some(cr) = &self.creds {
            req = req.header("Authorization", basic(cr));
        }
        let mut resp = req.call().map_err(|e| self.net_err(&url, e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(Error::Auth(format!(
                "{name}: token request to {realm} failed with HTTP {status}{}",
                if self.creds.is_some() {
                    " (check the credentials)"
                } else {
                    " (no credentials found)"
                }
            )));
        }
        #[derive(serde::Deserialize)]
        struct Tok {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| self.net_err(&url, e))?;
        let tok: Tok = serde_json::from_slice(&body).map_err(|e| {
            Error::Auth(format!(
                "{name}: malformed token response from {realm}: {e}"
            ))
        })?;
        let t = tok.token.or(tok.access_token).ok_or_else(|| {
            Error::Auth(format!("{name}: token response from {realm} has no token"))
        })?;
        self.authorization = Some(format!("Bearer {t}"));
        Ok(())
    }

    fn check_status(&self, url: &str, what: &str, resp: &mut Response) -> Result<()> {
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let detail = resp
            .body_mut()
            .with_config()
            .limit(64 << 10)
            .read_to_vec()
            .ok()
            .and_then(|b| registry_error_text(&b))
            .map(|t| format!(": {t}"))
            .unwrap_or_default();
        let name = self.name();
        Err(match status {
            404 => Error::NotFound(format!(
                "{name}: {what} not found (HTTP 404 from {url}){detail}"
            )),
            401 | 403 => Error::Auth(format!(
                "{name}: access to {what} denied (HTTP {status}){detail}{}",
                match &self.creds {
                    Some(c) => format!("; credentials from {}", c.source),
                    None => "; no credentials found in the auth files".to_string(),
                }
            )),
            _ => Error::Transport(format!(
                "{name}: HTTP {status} for {what} from {url}{detail}"
            )),
        })
    }
}

/// `{"errors":[{"code":"…","message":"…"}]}` → "CODE: message".
fn registry_error_text(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let errs = v.get("errors")?.as_array()?;
    let parts: Vec<String> = errs
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.get("code").and_then(|c| c.as_str()).unwrap_or(""),
                e.get("message").and_then(|c| c.as_str()).unwrap_or("")
            )
            .trim()
            .to_string()
        })
        .collect();
    Some(parts.join("; "))
}

impl ImageSource for RegistrySession {
    fn name(&self) -> String {
        RegistrySession::name(self)
    }

    fn root_manifest(&mut self) -> Result<RawManifest> {
        let reference = self.r.reference();
        let path = format!("/v2/{}/manifests/{reference}", self.r.repository);
        let (url, mut resp) = self.get(&path, Some(MANIFEST_ACCEPT))?;
        self.check_status(&url, "manifest", &mut resp)?;
        let media_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST_SIZE)
            .read_to_vec()
            .map_err(|e| self.net_err(&url, e))?;
        let digest = Sha256Digest::of(&bytes);
        if let Some(want) = self.r.digest {
            if want != digest {
                return Err(Error::Invalid(format!(
                    "{}: manifest digest mismatch: asked for {want}, received {digest}",
                    self.name()
                )));
            }
        }
        if let Some(h) = header_digest {
            if let Ok(hd) = h.parse::<Sha256Digest>() {
                if hd != digest {
                    return Err(Error::Invalid(format!(
                        "{}: manifest digest mismatch: registry says {hd}, content is {digest}",
                        self.name()
                    )));
                }
            }
        }
        Ok(RawManifest {
            bytes,
            digest,
            media_type,
        })
    }

    fn manifest_bytes(&mut self, desc: &Descriptor) -> Result<Vec<u8>> {
        let path = format!("/v2/{}/manifests/{}", self.r.repository, desc.digest());
        let (url, mut resp) = self.get(&path, Some(MANIFEST_ACCEPT))?;
        self.check_status(&url, &format!("manifest {}", desc.digest()), &mut resp)?;
        resp.body_mut()
            .with_config()
            .limit(MAX_MANIFEST_SIZE)
            .read_to_vec()
            .map_err(|e| self.net_err(&url, e))
    }

    fn blob_stream(&mut self, digest: &Sha256Digest, _size: u64) -> Result<Box<dyn Read + Send>> {
        let path = format!("/v2/{}/blobs/{digest}", self.r.repository);
        let (url, mut resp) = self.get(&path, None)?;
        self.check_status(&url, &format!("blob {digest}"), &mut resp)?;
        Ok(Box::new(
            resp.into_body().into_with_config().limit(u64::MAX).reader(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example/token"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull"));
        let c = parse_challenge(r#"Basic realm="ociboot-test""#).unwrap();
        assert_eq!(c.scheme, "Basic");
        assert_eq!(c.param("realm"), Some("ociboot-test"));
        let c = parse_challenge(r#"Bearer realm="r\"q", error=insufficient_scope"#).unwrap();
        assert_eq!(c.param("realm"), Some("r\"q"));
        assert_eq!(c.param("error"), Some("insufficient_scope"));
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
    }

    #[test]
    fn errors_text() {
        let t = registry_error_text(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        );
        assert_eq!(t.as_deref(), Some("MANIFEST_UNKNOWN manifest unknown"));
    }
}
