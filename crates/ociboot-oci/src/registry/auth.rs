//! Answering a registry's `WWW-Authenticate` challenge: basic auth to the registry itself, or
//! a bearer token from the realm the challenge names, and where credentials may be sent.
//!
//! Credentials (basic auth to the registry or to its token realm) go only over TLS, or over
//! plain HTTP to the registry's own host when `registries.conf` marks the registry insecure.
//! A realm the registry names elsewhere over plain HTTP gets an anonymous token request (a
//! public image still pulls) and a warning; if access is then refused, the error says the
//! credentials were withheld and why. containers/image (podman, skopeo) sends the credentials
//! to any realm; a registry's response is not a reason to hand a secret to a host that an
//! attacker on the path could be.
//!
//! A realm on another host is reached with verified TLS even when the registry itself is
//! insecure, unless `registries.conf` marks that host insecure too.

use base64::Engine as _;
use ureq::http::uri::Authority;
use ureq::http::Uri;
use ureq::Agent;

use super::RegistrySession;
use crate::config::Credentials;
use crate::error::{Error, Result};
use crate::text::sanitize;

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

/// The `Authorization` header value for basic auth with `c`.
pub(super) fn basic(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
    )
}

/// Whether `uri` names the same host (any port) as `registry_host` (`host[:port]`).
pub(super) fn same_host(uri: &Uri, registry_host: &str) -> bool {
    let Ok(reg) = registry_host.parse::<Authority>() else {
        return false;
    };
    uri.host()
        .is_some_and(|h| h.eq_ignore_ascii_case(reg.host()))
}

/// Why credentials must not go to `uri` for the registry at `registry_host`, or `None` when
/// they may: `https` anywhere, `http` only to the host of a registry marked insecure.
pub(super) fn withhold_reason(uri: &Uri, registry_host: &str, insecure: bool) -> Option<String> {
    match uri.scheme_str() {
        Some("https") => None,
        Some("http") if insecure && same_host(uri, registry_host) => None,
        Some("http") if insecure => Some(format!(
            "it is plain HTTP on another host than the registry {registry_host}"
        )),
        _ => Some(format!(
            "it is plain HTTP and the registry {registry_host} is not marked insecure"
        )),
    }
}

