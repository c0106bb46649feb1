//! The content store's crash points. [`hit`] (from `ociboot-fs`) aborts the process at a
//! named step when the `failpoints` feature is on and `OCIBOOT_FAILPOINT` names it.

pub use ociboot_fs::failpoint::hit;

/// Every named step, in the order a pull reaches them.
pub const PULL_STEPS: &[&str] = &[
    "pull-manifest-fetched",
    "pull-layer-staged",
    "pull-layer-objects-committed",
    "pull-layer-committed",
    "pull-image-written",
    "pull-image-committed",
    "pull-ref-committed",
];
