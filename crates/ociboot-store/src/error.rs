//! The error type of the content store: each message names the image, layer, blob or path
//! it is about.

use std::io;
use std::path::PathBuf;

/// Errors of the content store. Messages name the image, blob or path concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the image source (registry, layout): bad manifests, blobs, auth, network.
    #[error(transparent)]
    Source(#[from] ociboot_oci::Error),
    /// A layer path that tries to leave the root.
    #[error("refusing hostile layer entry {0}")]
    HostilePath(String),
    /// A layer that cannot be applied (bad tar entry, impossible hardlink, …).
    #[error("{0}")]
    Layer(String),
    /// The store's own files do not say what they should.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn path(p: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            context: p.into().display().to_string(),
            source,
        }
    }

    /// An I/O error seen while streaming `what`; a blob mismatch or hostile entry inside it is
    /// reported as such rather than as an I/O failure.
    pub fn stream(what: &str, e: io::Error) -> Self {
        if let Some(inner) = e.get_ref() {
            if inner.is::<ociboot_oci::digest::BlobMismatch>() {
                return Error::Source(ociboot_oci::Error::from_io(what, e));
            }
        }
        Error::io(what, e)
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::io("system call", e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach context to rustix and std I/O results.
pub(crate) trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, io::Error> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

impl<T> IoContext<T> for std::result::Result<T, rustix::io::Errno> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e.into()))
    }
}
