//! The one seam between transports and the store: an [`ImageSource`] hands out a manifest
//! and blobs; [`fetch_image`] turns that into a verified manifest and config
//! ([`fetch_manifest`] and [`fetch_config`], its two halves).

use std::io::Read;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};

use crate::digest::{read_verified, Sha256Digest, VerifyingReader};
use crate::error::{Error, Result};
use crate::manifest::{
    host_platform, parse_config, parse_manifest, select_platform_of, validate_manifest, Parsed,
    RawManifest, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE,
};
use crate::reference::{ImageReference, Target};
use crate::registry::{RegistryClient, RegistryOptions};

/// A place images come from: a registry repository, an OCI layout, an OCI archive.
pub trait ImageSource: Send {
    /// How to name this source in messages, e.g. `quay.io/org/os:1` or `oci:/srv/l:v1`.
    fn name(&self) -> String;
    /// The manifest (or index) the reference names.
    fn root_manifest(&mut self) -> Result<RawManifest>;
    /// A manifest by digest (an index entry). Verified against `desc` by the caller.
    fn manifest_bytes(&mut self, desc: &Descriptor) -> Result<Vec<u8>>;
    /// An unverified stream of the blob; use [`open_blob`], which verifies it.
    fn blob_stream(&mut self, digest: &Sha256Digest, size: u64) -> Result<Box<dyn Read + Send>>;
}

/// A blob stream checked against its digest and size as it is read.
pub fn open_blob(
    src: &mut dyn ImageSource,
    digest: &Sha256Digest,
    size: u64,
    what: &str,
) -> Result<VerifyingReader<Box<dyn Read + Send>>> {
    let r = src.blob_stream(digest, size)?;
    Ok(VerifyingReader::new(r, *digest, size, what.to_string()))
}

/// A manifest and config fetched and checked, ready for its layers to be imported.
#[derive(Debug, Clone)]
pub struct FetchedImage {
    /// Digest of the image manifest (the platform manifest when the reference named an index).
    pub manifest_digest: Sha256Digest,
    /// The image manifest exactly as received, the bytes `manifest_digest` covers.
    pub manifest_bytes: Vec<u8>,
    /// The image manifest, parsed and validated (sha256 digests, supported layer media types).
    pub manifest: ImageManifest,
    /// Digest of the image config, as the manifest's config descriptor gives it.
    pub config_digest: Sha256Digest,
    /// The image config exactly as received, checked against `config_digest` and its size.
    pub config_bytes: Vec<u8>,
    /// The image config, parsed; it lists one diff_id per manifest layer.
    pub config: ImageConfiguration,
}

impl FetchedImage {
    /// The layers with their parsed digests and diff_ids.
    pub fn layers(&self) -> Result<Vec<LayerInfo>> {
        let diff_ids = self.config.rootfs().diff_ids();
        self.manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(d, diff)| {
                Ok(LayerInfo {
                    digest: Sha256Digest::try_from(d.digest())?,
                    size: d.size(),
                    media_type: d.media_type().to_string(),
                    diff_id: diff.parse()?,
                })
            })
            .collect()
    }
}

/// One layer as the manifest and config describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the layer blob as stored (compressed, if it is), from the manifest.
    pub digest: Sha256Digest,
    /// Size of the layer blob as stored, in bytes, from the manifest.
    pub size: u64,
    /// The layer's media type, which gives its compression (see
    /// [`layer_compression`](crate::manifest::layer_compression)).
    pub media_type: String,
    /// Digest of the uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: Sha256Digest,
}

/// Open the source a reference names.
pub fn open_source(r: &ImageReference, opts: &RegistryOptions) -> Result<Box<dyn ImageSource>> {
    Ok(match r.target()? {
        Target::Registry(rr) => Box::new(RegistryClient::new(opts).open(rr)?),
        Target::OciDir(l) => Box::new(crate::layout::OciDir::open(&l)?),
        Target::OciArchive(l) => Box::new(crate::layout::OciArchive::open(&l)?),
    })
}

/// A manifest fetched and checked, its config not yet: enough to tell whether an image
/// changed (an `upgrade` that finds no update fetches nothing more).
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// Digest of the image manifest (the platform manifest when the reference named an index).
    pub digest: Sha256Digest,
    /// The image manifest exactly as received, the bytes `digest` covers.
    pub bytes: Vec<u8>,
    /// The image manifest, parsed and validated.
    pub manifest: ImageManifest,
}

/// Fetch and check the manifest (choosing the host platform from an index) and the config.
pub fn fetch_image(src: &mut dyn ImageSource) -> Result<FetchedImage> {
    let m = fetch_manifest(src)?;
    fetch_config(src, m)
}

/// Fetch and check the manifest only (choosing the host platform from an index): no blob.
pub fn fetch_manifest(src: &mut dyn ImageSource) -> Result<FetchedManifest> {
    let name = src.name();
    let root = src.root_manifest()?;
    if root.bytes.len() as u64 > MAX_MANIFEST_SIZE {
        return Err(Error::Invalid(format!(
            "{name}: manifest larger than {MAX_MANIFEST_SIZE} bytes"
        )));
    }
    let (raw, manifest) = match parse_manifest(&root, &name)? {
        Parsed::Manifest(m) => (root, *m),
        Parsed::Index(index) => {
            let (os, arch) = host_platform();
            let desc = select_platform_of(&root, &index, os, arch, &name)?.clone();
            let digest = Sha256Digest::try_from(desc.digest())
                .map_err(|e| Error::Invalid(format!("{name}: index entry: {e}")))?;
            let stream = src.manifest_bytes(&desc)?;
            let bytes = read_verified(
                &stream[..],
                digest,
                desc.size(),
                MAX_MANIFEST_SIZE,
                &format!("{name}: manifest {digest}"),
            )?;
            let raw = RawManifest {
                bytes,
                digest,
                media_type: Some(desc.media_type().to_string()),
            };
            match parse_manifest(&raw, &name)? {
                Parsed::Manifest(m) => (raw, *m),
                Parsed::Index(_) => {
                    return Err(Error::Invalid(format!(
                        "{name}: index entry {digest} for {os}/{arch} is itself an index"
                    )))
                }
            }
        }
    };
    validate_manifest(&manifest, &name)?;
    Ok(FetchedManifest {
        digest: raw.digest,
        bytes: raw.bytes,
        manifest,
    })
}

/// Fetch and check the config of a manifest [`fetch_manifest`] gave.
pub fn fetch_config(src: &mut dyn ImageSource, m: FetchedManifest) -> Result<FetchedImage> {
    let name = src.name();
    let FetchedManifest {
        digest,
        bytes,
        manifest,
    } = m;
    let cfg = manifest.config();
    let config_digest = Sha256Digest::try_from(cfg.digest())?;
    let what = format!("{name}: config {config_digest}");
    let stream = src.blob_stream(&config_digest, cfg.size())?;
    let config_bytes = read_verified(stream, config_digest, cfg.size(), MAX_CONFIG_SIZE, &what)?;
    let config = parse_config(&config_bytes, &manifest, &name)?;
    Ok(FetchedImage {
        manifest_digest: digest,
        manifest_bytes: bytes,
        manifest,
        config_digest,
        config_bytes,
        config,
    })
}
