//! OCI image layouts: a directory (`oci:PATH[:TAG]`) or the same as a tar file
//! (`oci-archive:PATH[:TAG]`). Archives are read in place: blobs are byte ranges of the tar.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex};

use crate::digest::Sha256Digest;
use crate::error::{Error, Result};
use crate::manifest::{RawManifest, MAX_MANIFEST_SIZE};
use crate::reference::LayoutRef;
use crate::source::ImageSource;
use crate::text::sanitize;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn io_err(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound(format!("{what}: {e}"))
    } else {
        Error::Io(ociboot_fs::IoError::new(what.to_string(), e))
    }
}

/// Find the descriptor for `tag` in an index.json.
fn pick(index: &ImageIndex, tag: Option<&str>, name: &str) -> Result<Descriptor> {
    fn tagged(d: &Descriptor) -> Option<&str> {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .map(String::as_str)
    }
    match tag {
        Some(t) => index
            .manifests()
            .iter()
            .find(|d| tagged(d) == Some(t))
            .cloned()
            .ok_or_else(|| {
                let tags: Vec<&str> = index.manifests().iter().filter_map(tagged).collect();
                Error::NotFound(format!(
                    "{name}: no image tagged {t:?} in the layout (tags: {})",
                    if tags.is_empty() {
                        "none".into()
                    } else {
                        sanitize(&tags.join(", "))
                    }
                ))
            }),
        None => match index.manifests().as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::NotFound(format!(
                "{name}: the layout's index.json lists no image"
            ))),
            _ => Err(Error::Invalid(format!(
                "{name}: the layout holds several images; name one with :TAG"
            ))),
        },
    }
}

fn parse_index(bytes: &[u8], name: &str) -> Result<ImageIndex> {
    crate::json::check_depth(bytes, &format!("{name}: index.json"))?;
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Invalid(format!(
            "{name}: malformed index.json: {}",
            sanitize(&e.to_string())
        ))
    })
}

fn check_layout_file(bytes: &[u8], name: &str) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct L {
        #[serde(rename = "imageLayoutVersion")]
        v: String,
    }
    crate::json::check_depth(bytes, &format!("{name}: oci-layout"))?;
    let l: L = serde_json::from_slice(bytes).map_err(|e| {
        Error::Invalid(format!(
            "{name}: malformed oci-layout file: {}",
            sanitize(&e.to_string())
        ))
    })?;
    if !l.v.starts_with("1.") {
        return Err(Error::Invalid(format!(
            "{name}: unsupported imageLayoutVersion {}",
            sanitize(&l.v)
        )));
    }
    Ok(())
}

fn root_from_descriptor(
    desc: Descriptor,
    read: impl FnOnce(&Sha256Digest, u64) -> Result<Vec<u8>>,
    name: &str,
) -> Result<RawManifest> {
    let digest = Sha256Digest::try_from(desc.digest())?;
    let bytes = read(&digest, desc.size())?;
    let bytes = crate::digest::read_verified(
        &bytes[..],
        digest,
        desc.size(),
        MAX_MANIFEST_SIZE,
        &format!("{name}: manifest {digest}"),
    )?;
    Ok(RawManifest {
        bytes,
        digest,
        media_type: Some(desc.media_type().to_string()),
    })
}

/// An OCI image layout directory.
pub struct OciDir {
    path: PathBuf,
    tag: Option<String>,
    name: String,
}

impl OciDir {
    /// Open the layout directory at `r.path`, checking its `oci-layout` file; the image is chosen
    /// by `r.tag` when the manifest is first asked for. A missing directory or file is
    /// [`Error::NotFound`]; an unsupported layout version is [`Error::Invalid`].
    pub fn open(r: &LayoutRef) -> Result<Self> {
        let name = match &r.tag {
            Some(t) => format!("oci:{}:{t}", r.path.display()),
            None => format!("oci:{}", r.path.display()),
        };
        let lf = r.path.join("oci-layout");
        let bytes =
            std::fs::read(&lf).map_err(|e| io_err(format!("{name}: {}", lf.display()), e))?;
        check_layout_file(&bytes, &name)?;
        Ok(OciDir {
            path: r.path.clone(),
            tag: r.tag.clone(),
            name,
        })
    }

    fn blob_path(&self, d: &Sha256Digest) -> PathBuf {
        self.path.join("blobs/sha256").join(d.hex())
    }

    fn read_small(&self, d: &Sha256Digest, size: u64) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        let f = File::open(&p).map_err(|e| io_err(format!("{}: blob {d}", self.name), e))?;
        let mut v = Vec::new();
        f.take(size.min(MAX_MANIFEST_SIZE) + 1)
            .read_to_end(&mut v)
            .map_err(|e| io_err(p.display(), e))?;
        Ok(v)
    }
}

impl ImageSource for OciDir {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn root_manifest(&mut self) -> Result<RawManifest> {
        let ip = self.path.join("index.json");
        let bytes = std::fs::read(&ip)
            .map_err(|e| io_err(format!("{}: {}", self.name, ip.display()), e))?;
        let index = parse_index(&bytes, &self.name)?;
        let desc = pick(&index, self.tag.as_deref(), &self.name)?;
        let name = self.name.clone();
        root_from_descriptor(desc, |d, s| self.read_small(d, s), &name)
    }

