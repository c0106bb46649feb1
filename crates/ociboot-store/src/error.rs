//! The error type of the content store: each message names the image, layer, blob or path
//! it is about.

use std::io;
use std::path::{Path, PathBuf};

use ociboot_fs::IoError;

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
    /// A layer or image beyond one of the store's resource limits (see [`crate::limits`]):
    /// too deep or too long a path, too large a tar header, too many entries.
    #[error("{0}")]
    Limit(String),
    /// The store's own files do not say what they should.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// What was asked for is not there: no store in the sysroot, no such sysroot, or no image
    /// matching a reference or digest.
    #[error("{0}")]
    NotFound(String),
    /// A request the store refuses as asked: a write to a store opened read-only, an
    /// ambiguous digest prefix, a non-empty unpack destination.
    #[error("{0}")]
    Usage(String),
    /// A lock held by another writer, for a command that does not queue behind one.
    #[error(
        "the {lock} lock ({path}) is held by {holder}: another command is at work on this \
         sysroot; nothing was done, run this again when it has finished"
    )]
    Busy {
        /// Which lock ("store").
        lock: String,
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as its lock file says: `pid N (VERB)`.
        holder: String,
    },
    /// Our own data could not be serialised: a bug, not damage to the store.
    #[error("cannot serialise {what}: {source}")]
    Serialize {
        /// What was being serialised (e.g. "image record", "layer header").
        what: String,
        /// The serde_json error.
        #[source]
        source: serde_json::Error,
    },
    /// A worker thread panicked; `job` says what it was doing.
    #[error("the {job} thread panicked: {payload}")]
    WorkerPanicked {
        /// What the thread was doing (e.g. "object writer for layer sha256:…").
        job: String,
        /// The panic's message, or "(no message)" when it carried none.
        payload: String,
    },
    /// An I/O operation failed; the error names what was being done and the file.
    #[error(transparent)]
    Io(#[from] IoError),
}

impl Error {
    /// An I/O error with what was being done, about no one file.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io(IoError::new(context, source))
    }

    /// An I/O error about the file `p`, the message naming only the file.
    pub fn path(p: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io(IoError::about(p, source))
    }

    /// The file an I/O error is about, if it names one.
    pub fn io_path(&self) -> Option<&Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            _ => None,
        }
    }

    /// `what: ` in front of an I/O error's context; other errors are returned as they are.
    pub(crate) fn annotate(self, what: &str) -> Self {
        match self {
            Error::Io(e) => Error::Io(e.prefixed(what)),
            o => o,
        }
    }

    /// For `map_err`: `what` (our own data) could not be serialised.
    pub fn serialize(what: &str) -> impl FnOnce(serde_json::Error) -> Self + '_ {
        move |source| Error::Serialize {
            what: what.to_string(),
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
        // A store error carried through a reader (a worker's panic) is reported as it is.
        match e.downcast::<Error>() {
            Ok(own) => own,
            Err(e) => Error::io(what, e),
        }
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::io("system call", e.into())
    }
}

/// The result of content store operations, failing with [`Error`] unless told otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The result of joining a worker thread: a panic becomes [`Error::WorkerPanicked`] naming the
/// worker's `job` (e.g. "object writer for layer sha256:…") and the panic's message.
pub fn join_worker<T>(joined: std::thread::Result<T>, job: impl FnOnce() -> String) -> Result<T> {
    joined.map_err(|payload| {
        let payload = if let Some(s) = payload.downcast_ref::<&str>() {
            s.to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "(no message)".to_string()
        };
        Error::WorkerPanicked {
            job: job(),
            payload,
        }
    })
}

/// Attach context to rustix and std I/O results (the one trait of every crate).
pub(crate) use ociboot_fs::IoContext;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_panic_is_one_error_naming_the_job() {
        let h = std::thread::spawn(|| -> u32 { panic!("boom {}", 1) });
        let e = join_worker(h.join(), || "object writer for layer x".into()).unwrap_err();
        assert!(matches!(e, Error::WorkerPanicked { .. }));
        assert_eq!(
            e.to_string(),
            "the object writer for layer x thread panicked: boom 1"
        );
        let ok = join_worker(std::thread::spawn(|| 7).join(), || unreachable!());
        assert_eq!(ok.unwrap(), 7);
    }

    #[test]
    fn a_serialisation_failure_is_not_corruption() {
        let mut m = std::collections::BTreeMap::new();
        m.insert((1, 2), 3); // JSON map keys must be strings
        let e = serde_json::to_vec(&m)
            .map_err(Error::serialize("image record"))
            .unwrap_err();
        assert!(matches!(e, Error::Serialize { .. }));
        let msg = e.to_string();
        assert!(msg.starts_with("cannot serialise image record: "), "{msg}");
        assert!(!msg.contains("corrupt"), "{msg}");
    }

    #[test]
    fn io_errors_carry_the_path() {
        let nf = || io::Error::from(io::ErrorKind::NotFound);
        let e = Error::from(IoError::at("reading", "/x/y", nf()));
        assert_eq!(e.io_path(), Some(Path::new("/x/y")));
        assert!(e.to_string().starts_with("reading /x/y: "), "{e}");
        let e = Error::path("/z", nf()).annotate("layer l");
        assert_eq!(e.io_path(), Some(Path::new("/z")));
        assert!(e.to_string().starts_with("layer l: /z: "), "{e}");
        assert_eq!(Error::io("dup", nf()).io_path(), None);
        let streamed = io::Error::other(Error::WorkerPanicked {
            job: "j".into(),
            payload: "p".into(),
        });
        assert!(matches!(
            Error::stream("w", streamed),
            Error::WorkerPanicked { .. }
        ));
    }
}
