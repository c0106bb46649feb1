//! Manifests, indexes and configs: OCI and Docker schema 2, parsed strictly.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;

use crate::digest::Sha256Digest;
use crate::error::{Error, Result};
use crate::json;
use crate::text::sanitize;

/// Media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index (a list of manifests, usually one per platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image configuration.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a Docker schema 2 image manifest, accepted like [`OCI_MANIFEST`].
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker schema 2 manifest list, accepted like [`OCI_INDEX`].
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Media type of a Docker image configuration, accepted like [`OCI_CONFIG`].
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Media type of a Docker schema 1 manifest. Not supported: it is recognised only so that
/// [`parse_manifest`] can refuse it with a clear message.
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Media type of a signed Docker schema 1 manifest; refused like [`DOCKER_SCHEMA1`].
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Accept header for manifest requests, most preferred first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests larger than this are refused (containers/image uses 4 MiB too).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Configs larger than this are refused.
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed: a plain tar.
    None,
    /// A gzip-compressed tar.
    Gzip,
    /// A zstd-compressed tar.
    Zstd,
}

/// The compression of a layer media type; `None` for anything that is not a tar layer (the
/// caller decides whether that is an error).
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// A manifest or index as fetched: its bytes and their digest.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// The document exactly as received; the digest is computed over these bytes.
    pub bytes: Vec<u8>,
    /// SHA-256 digest of `bytes`, already checked against any digest the reference or the source
    /// announced.
    pub digest: Sha256Digest,
    /// Media type announced by the source (Content-Type or descriptor), if any.
    pub media_type: Option<String>,
}

/// What a manifest document turned out to be.
#[derive(Debug)]
pub enum Parsed {
    /// An image manifest: one config and its layers.
    Manifest(Box<ImageManifest>),
    /// An image index (or Docker manifest list): one manifest per platform, to choose from with
    /// [`select_platform`].
    Index(Box<ImageIndex>),
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<serde::de::IgnoredAny>,
    layers: Option<serde::de::IgnoredAny>,
}

/// Parse a manifest or index, checking the media type against the document.
/// `what` names the image for error messages.
/// JSON nested deeper than [`json::MAX_JSON_DEPTH`] is refused before anything else.
pub fn parse_manifest(raw: &RawManifest, what: &str) -> Result<Parsed> {
    let blob = format!("{what}: manifest {}", raw.digest);
    let probe: Probe = json::parse(&raw.bytes, &blob, "not valid JSON")?;
    let announced = raw
        .media_type
        .as_deref()
        .map(|m| m.split(';').next().unwrap_or(m).trim())
        .filter(|m| !m.is_empty() && *m != "application/json" && *m != "application/octet-stream");
    let mt = match (probe.media_type.as_deref(), announced) {
        (Some(doc), Some(ann)) if doc != ann => {
            return Err(Error::Invalid(format!(
                "{blob} says media type {} but was served as {}",
                sanitize(doc),
                sanitize(ann)
            )))
        }
        (Some(doc), _) => doc.to_string(),
        (None, Some(ann)) => ann.to_string(),
        (None, None) => {
            if probe.manifests.is_some() {
                OCI_INDEX.to_string()
            } else if probe.layers.is_some() {
                OCI_MANIFEST.to_string()
            } else {
                return Err(Error::Invalid(format!(
                    "{blob} has no media type and is neither an image manifest nor an index"
                )));
            }
        }
    };
    if probe.schema_version != Some(2) {
        return Err(Error::Invalid(format!(
            "{blob} has schemaVersion {:?}; only schema version 2 is supported",
            probe.schema_version
        )));
    }
    match mt.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: ImageManifest = json::parse(&raw.bytes, &blob, "malformed image manifest")?;
            Ok(Parsed::Manifest(Box::new(m)))
        }
        OCI_INDEX | DOCKER_LIST => {
            let i: ImageIndex = json::parse(&raw.bytes, &blob, "malformed image index")?;
            Ok(Parsed::Index(Box::new(i)))
        }
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(Error::Invalid(format!(
            "{what}: Docker schema 1 manifests are not supported; push the image again with a current tool"
        ))),
        other => Err(Error::Invalid(format!(
            "{what}: unsupported manifest media type {}",
            sanitize(other)
        ))),
    }
}

/// The platform ociboot runs on, in OCI terms.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

fn is_image_manifest(d: &Descriptor) -> bool {
    let mt = d.media_type().to_string();
    mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
}

