//! A sysroot (a physical root holding deployments): where each of its files lives, the lock
//! that every change holds, and the names of deployments. The operations are in the
//! submodules: `state` (reading [`State`] back from disk), `checkout` (an image checked out as
//! a deployment), `entries` (boot entries and kernels of deployments), `lifecycle` (install,
//! stage, finalize, rollback, pin), `update` (the upgrade and switch algorithms), `gc` and
//! `drift` (`/etc` and `/var` against the image).
//!
//! ```text
//! <sysroot>/ociboot/deploy/<stateroot>/
//!   var/                       the stateroot's one /var, seeded from the first image
//!   deploy/<id>/               a deployment: hardlinks into the store, own etc/, usr/etc pristine
//!   deploy/<id>.origin         JSON: image, digests, kargs, pinned, cached update
//! <run>/staged.json            the staged deployment (run = /run/ociboot on a real system)
//! <sysroot>/boot/…             BLS entries and kernels, see bls.rs
//! ```
//!
//! Nothing here changes a sysroot without a [`SysrootLock`]: every mutating method takes one
//! and checks it holds the lock it needs (the store's, the deployments', or both).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ociboot_store::lock::{self, Lock};
use ociboot_store::Store;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::origin::Origin;

mod checkout;
mod drift;
mod entries;
mod gc;
mod health;
mod lifecycle;
mod state;
#[cfg(test)]
mod testutil;
mod update;

pub use crate::cmdline::proc_cmdline;
pub use drift::{Drift, DriftKind};
pub use gc::GcReport;
pub use health::Assessment;
pub use lifecycle::InstallOptions;
pub use state::State;
pub use update::{RegistryLoader, SwitchOutcome, UpgradeMode, UpgradeOutcome};

fn hit(step: &str) {
    ociboot_fs::failpoint::hit(step);
}

/// Every named step where a test build can abort, in order of the operations.
pub const STEPS: &[&str] = &[
    "install-entries-synced",
    "stage-deployed",
    "stage-staged-written",
    "finalize-unlinked",
    "finalize-etc-merged",
    "finalize-entries-synced",
    "finalize-entries-swapped",
    "rollback-entries-synced",
    "gc-deployments-removed",
    "gc-store-pruned",
];

/// Where an image carries the ociboot binary that sets up the root at boot.
pub const INIT_IN_IMAGE: &str = "usr/bin/ociboot";

/// Where a booted system sees its physical root (the root set-up bind-mounts it there).
pub const BOOTED_PHYSICAL_ROOT: &str = "/sysroot";

/// A physical root holding deployments.
#[derive(Debug, Clone)]
pub struct Sysroot {
    /// The physical root: the directory holding `ociboot/` (deployments and the store).
    pub root: PathBuf,
    /// The boot filesystem, where loader entries and kernels go: `<root>/boot`, or the ESP.
    pub boot: PathBuf,
    /// Runtime state (gone at reboot on a real system).
    pub run: PathBuf,
}

/// A deployment and its origin.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The stateroot it belongs to.
    pub stateroot: String,
    /// Its id within the stateroot: `<first 16 hex digits of the manifest digest>.<serial>`.
    pub id: String,
    /// The deployment directory, `<sysroot>/ociboot/deploy/<stateroot>/deploy/<id>`.
    pub root: PathBuf,
    /// Its origin, as read from `<id>.origin`.
    pub origin: Origin,
}

impl Deployment {
    /// The `ociboot=` value: `<stateroot>/<id>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.stateroot, self.id)
    }
}

/// `<run>/staged.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StagedInfo {
    /// The stateroot of the staged deployment.
    pub stateroot: String,
    /// The id of the staged deployment.
    pub id: String,
    /// `upgrade --download-only`: not applied at shutdown.
    pub locked: bool,
}

/// The sysroot's write locks, released when dropped. Two `flock`s, always taken in this order:
/// the store's exclusive lock (`ociboot/lock`: objects, layers, images, refs) and the
/// deployments lock (`ociboot/deploy.lock`: deployments, origins, boot entries, the staged
/// state). A pull holds only the first while it downloads, so `rollback`, `pin` and the like
/// (the second only) never wait on the network; what removes or checks out deployments (stage,
/// GC, install) holds both. Every mutating method of [`Sysroot`] takes one of these and checks
/// that it holds what it needs.
pub struct SysrootLock {
    root: PathBuf,
    store: Option<Store>,
    deployments: OnceLock<Lock>,
}

