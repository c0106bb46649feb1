//! # ociboot-store: the content store
//!
//! The second stage of ociboot's data flow. It takes an image from an
//! [`ociboot_oci::ImageSource`] and keeps it deduplicated inside a sysroot:
//!
//! - **objects**: each regular file once, named by the hash of its content *and* its owner,
//!   mode and xattrs, so that a deployment can hardlink it unchanged ([`objects`]);
//! - **layer records**: what each layer does (puts, whiteouts, opaque markers, hardlinks),
//!   keyed by the layer's compressed digest, so a layer is downloaded once ([`record`]);
//! - **images**: manifest, config and the merged file tree with full metadata ([`tree`]);
//! - **refs**: which reference points at which image.
//!
//! Layers stream: decompression, digest checks, tar parsing and object writing happen in one
//! pass, hashing while writing. Nothing is referred to (by a layer record, an image or a
//! reference) before it is durable, and a refused image leaves nothing behind. See ARCHITECTURE.md for the on-disk layout and the crash
//! invariants. This crate does not know about deployments, boot entries or the CLI.

pub mod error;
pub mod failpoint;
pub mod import;
pub mod limits;
pub mod lock;
pub mod objects;
pub mod record;
pub mod space;
pub mod store;
pub mod tarfmt;
pub mod tree;
pub mod unpack;

pub use error::{Error, Result};
pub use limits::Limits;
pub use objects::{ImportStats, ObjectId};
pub use store::{
    ImageRecord, ImageSummary, NoProgress, PruneReport, PullOutcome, PullProgress, Store,
};
pub use tree::{Content, LayerOp, Meta, Node, Tree, TreeSize};
pub use unpack::{unpack, unpack_with, Mode as UnpackMode, UnpackStats};
