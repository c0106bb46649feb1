//! # ociboot-oci: image references, transports and manifests
//!
//! The first stage of ociboot's data flow. It turns what a user types (`quay.io/org/os:1`,
//! `oci:/srv/layout:v2`, `oci-archive:/tmp/os.tar`) into an [`ImageSource`] that hands out a
//! verified manifest and config ([`fetch_image`]) and layer streams checked against their
//! digest and size while they are read ([`open_blob`]).
//!
//! It knows nothing of the store, deployments or the CLI, and it never writes to disk.
//!
//! ```no_run
//! use ociboot_oci::{fetch_image, open_source, ImageReference, RegistryOptions};
//! let r: ImageReference = "oci:/srv/layout:v1".parse()?;
//! let mut src = open_source(&r, &RegistryOptions::from_env()?)?;
//! let img = fetch_image(src.as_mut())?;
//! println!("{} has {} layers", img.manifest_digest, img.manifest.layers().len());
//! # Ok::<(), ociboot_oci::Error>(())
//! ```

pub mod config;
pub mod digest;
mod error;
pub mod json;
pub mod layout;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod source;
pub mod text;

pub use config::{AuthFiles, Credentials, RegistriesConf};
pub use digest::{BlobCheck, HashingReader, Sha256Digest, VerifyingReader};
pub use error::{Error, Result};
pub use manifest::{layer_compression, Compression};
pub use reference::{ImageReference, LayoutRef, RegistryRef, Target, Transport};
pub use registry::{RegistryClient, RegistryOptions};
pub use source::{
    fetch_config, fetch_image, fetch_manifest, open_blob, open_source, FetchedImage,
    FetchedManifest, ImageSource, LayerInfo,
};

pub use oci_spec;
