//! The error type of references, transports and manifests: each message names the image,
//! blob or file it is about.

use std::io;

use ociboot_fs::IoError;

/// Errors of image references, transports and manifests. Every message names the image, blob
/// or file it is about, so it can be shown to a user as it is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image reference that does not parse (`docker://…`, `oci:…`, `registry/repo:tag`).
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A digest that is not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// The digest as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
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
    /// An I/O operation failed; the error names what was being done and the file.
    #[error(transparent)]
    Io(#[from] IoError),
}

impl Error {
    /// A digest that does not parse; `input` may come from a registry, so a long one is cut
    /// (the message shows it `{:?}`-escaped).
    pub(crate) fn invalid_digest(input: &str, reason: &str) -> Self {
        let mut end = input.len().min(crate::text::MAX_REMOTE_TEXT);
        while !input.is_char_boundary(end) {
            end -= 1;
        }
        let cut = if end < input.len() { "…" } else { "" };
        Error::InvalidDigest {
            input: format!("{}{cut}", &input[..end]),
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
        Error::Io(IoError::new(context, e))
    }
}

/// A result whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
