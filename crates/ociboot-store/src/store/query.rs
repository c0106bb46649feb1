//! Reading the store: references, image records, manifests, merged trees and layer records,
//! finding an image by reference or digest prefix, and the rows of `image list`. Also the JSON
//! documents the store keeps (`image.json`, reference files, layer record headers).
//!
//! Nothing here writes or needs the exclusive lock, so all of it works on a store opened
//! read-only; a record that does not parse is reported as [`Error::Corrupt`] naming its file.

use ociboot_oci::{ImageReference, Sha256Digest};
use serde::{Deserialize, Serialize};

use super::Store;
use crate::error::{Error, IoContext, Result};
use crate::record::{self, LAYER_MAGIC};
use crate::tree::{LayerOp, Tree};

/// The metadata of a layer record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LayerMeta {
    /// The digest of the layer blob (compressed), which names the record under `layers/`.
    pub digest: Sha256Digest,
    /// The digest of the uncompressed tar stream, as the image config lists it.
    pub diff_id: Sha256Digest,
    /// Size of the blob (compressed) in bytes, as the manifest gives it.
    pub size: u64,
    /// The blob's media type from the manifest, which says how it is compressed.
    pub media_type: String,
    /// Bytes of the uncompressed tar stream.
    pub uncompressed_size: u64,
}

/// `image.json`: what the store knows of an image besides manifest, config and tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// The digest of the manifest, which names the image directory (`images/<hex>`).
    pub manifest_digest: Sha256Digest,
    /// The digest of the image config.
    pub config_digest: Sha256Digest,
    /// The layers in manifest order, lowest first.
    pub layers: Vec<LayerMeta>,
    /// Number of nodes in the merged tree: every entry (directories, the root included),
    /// not just regular files.
    pub files: u64,
    /// Sum of the regular files' sizes in the merged tree, in bytes.
    pub unpacked_size: u64,
    /// The CPU architecture the config names (`amd64`, `arm64`, …).
    pub architecture: String,
    /// Label `org.opencontainers.image.version`, else the legacy `version` label.
    pub version: Option<String>,
    /// Label `org.opencontainers.image.created`, else the config's `created` time.
    pub created: Option<String>,
    /// When the image was written to the store, as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
    pub pulled_at: String,
}

/// A reference file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefRecord {
    /// The reference (transport and image) the file stands for.
    pub reference: ImageReference,
    /// The manifest digest of the image the reference points to.
    pub manifest_digest: Sha256Digest,
    /// When the reference was last written, as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
    pub updated_at: String,
}

/// One row of `image list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSummary {
    /// The reference as shown to users: bare for a registry image, else `transport:name`.
    pub reference: String,
    /// The reference's transport: `registry`, `oci` or `oci-archive`.
    pub transport: String,
    /// The manifest digest of the image.
    pub digest: Sha256Digest,
    /// The image's version label, if any (see [`ImageRecord::version`]).
    pub version: Option<String>,
    /// The image's creation time, if known (see [`ImageRecord::created`]).
    pub created: Option<String>,
    /// The CPU architecture the image config names.
    pub architecture: String,
    /// Sum of the compressed layer sizes.
    pub size: u64,
    /// Sum of the regular files' sizes in the merged tree.
    pub unpacked_size: u64,
}

impl Store {
    /// Read a layer record.
    pub fn read_layer(&self, d: &Sha256Digest) -> Result<(LayerMeta, Vec<LayerOp>)> {
        let p = self.layer_path(d);
        let data = std::fs::read(&p).at("reading layer record", &p)?;
        let what = format!("layer record {}", p.display());
        let (header, ops) = record::decode(&data, LAYER_MAGIC, &what)?;
        let meta: LayerMeta = serde_json::from_slice(&header)
            .map_err(|e| Error::Corrupt(format!("{what}: header: {e}")))?;
        Ok((meta, ops))
    }

