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
    pub manifest_digest: Sha256Digest,
    pub version: Option<String>,
    pub timestamp: Option<String>,
    pub architecture: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    /// The image updates come from (bootc's spec.image).
    pub image: ImageReference,
    pub manifest_digest: Sha256Digest,
    pub config_digest: Sha256Digest,
    pub version: Option<String>,
    pub timestamp: Option<String>,
    pub architecture: String,
    pub stateroot: String,
    pub id: String,
    pub serial: u32,
    /// The whole kernel command line of the deployment except `ociboot=`.
    pub kargs: Vec<String>,
    /// The part of `kargs` that came from the image's kargs.d (diffed on upgrade).
    pub image_kargs: Vec<String>,
    #[serde(default)]
    pub pinned: bool,
    #[serde(default)]
    pub cached_update: Option<CachedUpdate>,
    pub deployed_at: String,
    /// Where this deployment's kernel and initramfs were installed in /boot.
    #[serde(default)]
    pub kernel: Option<BootFiles>,
}

/// Kernel and initramfs paths as boot entries name them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BootFiles {
    pub linux: String,
    pub initrd: Option<String>,
}

impl Origin {
    pub fn read(path: &Path) -> Result<Origin> {
        let data = std::fs::read(path).at("reading", path)?;
        serde_json::from_slice(&data)
            .map_err(|e| Error::Invalid(format!("{}: malformed origin: {e}", path.display())))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let data =
            serde_json::to_vec_pretty(self).map_err(ociboot_store::Error::serialize("origin"))?;
        ociboot_store::fsutil::write_atomic(path, &data)?;
        Ok(())
    }
}
