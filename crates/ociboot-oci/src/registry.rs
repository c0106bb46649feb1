//! The OCI distribution API v2 client: manifests and blobs over HTTPS (or HTTP where
//! `registries.conf` says `insecure = true`), with anonymous, basic and bearer-token auth
//! (`auth`: where credentials may go). Whatever a registry says that ends up in an error
//! message (error bodies, realms) is passed through [`sanitize`] first.

mod auth;
mod rate;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use oci_spec::image::Descriptor;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::Agent;

use crate::config::{AuthFiles, Credentials, RegistriesConf};
use crate::digest::Sha256Digest;
use crate::error::{Error, Result};
use crate::manifest::{RawManifest, MANIFEST_ACCEPT, MAX_MANIFEST_SIZE};
use crate::reference::RegistryRef;
use crate::source::ImageSource;
use crate::text::sanitize;
use rate::RateReader;

pub use auth::{parse_challenge, Challenge};
pub use rate::MinRate;

/// Settings for talking to registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Which registries may be reached over plain HTTP or without TLS verification.
    pub registries_conf: RegistriesConf,
    /// Where credentials are looked up.
    pub auth: AuthFiles,
    /// Bound on connecting and on each wait for data.
    pub timeout: Duration,
    /// The slowest a response body may arrive (a drip-fed blob is cut off).
    pub min_rate: MinRate,
}

impl RegistryOptions {
    /// The system's registries.conf and auth files; `OCIBOOT_REGISTRY_TIMEOUT` (seconds)
    /// overrides the 30 s network timeout, `OCIBOOT_REGISTRY_MIN_RATE` (bytes per second)
    /// and `OCIBOOT_REGISTRY_RATE_WINDOW` (seconds) the minimum rate ([`MinRate`]).
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
            min_rate: MinRate::from_env(),
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
        Ok(RegistrySession {
            agent: make_agent(self.opts.timeout, !insecure),
            verified_agent: None,
            timeout: self.opts.timeout,
            min_rate: self.opts.min_rate,
            conf: self.opts.registries_conf.clone(),
            host: api_host(&r.domain),
            insecure,
            scheme: None,
            creds,
            authorization: None,
            withheld: None,
            r,
        })
    }
}

/// An HTTP agent with bounded timeouts that verifies TLS certificates against the system's CA
/// bundle, or (for an insecure registry) does not verify them. Redirects drop the
/// `Authorization` header (ureq's default), so credentials never follow one to another host.
fn make_agent(timeout: Duration, verify: bool) -> Agent {
    let tls = if verify {
        TlsConfig::builder().root_certs(system_roots()).build()
    } else {
        TlsConfig::builder().disable_verification(true).build()
    };
    Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_per_read(Some(timeout))
        .timeout_resolve(Some(timeout))
        .max_redirects(10)
        .user_agent(concat!("ociboot/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .into()
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
    /// For the registry: verifies TLS unless the registry is insecure.
    agent: Agent,
    /// For token realms on other hosts of an insecure registry: made when first needed.
    verified_agent: Option<Agent>,
    timeout: Duration,
    min_rate: MinRate,
    conf: RegistriesConf,
    host: String,
    insecure: bool,
    scheme: Option<&'static str>,
    creds: Option<Credentials>,
    /// The `Authorization` header the registry's requests carry: a secret, never printed.
    authorization: Option<String>,
    /// Which token realm the credentials were withheld from, and why, for messages.
    withheld: Option<String>,
    r: RegistryRef,
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
            other => sanitize(&other.to_string()),
        };
        Error::Transport(format!("{}: {}: {msg}", self.name(), sanitize(url)))
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
                "{name}: access to {what} denied (HTTP {status}){detail}; {}",
                match &self.creds {
                    Some(_) if self.withheld.is_some() => self.withheld_note(),
                    Some(c) => format!("credentials from {}", c.source),
                    None => "no credentials found in the auth files".to_string(),
                }
            )),
            _ => Error::Transport(format!(
                "{name}: HTTP {status} for {what} from {url}{detail}"
            )),
        })
    }
}

impl RegistrySession {
    /// A manifest's body, at most [`MAX_MANIFEST_SIZE`] bytes, at the [`MinRate`] at least.
    fn read_body(&self, url: &str, what: &str, resp: &mut Response) -> Result<Vec<u8>> {
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST_SIZE)
            .reader();
        let what = format!("{}: {what} from {}", self.name(), sanitize(url));
        let mut out = Vec::new();
        RateReader::new(body, self.min_rate, what.clone())
            .read_to_end(&mut out)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut => Error::Transport(e.to_string()),
                _ => Error::Transport(format!("{what}: {}", sanitize(&e.to_string()))),
            })?;
        Ok(out)
    }
}

/// `{"errors":[{"code":"…","message":"…"}]}` → "CODE message; …", made printable and cut to
/// [`crate::text::MAX_REMOTE_TEXT`] bytes by [`sanitize`].
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
    Some(sanitize(&parts.join("; ")))
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
        let bytes = self.read_body(&url, "manifest", &mut resp)?;
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
        self.read_body(&url, &format!("manifest {}", desc.digest()), &mut resp)
    }

    fn blob_stream(&mut self, digest: &Sha256Digest, _size: u64) -> Result<Box<dyn Read + Send>> {
        let path = format!("/v2/{}/blobs/{digest}", self.r.repository);
        let (url, mut resp) = self.get(&path, None)?;
        self.check_status(&url, &format!("blob {digest}"), &mut resp)?;
        let body = resp.into_body().into_with_config().limit(u64::MAX).reader();
        let what = format!("{}: blob {digest} from {}", self.name(), sanitize(&url));
        Ok(Box::new(RateReader::new(body, self.min_rate, what)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_text() {
        let t = registry_error_text(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        );
        assert_eq!(t.as_deref(), Some("MANIFEST_UNKNOWN manifest unknown"));
    }
}
