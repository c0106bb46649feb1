//! # ociboot-deploy: deployments and boot entries
//!
//! The third stage of ociboot's data flow. From an image in the store it makes a
//! **deployment** — a root directory whose files are hardlinks to the store's objects, with its
//! own writable `/etc` (the image's pristine `/etc` kept at `usr/etc`) and the stateroot's
//! shared `/var` — and the **boot entries** (BLS type #1) that boot it. It implements the
//! bootc lifecycle on top: the upgrade and switch algorithms, stage for the next boot,
//! finalize at shutdown with a three-way `/etc` merge, rollback, pin, garbage collection,
//! `/etc` and `/var` drift, and the `org.containers.bootc/v1` status. Callers (the CLI) only
//! parse, call and print.
//!
//! Every change holds the [`SysrootLock`] and is made visible by one rename (a deployment
//! directory, an origin file, the staged-state file, `loader/loader.conf`); see
//! ARCHITECTURE.md for the invariants.

pub mod bls;
pub mod cmdline;
mod error;
pub mod etcmerge;
pub mod fstree;
pub mod health;
pub mod kargs;
pub mod lint;
pub mod origin;
pub mod rootsetup;
pub mod status;
pub mod sysroot;
pub mod toplevel;

pub use error::{Error, Result};
pub use origin::{CachedUpdate, Origin};
pub use sysroot::{
    physical_root, Deployment, Drift, DriftKind, GcReport, InstallOptions, RegistryLoader,
    StagedInfo, State, SwitchOutcome, Sysroot, SysrootLock, UpgradeMode, UpgradeOutcome,
};