    fn manifest_bytes(&mut self, desc: &Descriptor) -> Result<Vec<u8>> {
        let d = Sha256Digest::try_from(desc.digest())?;
        self.read_small(&d, desc.size())
    }

    fn blob_stream(&mut self, digest: &Sha256Digest, _size: u64) -> Result<Box<dyn Read + Send>> {
        let p = self.blob_path(digest);
        let f = File::open(&p).map_err(|e| io_err(format!("{}: blob {digest}", self.name), e))?;
        Ok(Box::new(f))
    }
}

/// An OCI image layout packed in a tar file. Only the tar headers are read when opening;
/// blobs are then read straight from their byte ranges.
pub struct OciArchive {
    file: PathBuf,
    tag: Option<String>,
    name: String,
    /// blob hex digest -> (offset, size)
    blobs: HashMap<String, (u64, u64)>,
    index: Vec<u8>,
}

impl OciArchive {
    /// Open the tar file at `r.path` and read its entry headers once, noting where each blob lies
    /// and keeping `index.json`. An archive that is not a tar or lacks `oci-layout` or `index.json`
    /// is [`Error::Invalid`].
    pub fn open(r: &LayoutRef) -> Result<Self> {
        let name = match &r.tag {
            Some(t) => format!("oci-archive:{}:{t}", r.path.display()),
            None => format!("oci-archive:{}", r.path.display()),
        };
        let f = File::open(&r.path).map_err(|e| io_err(&name, e))?;
        let mut ar = tar::Archive::new(f);
        let mut blobs = HashMap::new();
        let mut index = None;
        let mut layout = None;
        let entries = ar
            .entries()
            .map_err(|e| Error::Invalid(format!("{name}: not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| Error::Invalid(format!("{name}: malformed tar archive: {e}")))?;
            let path = entry
                .path()
                .map_err(|e| Error::Invalid(format!("{name}: bad entry name: {e}")))?
                .into_owned();
            let p = path.to_string_lossy();
            let p = p.trim_start_matches("./");
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            if p == "index.json" || p == "oci-layout" {
                let mut v = Vec::new();
                (&mut entry)
                    .take(MAX_MANIFEST_SIZE + 1)
                    .read_to_end(&mut v)
                    .map_err(|e| io_err(&name, e))?;
                if p == "index.json" {
                    index = Some(v);
                } else {
                    layout = Some(v);
                }
            } else if let Some(hex) = p.strip_prefix("blobs/sha256/") {
                blobs.insert(hex.to_string(), (entry.raw_file_position(), entry.size()));
            }
        }
        let layout = layout
            .ok_or_else(|| Error::Invalid(format!("{name}: no oci-layout file in the archive")))?;
        check_layout_file(&layout, &name)?;
        let index =
            index.ok_or_else(|| Error::Invalid(format!("{name}: no index.json in the archive")))?;
        Ok(OciArchive {
            file: r.path.clone(),
            tag: r.tag.clone(),
            name,
            blobs,
            index,
        })
    }

    fn range(&self, d: &Sha256Digest) -> Result<Box<dyn Read + Send>> {
        let (off, size) = *self.blobs.get(&d.hex()).ok_or_else(|| {
            Error::NotFound(format!("{}: blob {d} is not in the archive", self.name))
        })?;
        let mut f = File::open(&self.file).map_err(|e| io_err(&self.name, e))?;
        f.seek(SeekFrom::Start(off))
            .map_err(|e| io_err(&self.name, e))?;
        Ok(Box::new(f.take(size)))
    }
}

impl ImageSource for OciArchive {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn root_manifest(&mut self) -> Result<RawManifest> {
        let index = parse_index(&self.index, &self.name)?;
        let desc = pick(&index, self.tag.as_deref(), &self.name)?;
        let name = self.name.clone();
        root_from_descriptor(
            desc,
            |d, s| {
                let mut v = Vec::new();
                self.range(d)?
                    .take(s.min(MAX_MANIFEST_SIZE) + 1)
                    .read_to_end(&mut v)
                    .map_err(|e| io_err(&name, e))?;
                Ok(v)
            },
            &self.name.clone(),
        )
    }

    fn manifest_bytes(&mut self, desc: &Descriptor) -> Result<Vec<u8>> {
        let d = Sha256Digest::try_from(desc.digest())?;
        let mut v = Vec::new();
        self.range(&d)?
            .take(desc.size().min(MAX_MANIFEST_SIZE) + 1)
            .read_to_end(&mut v)
            .map_err(|e| io_err(&self.name, e))?;
        Ok(v)
    }

    fn blob_stream(&mut self, digest: &Sha256Digest, _size: u64) -> Result<Box<dyn Read + Send>> {
        self.range(digest)
    }
}

/// True if `p` looks like an OCI layout directory.
pub fn is_layout_dir(p: &Path) -> bool {
    p.join("oci-layout").is_file()
}
