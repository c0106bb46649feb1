//! One I/O error for every crate: what was being done, the file it was done to, and the
//! operating system's reason. Each crate's own error enum wraps it (`Io(#[from] IoError)`),
//! so `?` carries the path up without a per-crate copy of this code.

use std::io;
use std::path::{Path, PathBuf};

/// An I/O operation that failed. Shown as "`context`: `source`"; `context` names the file
/// when there is one, and `path` holds it for callers that branch on which file failed.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct IoError {
    /// What was being done, in words a user can act on ("creating /sysroot/ostree/deploy").
    pub context: String,
    /// The file or directory the operation was about, when it was about one.
    pub path: Option<PathBuf>,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// A failure of `context`, about no one file (or about several).
    pub fn new(context: impl Into<String>, source: io::Error) -> Self {
        IoError {
            context: context.into(),
            path: None,
            source,
        }
    }

    /// A failure while doing `verb` to `p`: "`verb` `p`: `source`".
    pub fn at(verb: &str, p: impl AsRef<Path>, source: io::Error) -> Self {
        let p = p.as_ref();
        IoError {
            context: format!("{verb} {}", p.display()),
            path: Some(p.to_path_buf()),
            source,
        }
    }

    /// A failure about `p` where the path alone says enough: "`p`: `source`".
    pub fn about(p: impl Into<PathBuf>, source: io::Error) -> Self {
        let p = p.into();
        IoError {
            context: p.display().to_string(),
            path: Some(p),
            source,
        }
    }

    /// The same error with `what: ` in front of its context (the image or layer it was for).
    pub fn prefixed(mut self, what: &str) -> Self {
        self.context = format!("{what}: {}", self.context);
        self
    }

    /// The operating system's error kind, to tell "not found" from a failing disk.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

/// Attach what was being done, and to which file, to the error of an I/O result.
pub trait IoContext<T> {
    /// What was being done, when it is about no one file (or about several).
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, IoError>;
    /// Doing `verb` to the file `p`: the message says "`verb` `p`", and the error carries `p`.
    fn at(self, verb: &str, p: impl AsRef<Path>) -> Result<T, IoError>;
}

impl<T, E: Into<io::Error>> IoContext<T> for Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, IoError> {
        self.map_err(|e| IoError::new(what(), e.into()))
    }

    fn at(self, verb: &str, p: impl AsRef<Path>) -> Result<T, IoError> {
        self.map_err(|e| IoError::at(verb, p, e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_file_and_the_error_carries_it() {
        let r: Result<(), io::Error> = Err(io::Error::from(io::ErrorKind::NotFound));
        let e = r.at("opening", "/etc/x").unwrap_err();
        assert!(e.to_string().starts_with("opening /etc/x: "), "{e}");
        assert_eq!(e.path.as_deref(), Some(Path::new("/etc/x")));
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = e.prefixed("layer sha256:ab");
        assert!(
            e.to_string().starts_with("layer sha256:ab: opening /etc/x"),
            "{e}"
        );
        let r: Result<(), rustix::io::Errno> = Err(rustix::io::Errno::ACCESS);
        let e = r.ctx(|| "copying a to b".into()).unwrap_err();
        assert_eq!(e.path, None);
        assert!(e.to_string().starts_with("copying a to b: "), "{e}");
    }
}
