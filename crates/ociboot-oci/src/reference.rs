//! Image references in the syntax users know from bootc, skopeo and podman.
//!
//! ```text
//! quay.io/org/os:tag                 registry (the default transport)
//! docker://quay.io/org/os@sha256:…   registry, explicit
//! oci:/path/to/layout[:tag]          an OCI image layout directory
//! oci-archive:/path/to/file.tar[:tag] the same, as a tar file
//! ```

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::error::{Error, Result};

/// How an image is reached. Names as in bootc's status (`registry`, `oci`, `oci-archive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// A repository on a container registry, reached over the distribution API (`docker://`,
    /// `registry:` or no prefix).
    Registry,
    /// An OCI image layout directory (`oci:`).
    Oci,
    /// An OCI image layout packed in a tar file (`oci-archive:`).
    OciArchive,
}

impl Transport {
    /// The name bootc uses for the transport: `registry`, `oci` or `oci-archive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Registry => "registry",
            Transport::Oci => "oci",
            Transport::OciArchive => "oci-archive",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "registry" | "docker" => Ok(Transport::Registry),
            "oci" => Ok(Transport::Oci),
            "oci-archive" => Ok(Transport::OciArchive),
            other => Err(Error::invalid_ref(
                other,
                "unknown transport (expected registry, oci or oci-archive)",
            )),
        }
    }
}

/// An image and the transport that reaches it, as bootc's `ImageReference` {image, transport}.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct ImageReference {
    /// How the image is reached.
    pub transport: Transport,
    /// The transport-specific name: `quay.io/org/os:tag`, or `/path[:tag]` for layouts.
    pub image: String,
}

impl ImageReference {
    /// Build from a transport and a name given without prefix (bootc's `switch --transport`).
    pub fn new(transport: Transport, image: &str) -> Result<Self> {
        let image = image.trim();
        if image.is_empty() {
            return Err(Error::invalid_ref(image, "empty image name"));
        }
        let r = ImageReference {
            transport,
            image: image.to_string(),
        };
        // Validate now so that errors appear before anything is done.
        r.target()?;
        Ok(r)
    }

    /// The parsed, transport-specific target.
    pub fn target(&self) -> Result<Target> {
        match self.transport {
            Transport::Registry => Ok(Target::Registry(self.image.parse()?)),
            Transport::Oci | Transport::OciArchive => {
                let (path, tag) = match self.image.split_once(':') {
                    Some((p, t)) => (p, Some(t)),
                    None => (self.image.as_str(), None),
                };
                if path.is_empty() {
                    return Err(Error::invalid_ref(&self.image, "empty path"));
                }
                if let Some(t) = tag {
                    if t.is_empty() {
                        return Err(Error::invalid_ref(&self.image, "empty tag after ':'"));
                    }
                }
                let l = LayoutRef {
                    path: PathBuf::from(path),
                    tag: tag.map(str::to_string),
                };
                Ok(if self.transport == Transport::Oci {
                    Target::OciDir(l)
                } else {
                    Target::OciArchive(l)
                })
            }
        }
    }
}

impl FromStr for ImageReference {
    type Err = Error;
    /// Parse `[TRANSPORT:]NAME` as skopeo does; no prefix means a registry image.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("docker://") {
            return ImageReference::new(Transport::Registry, rest);
        }
        if let Some(rest) = s.strip_prefix("registry:") {
            return ImageReference::new(Transport::Registry, rest);
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            return ImageReference::new(Transport::OciArchive, rest);
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            return ImageReference::new(Transport::Oci, rest);
        }
        for unsupported in [
            "containers-storage:",
            "docker-archive:",
            "docker-daemon:",
            "dir:",
        ] {
            if s.starts_with(unsupported) {
                return Err(Error::invalid_ref(
                    s,
                    format!(
                        "transport {} is not supported (use registry, oci or oci-archive)",
                        unsupported.trim_end_matches(':')
                    ),
                ));
            }
        }
        ImageReference::new(Transport::Registry, s)
    }
}

impl fmt::Display for ImageReference {
    /// Registry images print bare (as bootc shows them); others as `transport:name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            Transport::Registry => f.write_str(&self.image),
            t => write!(f, "{t}:{}", self.image),
        }
    }
}

/// What an [`ImageReference`] points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An image in a registry repository.
    Registry(RegistryRef),
    /// An image in an OCI layout directory.
    OciDir(LayoutRef),
    /// An image in an OCI layout tar archive.
    OciArchive(LayoutRef),
}

/// `oci:` / `oci-archive:` target: a path and an optional tag (`org.opencontainers.image.ref.name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutRef {
    /// The layout directory, or the tar file holding the layout.
    pub path: PathBuf,
    /// Selects the image whose `org.opencontainers.image.ref.name` annotation is this; when `None`,
    /// the layout must hold exactly one image.
    pub tag: Option<String>,
}