impl SysrootLock {
    /// The store, opened for writing under this lock, if this lock holds it.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// Take the deployments lock too, if not held yet (after the store's: the order every
    /// process keeps). `waiting` is called with who holds it, if someone does.
    pub fn lock_deployments(&self, waiting: &dyn Fn(&str)) -> Result<()> {
        if self.deployments.get().is_none() {
            let l = deployments_lock(&self.root, waiting)?;
            let _ = self.deployments.set(l);
        }
        Ok(())
    }
}

/// `<root>/ociboot/deploy.lock`, exclusive.
fn deployments_lock(root: &Path, waiting: &dyn Fn(&str)) -> Result<Lock> {
    let base = root.join("ociboot");
    if !root.is_dir() {
        return Err(Error::State(format!(
            "sysroot {} is not a directory",
            root.display()
        )));
    }
    ociboot_fs::ensure_dir(&base).map_err(ociboot_store::Error::from)?;
    Ok(lock::acquire(
        &base.join("deploy.lock"),
        "deployments",
        true,
        waiting,
    )?)
}

/// The physical root for a `--sysroot` argument: on a booted system (where `/` is a
/// deployment) `/` means [`BOOTED_PHYSICAL_ROOT`].
pub fn physical_root(arg: &Path) -> PathBuf {
    let booted = Path::new(BOOTED_PHYSICAL_ROOT);
    if arg == Path::new("/") && !Path::new("/ociboot").exists() && booted.join("ociboot").exists() {
        booted.to_path_buf()
    } else {
        arg.to_path_buf()
    }
}

/// A stateroot or deployment id: a plain file name.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !s.starts_with('.')
}

/// `<stateroot>/<id>` split, if both are valid names.
pub(crate) fn split_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('/')
        .filter(|(s, id)| valid_name(s) && valid_name(id))
}

impl Sysroot {
    /// The sysroot at `root`. Run-time state goes to `$OCIBOOT_RUN_DIR`, else `/run/ociboot`
    /// for the real system (`/` or `/sysroot`), else `<root>/run/ociboot`.
    pub fn new(root: &Path) -> Sysroot {
        let booted = Path::new(BOOTED_PHYSICAL_ROOT);
        let run = match std::env::var_os("OCIBOOT_RUN_DIR") {
            Some(r) => PathBuf::from(r),
            None if root == Path::new("/") || root == booted => PathBuf::from("/run/ociboot"),
            None => root.join("run/ociboot"),
        };
        // A booted system with its boot partition (the ESP) mounted at /boot.
        let boot = if root == booted && is_mount_point(Path::new("/boot")) {
            PathBuf::from("/boot")
        } else {
            root.join("boot")
        };
        Sysroot {
            root: root.to_path_buf(),
            boot,
            run,
        }
    }

    /// The sysroot a `--sysroot` argument names (see [`physical_root`]).
    pub fn open(arg: &Path) -> Sysroot {
        Sysroot::new(&physical_root(arg))
    }

    /// A sysroot whose boot filesystem is elsewhere (the ESP's staging directory when
    /// installing to a disk).
    pub fn with_boot(root: &Path, boot: &Path) -> Sysroot {
        Sysroot {
            boot: boot.to_path_buf(),
            ..Sysroot::new(root)
        }
    }

    /// Take both write locks, the store's (opened for writing) then the deployments'. If
    /// another process holds one, `waiting` is called with which and who, then this waits.
    pub fn lock(&self, waiting: &dyn Fn(&str)) -> Result<SysrootLock> {
        let l = self.lock_store(waiting)?;
        l.lock_deployments(waiting)?;
        Ok(l)
    }

