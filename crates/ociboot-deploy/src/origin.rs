//! A deployment's origin: where it came from and how it boots. One small JSON file beside the
//! deployment directory, replaced atomically.

use std::path::Path;

use ociboot_oci::{ImageReference, Sha256Digest};
use serde::{Deserialize, Serialize};

use crate::error::{Ctx, Error, Result};

/// What `upgrade --check` found last time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CachedUpdate {
    /// The manifest digest of the image found.
    pub manifest_digest: Sha256Digest,
    /// Its `org.opencontainers.image.version` label, else its legacy `version` label.
    pub version: Option<String>,
    /// When it was built (RFC 3339): label `org.opencontainers.image.created`, else config
    /// `created`.
    pub timestamp: Option<String>,
    /// The architecture of its config, such as `amd64`.
    pub architecture: String,
}

/// A deployment's origin: the image it was made from, its identity and its kernel command line,
/// stored as `<id>.origin` beside the deployment directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    /// The image updates come from (bootc's spec.image).
    pub image: ImageReference,
    /// The manifest digest of the image deployed: its identity in the store.
    pub manifest_digest: Sha256Digest,
    /// The digest of that image's config.
    pub config_digest: Sha256Digest,
    /// The image's `org.opencontainers.image.version` label, else its legacy `version` label.
    pub version: Option<String>,
    /// When the image was built (RFC 3339): label `org.opencontainers.image.created`, else config
    /// `created`.
    pub timestamp: Option<String>,
    /// The architecture of the image's config, such as `amd64`.
    pub architecture: String,
    /// The stateroot the deployment belongs to.
    pub stateroot: String,
    /// The deployment id: `<first 16 hex digits of the manifest digest>.<serial>`.
    pub id: String,
    /// The serial in the id, which tells deployments of the same image apart (0 for the first).
    pub serial: u32,
    /// The whole kernel command line of the deployment except `ociboot=`.
    pub kargs: Vec<String>,
    /// The part of `kargs` that came from the image's kargs.d (diffed on upgrade).
    pub image_kargs: Vec<String>,
    /// Pinned: finalize keeps its boot entry after the new and booted ones, so the GC keeps it.
    #[serde(default)]
    pub pinned: bool,
    /// What the last `upgrade --check` found; `None` if none ran or the image had not changed.
    #[serde(default)]
    pub cached_update: Option<CachedUpdate>,
    /// When the deployment was checked out (RFC 3339, UTC).
    pub deployed_at: String,
    /// Where this deployment's kernel and initramfs were installed in /boot.
    #[serde(default)]
    pub kernel: Option<BootFiles>,
}

/// Kernel and initramfs paths as boot entries name them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BootFiles {
    /// The kernel, as the entry's `linux` line names it (from the boot filesystem's root).
    pub linux: String,
    /// The initramfs, as the entry's `initrd` line names it; `None` if the kernel has none.
    pub initrd: Option<String>,
}

impl Origin {
    /// Read the origin file at `path`; malformed JSON is [`Error::Invalid`] naming the file.
    pub fn read(path: &Path) -> Result<Origin> {
        let data = std::fs::read(path).at("reading", path)?;
        serde_json::from_slice(&data)
            .map_err(|e| Error::Invalid(format!("{}: malformed origin: {e}", path.display())))
    }

    /// Write the origin to `path` as pretty JSON, atomically (a temporary file renamed over it).
    pub fn write(&self, path: &Path) -> Result<()> {
        let data =
            serde_json::to_vec_pretty(self).map_err(ociboot_store::Error::serialize("origin"))?;
        ociboot_fs::write_atomic(path, &data)?;
        Ok(())
    }
}
