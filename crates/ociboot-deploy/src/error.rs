//! The errors of deployments and boot entries: one enum, messages that name the deployment,
//! file or image, and `Ctx` to attach that name to an I/O error.

use std::io;
use std::path::{Path, PathBuf};

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

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error while doing `verb` to the file `p`: "`verb` `p`: `source`".
    pub fn at(verb: &str, p: impl AsRef<Path>, source: io::Error) -> Self {
        let p = p.as_ref();
        Error::Io {
            context: format!("{verb} {}", p.display()),
            path: Some(p.to_path_buf()),
            source,
        }
    }

    /// The file an I/O error (here or in a crate below) is about, if it names one.
    pub fn io_path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. } => path.as_deref(),
            Error::Store(e) => e.io_path(),
            _ => None,
        }
    }
}

/// Attach context to I/O results.
pub(crate) trait Ctx<T> {
    /// What was being done, when it is about no one file (or about several).
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
    /// Doing `verb` to the file `p`: the message says "`verb` `p`", and the error carries `p`.
    fn at(self, verb: &str, p: impl AsRef<Path>) -> Result<T>;
}

impl<T, E: Into<io::Error>> Ctx<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Io {
            context: what(),
            path: None,
            source: e.into(),
        })
    }

    fn at(self, verb: &str, p: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::at(verb, p, e.into()))
    }
}