/// The entry for `os/arch`, or the only image manifest of an index whose entries name no
/// platform.
fn pick<'a>(index: &'a ImageIndex, os: &str, arch: &str) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| is_image_manifest(d))
        .collect();
    if let Some(d) = candidates.iter().find(|d| {
        d.platform()
            .as_ref()
            .is_some_and(|p| p.os().to_string() == os && p.architecture().to_string() == arch)
    }) {
        return Some(d);
    }
    match candidates.as_slice() {
        [only] if only.platform().is_none() => Some(only),
        _ => None,
    }
}

fn no_platform(what: &str, index: &str, os: &str, arch: &str, listing: String) -> Error {
    Error::NotFound(format!(
        "{what}: the image index {index}has no image manifest for {os}/{arch} (it lists: \
         {listing})"
    ))
}

/// Pick the manifest for `os/arch` from an index. When there is none, the error lists every
/// entry in full, like [`select_platform_of`], except os.version and os.features, which
/// oci-spec does not read: prefer [`select_platform_of`] when the index's bytes are at hand.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    os: &str,
    arch: &str,
    what: &str,
) -> Result<&'a Descriptor> {
    pick(index, os, arch).ok_or_else(|| {
        let bytes = serde_json::to_vec(index).unwrap_or_default();
        no_platform(what, "", os, arch, describe_entries(&bytes))
    })
}

/// Pick the manifest for `os/arch` from `index`, parsed from `raw`. When there is none, the
/// error names the index and lists every entry in full (os/architecture/variant, os.version,
/// os.features, and the media type of an entry that is not an image manifest), each name
/// quoted when it holds anything but `[A-Za-z0-9._+-]`, so entries that differ only in a
/// trailing space, a variant, an os.version or their media type can be told apart.
pub fn select_platform_of<'a>(
    raw: &RawManifest,
    index: &'a ImageIndex,
    os: &str,
    arch: &str,
    what: &str,
) -> Result<&'a Descriptor> {
    pick(index, os, arch).ok_or_else(|| {
        let name = format!("{} ", raw.digest);
        no_platform(what, &name, os, arch, describe_entries(&raw.bytes))
    })
}

#[derive(Deserialize)]
struct IndexEntries {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    platform: Option<EntryPlatform>,
}

#[derive(Deserialize)]
struct EntryPlatform {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
    #[serde(rename = "os.version", alias = "os_version")]
    os_version: Option<String>,
    #[serde(rename = "os.features", alias = "os_features")]
    os_features: Option<Vec<String>>,
}

/// The entries of an index for a message, at most 16 of them.
fn describe_entries(index: &[u8]) -> String {
    const SHOWN: usize = 16;
    let Ok(idx) = serde_json::from_slice::<IndexEntries>(index) else {
        return "entries that cannot be read".to_string();
    };
    let mut v: Vec<String> = idx
        .manifests
        .iter()
        .take(SHOWN)
        .map(describe_entry)
        .collect();
    if idx.manifests.len() > SHOWN {
        v.push(format!("and {} more", idx.manifests.len() - SHOWN));
    }
    if v.is_empty() {
        "nothing".to_string()
    } else {
        v.join("; ")
    }
}

/// A platform name as it is when it is plain, quoted (and escaped) when it is not.
fn platform_name(s: Option<&str>) -> String {
    quoted_unless_plain(s, &['.', '_', '+', '-'])
}

/// `s` as it is when it is made of ASCII letters, digits and `also`; else `{s:?}`, sanitized.
fn quoted_unless_plain(s: Option<&str>, also: &[char]) -> String {
    let Some(s) = s else {
        return "(none)".to_string();
    };
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || also.contains(&c));
    if plain {
        s.to_string()
    } else {
        sanitize(&format!("{s:?}"))
    }
}

/// One index entry: `os/arch[/variant]`, its os.version and os.features, and its media type
/// when that is not an image manifest's.
fn describe_entry(e: &IndexEntry) -> String {
    let mut s = match &e.platform {
        None => "no platform".to_string(),
        Some(p) => {
            let mut s = format!(
                "{}/{}",
                platform_name(p.os.as_deref()),
                platform_name(p.architecture.as_deref())
            );
            if let Some(v) = &p.variant {
                s.push_str(&format!("/{}", platform_name(Some(v))));
            }
            if let Some(v) = &p.os_version {
                s.push_str(&format!(" os.version {}", platform_name(Some(v))));
            }
            if let Some(f) = &p.os_features {
                let f: Vec<String> = f.iter().map(|x| platform_name(Some(x))).collect();
                s.push_str(&format!(" os.features {}", f.join(",")));
            }
            s
        }
    };
    let mt = e.media_type.as_deref().unwrap_or("");
    if mt != OCI_MANIFEST && mt != DOCKER_MANIFEST {
        s.push_str(&format!(
            " ({}: not an image manifest)",
            quoted_unless_plain(Some(mt), &['.', '_', '+', '-', '/'])
        ));
    }
    s
}

