//! The errors of installing to a disk: one enum, messages that name the disk image, partition
//! or file, and `Ctx` to attach that name to an I/O error.

use std::path::Path;

use ociboot_fs::IoError;

/// Errors of disk installation. Messages name the disk image, partition or file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Setting up the deployment on the new disk failed.
    #[error(transparent)]
    Deploy(#[from] ociboot_deploy::Error),
    /// Pulling or reading the image failed.
    #[error(transparent)]
    Store(#[from] ociboot_store::Error),
    /// An option, target or image that cannot be installed as asked; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// An I/O operation failed; the error names what was being done and the file.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// A result whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The file an I/O error (here or in a crate below) is about, if it names one.
    pub fn io_path(&self) -> Option<&Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::Store(e) => e.io_path(),
            Error::Deploy(e) => e.io_path(),
            _ => None,
        }
    }
}

/// Attach context to I/O results (the one trait of every crate, under this crate's name).
pub(crate) use ociboot_fs::IoContext as Ctx;