    /// All references, sorted.
    pub fn refs(&self) -> Result<Vec<RefRecord>> {
        let dir = self.root.join("refs");
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::path(&dir, e)),
        };
        for e in rd {
            let e = e.at("reading", &dir)?;
            let name = e.file_name();
            if name.to_string_lossy().starts_with(".tmp-") {
                continue;
            }
            let p = e.path();
            let data = std::fs::read(&p).at("reading", &p)?;
            let r: RefRecord = serde_json::from_slice(&data)
                .map_err(|err| Error::Corrupt(format!("{}: {err}", p.display())))?;
            out.push(r);
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// The manifest digest a reference points to, if it was pulled.
    pub fn resolve(&self, r: &ImageReference) -> Result<Option<Sha256Digest>> {
        let p = self.ref_path(r);
        match std::fs::read(&p) {
            Ok(data) => {
                let rec: RefRecord = serde_json::from_slice(&data)
                    .map_err(|e| Error::Corrupt(format!("{}: {e}", p.display())))?;
                Ok(Some(rec.manifest_digest))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::path(p, e)),
        }
    }

    /// Find an image by reference, or by manifest digest (`sha256:…`, or a unique hex prefix).
    pub fn find(&self, what: &str) -> Result<Sha256Digest> {
        if let Ok(r) = what.parse::<ImageReference>() {
            if let Some(d) = self.resolve(&r)? {
                return Ok(d);
            }
        }
        let hex = what.strip_prefix("sha256:").unwrap_or(what);
        if hex.len() >= 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found = Vec::new();
            let dir = self.root.join("images");
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().to_string();
                    if n.starts_with(hex) {
                        if let Some(d) = Sha256Digest::from_hex(&n) {
                            found.push(d);
                        }
                    }
                }
            }
            match found.as_slice() {
                [d] => return Ok(*d),
                [] => {}
                _ => {
                    return Err(Error::Usage(format!(
                        "{what} matches several images; give more digits"
                    )))
                }
            }
        }
        Err(Error::NotFound(format!(
            "image {what} is not in the store (pull it first)"
        )))
    }

    /// The `image.json` of the image with manifest digest `d`; one that does not parse is
    /// [`Error::Corrupt`].
    pub fn image_record(&self, d: &Sha256Digest) -> Result<ImageRecord> {
        let p = self.image_dir(d).join("image.json");
        let data = std::fs::read(&p).at("reading", &p)?;
        serde_json::from_slice(&data).map_err(|e| Error::Corrupt(format!("{}: {e}", p.display())))
    }

    /// The raw manifest and config of an image.
    pub fn manifest_and_config(&self, d: &Sha256Digest) -> Result<(Vec<u8>, Vec<u8>)> {
        let dir = self.image_dir(d);
        let m = std::fs::read(dir.join("manifest.json"))
            .ctx(|| format!("reading {}/manifest.json", dir.display()))?;
        let c = std::fs::read(dir.join("config.json"))
            .ctx(|| format!("reading {}/config.json", dir.display()))?;
        Ok((m, c))
    }

    /// The merged tree of an image.
    pub fn tree(&self, d: &Sha256Digest) -> Result<Tree> {
        let p = self.image_dir(d).join("tree");
        let data = std::fs::read(&p).at("reading", &p)?;
        record::decode_tree(&data, &p.display().to_string())
    }

    /// Summaries of every referenced image.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let mut out = Vec::new();
        for r in self.refs()? {
            let rec = match self.image_record(&r.manifest_digest) {
                Ok(rec) => rec,
                // Removed since the refs were read (a reader without the lock may see that).
                Err(_) if !self.ref_path(&r.reference).exists() => continue,
                Err(e) => return Err(e),
            };
            out.push(ImageSummary {
                reference: r.reference.to_string(),
                transport: r.reference.transport.to_string(),
                digest: r.manifest_digest,
                version: rec.version.clone(),
                created: rec.created.clone(),
                architecture: rec.architecture.clone(),
                size: rec.layers.iter().map(|l| l.size).sum(),
                unpacked_size: rec.unpacked_size,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{image, one_image, pull, store, tar};
    use super::*;

    #[test]
    fn an_image_is_found_by_reference_digest_or_unique_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let (store, r, d) = one_image(dir.path(), "v1", &[("etc/motd", b"hi\n")]);
        assert_eq!(store.find(&r.to_string()).unwrap(), d);
        assert_eq!(store.find(&d.to_string()).unwrap(), d);
        assert_eq!(store.find(&d.hex()[..6]).unwrap(), d);
        // Five digits are too few to be taken for a digest.
        assert!(matches!(store.find(&d.hex()[..5]), Err(Error::NotFound(_))));
        let err = store.find("oci:/nowhere:v1").unwrap_err();
        assert!(
            matches!(&err, Error::NotFound(m) if m.contains("pull it first")),
            "{err}"
        );
        // Two images sharing the prefix: ambiguous, not a guess.
        let twin = format!("{}{}", &d.hex()[..6], "0".repeat(58));
        std::fs::create_dir(store.root().join("images").join(&twin)).unwrap();
        assert!(matches!(store.find(&d.hex()[..6]), Err(Error::Usage(_))));
        assert_eq!(store.find(&d.hex()).unwrap(), d);
    }

    #[test]
    fn list_has_one_row_per_reference() {
        let dir = tempfile::tempdir().unwrap();
        let l1 = tar(&[("a", b"12345")]);
        let l2 = tar(&[("b", b"123")]);
        let a = image(dir.path(), "1.0", std::slice::from_ref(&l1));
        let b = image(dir.path(), "2.0", &[l1.clone(), l2.clone()]);
        let store = store(dir.path());
        pull(&store, &b);
        pull(&store, &a);
        let rows = store.list().unwrap();
        let got: Vec<(String, Option<String>, u64, u64)> = rows
            .iter()
            .map(|r| {
                (
                    r.reference.clone(),
                    r.version.clone(),
                    r.size,
                    r.unpacked_size,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (a.to_string(), Some("1.0".into()), l1.len() as u64, 5),
                (
                    b.to_string(),
                    Some("2.0".into()),
                    (l1.len() + l2.len()) as u64,
                    8
                ),
            ]
        );
        assert!(rows.iter().all(|r| r.transport == "oci"));
    }

    #[test]
    fn a_damaged_reference_file_is_corruption_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, r, _) = one_image(dir.path(), "v1", &[("etc/motd", b"hi\n")]);
        let p = store.ref_path(&r);
        std::fs::write(&p, b"{\"reference\":").unwrap();
        for err in [store.refs().unwrap_err(), store.resolve(&r).unwrap_err()] {
            assert!(
                matches!(&err, Error::Corrupt(m) if m.contains(&p.display().to_string())),
                "{err}"
            );
        }
    }

    #[test]
    fn a_store_without_references_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        assert!(store.list().unwrap().is_empty());
        std::fs::remove_dir(store.root().join("refs")).unwrap();
        assert!(store.refs().unwrap().is_empty());
    }
}