impl RegistrySession {
    /// Answer challenge `c`: set the `Authorization` the next requests carry.
    pub(super) fn authenticate(&mut self, c: &Challenge) -> Result<()> {
        let name = self.name();
        if c.scheme.eq_ignore_ascii_case("basic") {
            // The registry's own URL: https, or plain http only to an insecure registry.
            let base = format!("{}://{}/", self.scheme.unwrap_or("https"), self.host);
            let reason = match base.parse::<Uri>() {
                Ok(u) => withhold_reason(&u, &self.host, self.insecure),
                Err(_) => Some(format!("its address {} does not parse", sanitize(&base))),
            };
            if let Some(reason) = reason {
                return Err(Error::Auth(format!(
                    "{name}: the registry asks for basic auth, but {reason}: credentials not sent"
                )));
            }
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
                sanitize(&c.scheme)
            )));
        }
        let realm = c
            .param("realm")
            .ok_or_else(|| Error::Auth(format!("{name}: bearer challenge without realm")))?;
        let shown = sanitize(realm);
        let uri = realm
            .parse::<Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
            .ok_or_else(|| {
                Error::Auth(format!(
                    "{name}: the registry's token realm {shown} is not an http(s) URL"
                ))
            })?;
        let creds = self.creds_for_realm(&uri, &shown);
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
        let agent = self.realm_agent(&uri);
        let mut req = agent.get(&url);
        if let Some(cr) = &creds {
            req = req.header("Authorization", basic(cr));
        }
        let mut resp = req.call().map_err(|e| self.net_err(&url, e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let hint = match (&creds, &self.creds) {
                (Some(_), _) => " (check the credentials)".to_string(),
                (None, Some(_)) => format!("; {}", self.withheld_note()),
                (None, None) => " (no credentials found)".to_string(),
            };
            return Err(Error::Auth(format!(
                "{name}: token request to {shown} failed with HTTP {status}{hint}"
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
        // Never quote the response: it may be a token.
        let tok: Tok = serde_json::from_slice(&body).map_err(|e| {
            Error::Auth(format!(
                "{name}: malformed token response from {shown}: {}",
                crate::json::describe_without_values(&e)
            ))
        })?;
        let t = tok.token.or(tok.access_token).ok_or_else(|| {
            Error::Auth(format!("{name}: token response from {shown} has no token"))
        })?;
        self.authorization = Some(format!("Bearer {t}"));
        Ok(())
    }

    /// The credentials to send to token realm `uri`, or `None` (with a warning, remembered for
    /// the messages of a refusal) when they must be withheld from it.
    fn creds_for_realm(&mut self, uri: &Uri, shown: &str) -> Option<Credentials> {
        let creds = self.creds.clone()?;
        let Some(reason) = withhold_reason(uri, &self.host, self.insecure) else {
            self.withheld = None;
            return Some(creds);
        };
        tracing::warn!(
            "{}: not sending the credentials from {} to token realm {shown}: {reason}; \
             asking for an anonymous token",
            self.name(),
            creds.source
        );
        self.withheld = Some(format!("token realm {shown}: {reason}"));
        None
    }

    /// Why the credentials were not sent, for an error message.
    pub(super) fn withheld_note(&self) -> String {
        match (&self.withheld, &self.creds) {
            (Some(w), Some(c)) => format!(
                "the credentials from {} were withheld from the {w}",
                c.source
            ),
            _ => String::new(),
        }
    }

    /// The agent for a token realm: the registry's own on its host; elsewhere one that
    /// verifies TLS, unless `registries.conf` marks that host insecure too.
    fn realm_agent(&mut self, uri: &Uri) -> Agent {
        if !self.insecure || same_host(uri, &self.host) {
            return self.agent.clone();
        }
        let host = uri
            .authority()
            .map(|a| a.as_str().rsplit('@').next().unwrap_or("").to_string())
            .unwrap_or_default();
        if self.conf.is_insecure(&host, "") {
            return self.agent.clone();
        }
        self.verified_agent
            .get_or_insert_with(|| super::make_agent(self.timeout, true))
            .clone()
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
    fn where_credentials_may_go() {
        let ok = |realm: &str, reg: &str, insecure: bool| {
            withhold_reason(&realm.parse::<Uri>().unwrap(), reg, insecure).is_none()
        };
        // TLS: anywhere.
        assert!(ok("https://auth.example/token", "reg.example", false));
        assert!(ok("https://auth.example:8443/t", "reg.example:5000", true));
        // Plain HTTP: never for a secure registry, not even on its own host.
        assert!(!ok("http://auth.example/token", "reg.example", false));
        assert!(!ok("http://reg.example/token", "reg.example", false));
        // Plain HTTP to an insecure registry's own host (any port, any case) only.
        assert!(ok("http://reg.lan:5001/token", "reg.lan:5000", true));
        assert!(ok("http://REG.lan/token", "reg.lan:5000", true));
        assert!(ok("http://[::1]:5001/t", "[::1]:5000", true));
        assert!(!ok("http://auth.lan/token", "reg.lan:5000", true));
        assert!(!ok("http://127.0.0.2:5000/token", "127.0.0.1:5000", true));
        assert!(!ok("http://reg.lan.evil.example/t", "reg.lan", true));
        // User info does not make another host the registry's.
        assert!(!ok("http://reg.lan@evil.example/t", "reg.lan", true));
        assert!(!ok(
            "http://reg.lan:5000@evil.example/t",
            "reg.lan:5000",
            true
        ));
    }
}