/// Check a manifest's descriptors before anything is downloaded: sha256 digests, known layer
/// media types, a config that is a container image config.
pub fn validate_manifest(m: &ImageManifest, what: &str) -> Result<()> {
    let cfg_mt = m.config().media_type().to_string();
    if cfg_mt != OCI_CONFIG && cfg_mt != DOCKER_CONFIG {
        return Err(Error::Invalid(format!(
            "{what}: config media type {} is not a container image configuration",
            sanitize(&cfg_mt)
        )));
    }
    Sha256Digest::try_from(m.config().digest())
        .map_err(|e| Error::Invalid(format!("{what}: config descriptor: {e}")))?;
    for (i, l) in m.layers().iter().enumerate() {
        let mt = l.media_type().to_string();
        if layer_compression(&mt).is_none() {
            return Err(Error::Invalid(format!(
                "{what}: layer {i} ({}) has unsupported media type {}",
                l.digest(),
                sanitize(&mt)
            )));
        }
        Sha256Digest::try_from(l.digest())
            .map_err(|e| Error::Invalid(format!("{what}: layer {i}: {e}")))?;
    }
    Ok(())
}

/// Parse a config and check it matches the manifest (one diff_id per layer). JSON nested
/// deeper than [`json::MAX_JSON_DEPTH`] is refused before anything else.
pub fn parse_config(bytes: &[u8], m: &ImageManifest, what: &str) -> Result<ImageConfiguration> {
    let blob = format!("{what}: config {}", m.config().digest());
    let c: ImageConfiguration = json::parse(bytes, &blob, "malformed image config")?;
    let n = c.rootfs().diff_ids().len();
    if n != m.layers().len() {
        return Err(Error::Invalid(format!(
            "{what}: config lists {n} diff_ids but the manifest has {} layers",
            m.layers().len()
        )));
    }
    for d in c.rootfs().diff_ids() {
        d.parse::<Sha256Digest>()
            .map_err(|e| Error::Invalid(format!("{what}: config diff_id: {e}")))?;
    }
    Ok(c)
}

/// The version label bootc shows: `org.opencontainers.image.version`, else legacy `version`.
pub fn version_label(c: &ImageConfiguration) -> Option<String> {
    let labels = c.config().as_ref()?.labels().as_ref()?;
    labels
        .get("org.opencontainers.image.version")
        .or_else(|| labels.get("version"))
        .cloned()
}

/// The timestamp bootc shows: label `org.opencontainers.image.created`, else the config's `created`.
pub fn created_timestamp(c: &ImageConfiguration) -> Option<String> {
    c.config()
        .as_ref()
        .and_then(|cc| cc.labels().as_ref())
        .and_then(|l| l.get("org.opencontainers.image.created").cloned())
        .or_else(|| c.created().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str, mt: Option<&str>) -> RawManifest {
        RawManifest {
            bytes: s.as_bytes().to_vec(),
            digest: Sha256Digest::of(s.as_bytes()),
            media_type: mt.map(str::to_string),
        }
    }

    const M: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":3,"digest":"sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}]}"#;

    #[test]
    fn docker_manifest_parses() {
        let p = parse_manifest(&raw(M, Some(DOCKER_MANIFEST)), "img").unwrap();
        let Parsed::Manifest(m) = p else { panic!() };
        validate_manifest(&m, "img").unwrap();
        assert_eq!(m.layers().len(), 1);
    }

    #[test]
    fn bad_manifests_are_refused() {
        assert!(parse_manifest(&raw("{", None), "img")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
        assert!(parse_manifest(&raw(M, Some(OCI_MANIFEST)), "img").is_err());
        let e = parse_manifest(&raw(r#"{"schemaVersion":1}"#, None), "img").unwrap_err();
        assert!(e.to_string().contains("img"), "{e}");
        let e = parse_manifest(
            &raw(r#"{"schemaVersion":2,"mediaType":"text/x"}"#, None),
            "img",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("unsupported manifest media type"),
            "{e}"
        );
    }

    #[test]
    fn compression() {
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(layer_compression("application/vnd.example"), None);
    }
}
