//! The errors of deployments and boot entries: one enum, messages that name the deployment,
//! file or image, and `Ctx` to attach that name to an I/O error.

use std::io;

/// Errors of deployments and boot entries. Messages name the deployment, file or image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] ociboot_store::Error),
    #[error(transparent)]
    Source(#[from] ociboot_oci::Error),
    /// The system is not in a state where the command makes sense.
    #[error("{0}")]
    State(String),
    /// /etc changes that cannot be carried into the new deployment.
    #[error("cannot merge /etc into the new deployment:\n{}", .0.join("\n"))]
    EtcConflict(Vec<String>),
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

impl<T> Ctx<T> for std::result::Result<T, rustix::io::Errno> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Io {
            context: what(),
            source: e.into(),
        })
    }
}
