//! ociboot's filesystem primitives, below every other crate: the I/O error that names its
//! path ([`IoError`], [`IoContext`]), crash-safe replacement ([`atomic`]), whole-tree
//! operations on paths ociboot chose ([`tree`]), operations confined beneath a root for trees
//! an image controls ([`beneath`]), crash injection for tests ([`failpoint`]) and timestamps
//! ([`time`]).
//!
//! This crate knows nothing of images, stores or deployments; it must never follow a symlink
//! inside a [`beneath::Root`], and never leave a half-written file under a name a reader uses.

pub mod atomic;
pub mod beneath;
pub mod error;
pub mod failpoint;
pub mod time;
pub mod tree;

pub use atomic::{ensure_dir, ensure_private_dir, fsync_dir, syncfs, write_atomic};
pub use error::{IoContext, IoError};
pub use tree::{current_umask, disk_usage, read_xattrs, remove_any};
