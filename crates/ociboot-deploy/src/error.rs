//! The errors of deployments and boot entries: one enum, messages that name the deployment,
//! file or image, and `Ctx` to attach that name to an I/O error.

use std::path::Path;

use ociboot_fs::IoError;

/// Errors of deployments and boot entries. Messages name the deployment, file or image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The content store failed: opening or locking it, or reading, pulling or pruning an image.
    #[error(transparent)]
    Store(#[from] ociboot_store::Error),
    /// An image reference, transport or manifest failed, while fetching an update, say.
    #[error(transparent)]
    Source(#[from] ociboot_oci::Error),
    /// The system is not in a state where the command makes sense.
    #[error("{0}")]
    State(String),
    /// /etc changes that cannot be carried into the new deployment.
    #[error("cannot merge /etc into the new deployment:\n{}", .0.join("\n"))]
    EtcConflict(Vec<String>),
    /// Malformed input: an origin, boot entry or kargs.d file on disk, or a bad argument.
    #[error("{0}")]
    Invalid(String),
    /// An I/O operation failed; the error names what was being done and the file.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// The result of this crate's operations; [`Error`] unless another error type is named.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The file an I/O error (here or in a crate below) is about, if it names one.
    pub fn io_path(&self) -> Option<&Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::Store(e) => e.io_path(),
            _ => None,
        }
    }
}

/// Attach context to I/O results (the one trait of every crate, under this crate's name).
pub(crate) use ociboot_fs::IoContext as Ctx;
