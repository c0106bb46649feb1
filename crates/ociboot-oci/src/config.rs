//! Where registries are allowed to be insecure (`registries.conf`) and where credentials come
//! from (containers auth files), read the way containers/image reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use ociboot_fs::IoError;

use crate::error::{Error, Result};

/// Registries (or repository prefixes) marked `insecure = true`.
#[derive(Debug, Clone, Default)]
pub struct RegistriesConf {
    insecure: Vec<String>,
    /// Files that were read, for messages.
    pub files: Vec<PathBuf>,
}

#[derive(Deserialize, Default)]
struct ConfFile {
    #[serde(default)]
    registry: Vec<RegistryEntry>,
    #[serde(default)]
    registries: Option<V1>,
}

#[derive(Deserialize)]
struct RegistryEntry {
    location: Option<String>,
    prefix: Option<String>,
    #[serde(default)]
    insecure: bool,
}

#[derive(Deserialize, Default)]
struct V1 {
    insecure: Option<V1List>,
}

#[derive(Deserialize, Default)]
struct V1List {
    #[serde(default)]
    registries: Vec<String>,
}

impl RegistriesConf {
    /// `$CONTAINERS_REGISTRIES_CONF` alone if set, else `/etc/containers/registries.conf` and
    /// the `*.conf` drop-ins of `/etc/containers/registries.conf.d/` in name order.
    pub fn load_default() -> Result<Self> {
        let mut files = Vec::new();
        if let Some(p) = std::env::var_os("CONTAINERS_REGISTRIES_CONF") {
            files.push(PathBuf::from(p));
        } else {
            files.push(PathBuf::from("/etc/containers/registries.conf"));
            if let Ok(rd) = std::fs::read_dir("/etc/containers/registries.conf.d") {
                let mut v: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                    .collect();
                v.sort();
                files.extend(v);
            }
        }
        Self::load(&files)
    }

    /// Read the given files; missing files are skipped, malformed ones are errors.
    pub fn load(files: &[PathBuf]) -> Result<Self> {
        let mut conf = RegistriesConf::default();
        for f in files {
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(IoError::at("reading", f, e).into()),
            };
            let parsed: ConfFile = toml::from_str(&text)
                .map_err(|e| Error::Invalid(format!("{}: {e}", f.display())))?;
            for r in parsed.registry {
                if r.insecure {
                    if let Some(p) = r.prefix.or(r.location) {
                        conf.insecure.push(p);
                    }
                }
            }
            if let Some(list) = parsed.registries.and_then(|r| r.insecure) {
                conf.insecure.extend(list.registries);
            }
            conf.files.push(f.clone());
        }
        Ok(conf)
    }

    /// Mark a registry insecure programmatically.
    pub fn add_insecure(&mut self, prefix: &str) {
        self.insecure.push(prefix.to_string());
    }

    /// Whether `domain/repository` may be reached over plain HTTP or unverified TLS.
    pub fn is_insecure(&self, domain: &str, repository: &str) -> bool {
        let full = format!("{domain}/{repository}");
        self.insecure.iter().any(|p| prefix_matches(p, &full))
    }
}

fn prefix_matches(prefix: &str, full: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if let Some(suffix) = prefix.strip_prefix("*.") {
        // *.example.com matches hosts below example.com
        let host = full.split('/').next().unwrap_or("");
        let host = host.split(':').next().unwrap_or(host);
        return host.ends_with(&format!(".{suffix}"));
    }
    full == prefix || full.starts_with(&format!("{prefix}/"))
}

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name, sent in HTTP basic auth or to the token service.
    pub username: String,
    /// The password or access token, sent with `username`.
    pub password: String,
    /// The auth file and key they came from.
    pub source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} from {})", self.username, self.source)
    }
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// Auth files in the order they are consulted.
#[derive(Debug, Clone, Default)]
pub struct AuthFiles {
    /// The candidate files, most preferred first; missing ones are skipped when looking up.
    pub files: Vec<PathBuf>,
}