    /// Take the store's write lock only; the deployments lock follows with
    /// [`SysrootLock::lock_deployments`] once the network is done with (`upgrade`, `switch`).
    pub fn lock_store(&self, waiting: &dyn Fn(&str)) -> Result<SysrootLock> {
        Ok(SysrootLock {
            root: self.root.clone(),
            store: Some(Store::open_write(&self.root, waiting)?),
            deployments: OnceLock::new(),
        })
    }

    /// Like [`Sysroot::lock_store`], but if another writer holds the store's lock this does
    /// not wait: an error names the holder (`pid N (VERB)`). For `upgrade`, which a timer
    /// starts: a run that finds another at work gives up rather than queue behind it.
    pub fn lock_store_unless_busy(&self, waiting: &dyn Fn(&str)) -> Result<SysrootLock> {
        Ok(SysrootLock {
            root: self.root.clone(),
            store: Some(Store::open_write_unless_written(&self.root, waiting)?),
            deployments: OnceLock::new(),
        })
    }

    /// Take the store's write lock only if nobody holds it (`None` if someone does).
    pub fn try_lock_store(&self) -> Result<Option<SysrootLock>> {
        Ok(Store::try_open_write(&self.root)?.map(|store| SysrootLock {
            root: self.root.clone(),
            store: Some(store),
            deployments: OnceLock::new(),
        }))
    }

    /// Take the deployments lock only: for what changes entries and origins but never the
    /// store (`rollback`, `pin`, `unlock`, `finalize-staged` before its GC).
    pub fn lock_deployments(&self, waiting: &dyn Fn(&str)) -> Result<SysrootLock> {
        let deployments = OnceLock::new();
        let _ = deployments.set(deployments_lock(&self.root, waiting)?);
        Ok(SysrootLock {
            root: self.root.clone(),
            store: None,
            deployments,
        })
    }

    fn check_root(&self, lock: &SysrootLock) -> Result<()> {
        if lock.root != self.root {
            return Err(Error::State(format!(
                "the lock held is {}'s, not {}'s",
                lock.root.display(),
                self.root.display()
            )));
        }
        Ok(())
    }

    /// The store of `lock`, which must be this sysroot's and hold both locks.
    fn locked<'a>(&self, lock: &'a SysrootLock) -> Result<&'a Store> {
        self.deployments_locked(lock)?;
        self.store_locked(lock)
    }

    /// The store of `lock`, which must be this sysroot's and hold the store's lock.
    fn store_locked<'a>(&self, lock: &'a SysrootLock) -> Result<&'a Store> {
        self.check_root(lock)?;
        lock.store.as_ref().ok_or_else(|| {
            Error::State(
                "this needs the store's lock, and only the deployments lock is held".into(),
            )
        })
    }

    /// Check that `lock` is this sysroot's and holds the deployments lock.
    fn deployments_locked(&self, lock: &SysrootLock) -> Result<()> {
        self.check_root(lock)?;
        if lock.deployments.get().is_none() {
            return Err(Error::State(
                "this needs the deployments lock, and only the store's is held".into(),
            ));
        }
        Ok(())
    }

    fn stateroot_dir(&self, s: &str) -> PathBuf {
        self.root.join("ociboot/deploy").join(s)
    }

    fn deploy_dir(&self, s: &str) -> PathBuf {
        self.stateroot_dir(s).join("deploy")
    }

    /// The shared /var of stateroot `s`, `<root>/ociboot/deploy/<s>/var`.
    pub fn var_dir(&self, s: &str) -> PathBuf {
        self.stateroot_dir(s).join("var")
    }

    fn origin_path(&self, s: &str, id: &str) -> PathBuf {
        self.deploy_dir(s).join(format!("{id}.origin"))
    }

    /// The last health verdict of a deployment, beside its origin (removed with it by the GC).
    fn health_path(&self, s: &str, id: &str) -> PathBuf {
        self.deploy_dir(s).join(format!("{id}.health"))
    }

    fn staged_file(&self) -> PathBuf {
        self.run.join("staged.json")
    }
}

pub(crate) fn is_mount_point(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(m), Some(Ok(parent))) => m.dev() != parent.dev(),
        _ => false,
    }
}

fn not_booted() -> Error {
    Error::State(
        "not booted into an ociboot deployment (no ociboot= on the kernel command line that names a boot entry)".into(),
    )
}
