//! The error type of references, transports and manifests: each message names the image,
//! blob or file it is about.

use std::io;
use std::path::{Path, PathBuf};

/// Errors of image references, transports and manifests. Every message names the image, blob
/// or file it is about, so it can be shown to a user as it is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: String },
    /// Malformed or unsupported content (manifest, config, layout, media type, blob mismatch).
    #[error("{0}")]
    Invalid(String),
    /// The image or one of its parts does not exist at the source.
    #[error("{0}")]
    NotFound(String),
    /// Authentication was required and failed.
    #[error("{0}")]
    Auth(String),
    /// The registry or network failed (HTTP 5xx, connection refused, timeout).
    #[error("{0}")]
    Transport(String),
    /// An I/O operation failed. `context` says what was being done (and names the file);
    /// `path` is that file, when there is one, for callers that branch on it.
    #[error("{context}: {source}")]
    Io {
        context: String,
        path: Option<PathBuf>,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn invalid_digest(input: &str, reason: &str) -> Self {
        Error::InvalidDigest {
            input: input.to_string(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn invalid_ref(input: &str, reason: impl Into<String>) -> Self {
        Error::InvalidReference {
            input: input.to_string(),
            reason: reason.into(),
        }
    }

    /// Wrap an I/O error with what was being done; a blob mismatch inside it becomes
    /// [`Error::Invalid`] so callers can tell bad content from a failing disk.
    pub fn from_io(context: &str, e: io::Error) -> Self {
        if let Some(inner) = e.get_ref() {
            if let Some(m) = inner.downcast_ref::<crate::digest::BlobMismatch>() {
                return Error::Invalid(m.0.clone());
            }
        }
        Error::Io {
            context: context.to_string(),
            path: None,
            source: e,
        }
    }

    /// An I/O error while doing `verb` to the file `p`: "`verb` `p`: `source`".
    pub fn at(verb: &str, p: &Path, source: io::Error) -> Self {
        Error::Io {
            context: format!("{verb} {}", p.display()),
            path: Some(p.to_path_buf()),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
