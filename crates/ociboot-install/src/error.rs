//! The errors of installing to a disk: one enum, messages that name the disk image, partition
//! or file, and `Ctx` to attach that name to an I/O error.

use std::io;

/// Errors of disk installation. Messages name the disk image, partition or file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Deploy(#[from] ociboot_deploy::Error),
    #[error(transparent)]
    Store(#[from] ociboot_store::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait Ctx<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, io::Error> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Io {
            context: what(),
            source: e,
        })
    }
}