impl AuthFiles {
    /// The host's pull secret (`/run/ociboot/auth.json`, `/etc/ociboot/auth.json`,
    /// `/usr/lib/ociboot/auth.json`, first found, as bootc does under ostree/), then
    /// `$REGISTRY_AUTH_FILE` or `${XDG_RUNTIME_DIR}/containers/auth.json`, then
    /// `$XDG_CONFIG_HOME/containers/auth.json` and `~/.docker/config.json`.
    pub fn default_files() -> Self {
        let mut files = Vec::new();
        if let Some(host) = [
            "/run/ociboot/auth.json",
            "/etc/ociboot/auth.json",
            "/usr/lib/ociboot/auth.json",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        {
            files.push(host);
        }
        if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
            files.push(PathBuf::from(p));
        } else if let Some(rt) = std::env::var_os("XDG_RUNTIME_DIR") {
            files.push(Path::new(&rt).join("containers/auth.json"));
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        if let Some(cfg) = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".config")))
        {
            files.push(cfg.join("containers/auth.json"));
        }
        if let Some(h) = home {
            files.push(h.join(".docker/config.json"));
        }
        AuthFiles { files }
    }

    /// Credentials for `domain/repository`: the most specific key of the first file that has one.
    ///
    /// A file that group or others may access is used, with a warning naming it. Errors name
    /// the file and the key but never quote the file: it holds secrets.
    pub fn lookup(&self, domain: &str, repository: &str) -> Result<Option<Credentials>> {
        for f in &self.files {
            let Some(text) = read_auth_file(f)? else {
                continue;
            };
            let what = format!("auth file {}", f.display());
            crate::json::check_depth(&text, &what)?;
            let parsed: AuthFile = serde_json::from_slice(&text).map_err(|e| {
                Error::Invalid(format!(
                    "{what}: {}; expected {{\"auths\": {{\"REGISTRY\": {{\"auth\": \"BASE64\"}}}}}}",
                    crate::json::describe_without_values(&e)
                ))
            })?;
            let normalized: BTreeMap<String, &AuthEntry> = parsed
                .auths
                .iter()
                .map(|(k, v)| (normalize_key(k), v))
                .collect();
            // Most specific first: domain/a/b, domain/a, domain.
            let mut key = format!("{domain}/{repository}");
            loop {
                if let Some(e) = normalized.get(&key) {
                    return decode_entry(e, &format!("{} ({key})", f.display())).map(Some);
                }
                match key.rfind('/') {
                    Some(i) => key.truncate(i),
                    None => break,
                }
            }
            if domain == crate::reference::DEFAULT_DOMAIN {
                for k in ["registry-1.docker.io", "index.docker.io"] {
                    if let Some(e) = normalized.get(k) {
                        return decode_entry(e, &format!("{} ({k})", f.display())).map(Some);
                    }
                }
            }
        }
        Ok(None)
    }
}

/// An auth file's bytes, `None` when it does not exist. Warns (naming the file, never its
/// content) when its mode lets group or others at it.
fn read_auth_file(f: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let mut file = match std::fs::File::open(f) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IoError::at("opening auth file", f, e).into()),
    };
    let meta = file
        .metadata()
        .map_err(|e| IoError::at("reading the mode of auth file", f, e))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "auth file {} holds registry credentials but its mode {mode:04o} lets group or \
             others access it; restrict it with chmod 600",
            f.display()
        );
    }
    let mut text = Vec::new();
    file.read_to_end(&mut text)
        .map_err(|e| IoError::at("reading auth file", f, e))?;
    Ok(Some(text))
}

fn normalize_key(k: &str) -> String {
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let k = k.trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    k.to_string()
}

fn decode_entry(e: &AuthEntry, source: &str) -> Result<Credentials> {
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        return Ok(Credentials {
            username: u.clone(),
            password: p.clone(),
            source: source.to_string(),
        });
    }
    let auth = e
        .auth
        .as_deref()
        .ok_or_else(|| Error::Invalid(format!("auth entry {source} has no \"auth\" field")))?;
    // The decoder's message would quote the offending character of the secret: not shown.
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| {
            Error::Invalid(format!(
                "auth entry {source}: the \"auth\" value is not valid base64"
            ))
        })?;
    let s = String::from_utf8(bytes)
        .map_err(|_| Error::Invalid(format!("auth entry {source}: not UTF-8")))?;
    let (u, p) = s
        .split_once(':')
        .ok_or_else(|| Error::Invalid(format!("auth entry {source}: expected user:password")))?;
    Ok(Credentials {
        username: u.to_string(),
        password: p.to_string(),
        source: source.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_matching() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("r.conf");
        std::fs::write(
            &f,
            "[[registry]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n[[registry]]\nprefix=\"quay.io/team\"\nlocation=\"mirror.local/team\"\ninsecure=true\n[[registry]]\nlocation=\"*.lan\"\ninsecure=true\n[registries.insecure]\nregistries=[\"old.example\"]\n",
        )
        .unwrap();
        let c = RegistriesConf::load(&[f, d.path().join("missing.conf")]).unwrap();
        assert!(c.is_insecure("127.0.0.1:5000", "x/y"));
        assert!(!c.is_insecure("127.0.0.1:5001", "x/y"));
        assert!(c.is_insecure("quay.io", "team/os"));
        assert!(!c.is_insecure("quay.io", "teamx/os"));
        assert!(c.is_insecure("reg.lan:5000", "os"));
        assert!(c.is_insecure("old.example", "os"));
        std::fs::write(d.path().join("bad.conf"), "[[registry]\n").unwrap();
        let e = RegistriesConf::load(&[d.path().join("bad.conf")]).unwrap_err();
        assert!(e.to_string().contains("bad.conf"), "{e}");
    }

    #[test]
    fn auth_lookup() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("auth.json");
        // user:pass and other:secret
        std::fs::write(
            &a,
            r#"{"auths":{"https://reg.example:5000":{"auth":"dXNlcjpwYXNz"},"reg.example:5000/special":{"auth":"b3RoZXI6c2VjcmV0"}}}"#,
        )
        .unwrap();
        let files = AuthFiles {
            files: vec![d.path().join("none.json"), a.clone()],
        };
        let c = files
            .lookup("reg.example:5000", "plain/os")
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("user", "pass"));
        let c = files
            .lookup("reg.example:5000", "special/os")
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "other");
        assert!(files.lookup("other.example", "x").unwrap().is_none());
        std::fs::write(&a, "{not json").unwrap();
        let e = files.lookup("reg.example:5000", "x").unwrap_err();
        assert!(e.to_string().contains("auth.json"), "{e}");
    }
}