/// A registry image name, normalised as docker/distribution does (`fedora` is
/// `docker.io/library/fedora:latest`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryRef {
    /// `host[:port]`
    pub domain: String,
    /// `org/name`
    pub repository: String,
    /// The tag, e.g. `latest`. Parsing sets `latest` when neither a tag nor a digest is given.
    pub tag: Option<String>,
    /// The manifest digest after `@`; when set, it is what is fetched and the tag is ignored.
    pub digest: Option<Sha256Digest>,
}

/// The registry assumed when a name has no host part, as docker/distribution does.
pub const DEFAULT_DOMAIN: &str = "docker.io";

impl RegistryRef {
    /// The tag, or digest, to ask the registry for.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `domain/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.repository)
    }

    /// The same repository pinned to a manifest digest.
    pub fn with_digest(&self, digest: Sha256Digest) -> RegistryRef {
        RegistryRef {
            domain: self.domain.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*
    if c.is_empty() {
        return false;
    }
    let b = c.as_bytes();
    if !b[0].is_ascii_lowercase() && !b[0].is_ascii_digit() {
        return false;
    }
    if !b[b.len() - 1].is_ascii_lowercase() && !b[b.len() - 1].is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        // a separator run
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
        if i < b.len() && !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) || p.len() > 5 {
            return false;
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1]
            .bytes()
            .all(|c| c.is_ascii_hexdigit() || c == b':');
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

impl FromStr for RegistryRef {
    type Err = Error;
    fn from_str(input: &str) -> Result<Self> {
        let mut rest = input;
        let mut digest = None;
        if let Some((n, d)) = rest.rsplit_once('@') {
            digest = Some(
                d.parse::<Sha256Digest>()
                    .map_err(|e| Error::invalid_ref(input, e.to_string()))?,
            );
            rest = n;
        }
        // A tag is after the last ':' that comes after the last '/'.
        let mut tag = None;
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        if let Some(i) = rest[last_slash..].rfind(':') {
            let t = &rest[last_slash + i + 1..];
            if !valid_tag(t) {
                return Err(Error::invalid_ref(input, format!("invalid tag {t:?}")));
            }
            tag = Some(t.to_string());
            rest = &rest[..last_slash + i];
        }
        if rest.is_empty() {
            return Err(Error::invalid_ref(input, "empty repository name"));
        }
        let (domain, repository) = match rest.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), rest.to_string()),
        };
        if !valid_domain(&domain) {
            return Err(Error::invalid_ref(
                input,
                format!("invalid registry host {domain:?}"),
            ));
        }
        let repository = if domain == DEFAULT_DOMAIN && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.len() > 255 {
            return Err(Error::invalid_ref(
                input,
                "repository name longer than 255 characters",
            ));
        }
        for c in repository.split('/') {
            if !valid_component(c) {
                return Err(Error::invalid_ref(
                    input,
                    format!("invalid repository name component {c:?} (lowercase letters, digits and separators)"),
                ));
            }
        }
        if tag.is_none() && digest.is_none() {
            tag = Some("latest".to_string());
        }
        Ok(RegistryRef {
            domain,
            repository,
            tag,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> RegistryRef {
        s.parse().unwrap()
    }

    #[test]
    fn registry_refs() {
        let r = reg("quay.io/org/os:tag");
        assert_eq!(
            (r.domain.as_str(), r.repository.as_str()),
            ("quay.io", "org/os")
        );
        assert_eq!(r.tag.as_deref(), Some("tag"));
        let r = reg("fedora");
        assert_eq!(r.to_string(), "docker.io/library/fedora:latest");
        let r = reg("127.0.0.1:5000/x/y");
        assert_eq!(r.domain, "127.0.0.1:5000");
        assert_eq!(r.reference(), "latest");
        let d = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let r = reg(&format!("localhost:5000/repo@{d}"));
        assert_eq!(r.reference(), d);
        assert_eq!(r.tag, None);
        let r = reg(&format!("localhost/repo:1.0@{d}"));
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.reference(), d);
        for bad in [
            "",
            "UPPER/x:1:2",
            "quay.io/Org/x",
            "x:",
            "quay.io/x@sha256:12",
            "a//b",
            "x:bad tag",
        ] {
            assert!(bad.parse::<RegistryRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn image_refs() {
        let r: ImageReference = "docker://quay.io/a/b:1".parse().unwrap();
        assert_eq!(r.transport, Transport::Registry);
        assert_eq!(r.image, "quay.io/a/b:1");
        assert_eq!(r.to_string(), "quay.io/a/b:1");
        let r: ImageReference = "oci:/srv/layout:v2".parse().unwrap();
        assert_eq!(
            r.target().unwrap(),
            Target::OciDir(LayoutRef {
                path: "/srv/layout".into(),
                tag: Some("v2".into())
            })
        );
        assert_eq!(r.to_string(), "oci:/srv/layout:v2");
        let r: ImageReference = "oci-archive:/x.tar".parse().unwrap();
        assert!(matches!(
            r.target().unwrap(),
            Target::OciArchive(LayoutRef { tag: None, .. })
        ));
        assert!("containers-storage:foo".parse::<ImageReference>().is_err());
        assert!("oci:".parse::<ImageReference>().is_err());
        assert!("oci:/x:".parse::<ImageReference>().is_err());
    }
}
