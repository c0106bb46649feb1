//! The bootc lifecycle on a sysroot: `install` (the first deployment), `stage` (a deployment
//! for the next boot, /etc conflicts checked), `finalize_staged` (at shutdown: /etc merged,
//! entries written), `rollback`, pinning, and the cached result of `upgrade --check`.
//!
//! Every method takes the [`SysrootLock`]. Each step is one rename (crash invariants 7–9 in
//! ARCHITECTURE.md): staging must never change what boots, finalize must never be retried
//! after it removed `staged.json`, and nothing here removes a deployment (the GC does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ociboot_oci::{ImageReference, RegistryOptions, Sha256Digest};
use ociboot_store::PullProgress;

use super::checkout::OriginSpec;
use super::{hit, not_booted, valid_name, Deployment, StagedInfo, Sysroot, SysrootLock};
use crate::bls;
use crate::error::{Ctx, Error, Result};
use crate::etcmerge;
use crate::fstree::{self, FsEntry};
use crate::kargs;
use crate::origin::CachedUpdate;

/// Options of `install to-filesystem`.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// The image to pull and deploy (`--source-imgref`); required.
    pub source: Option<ImageReference>,
    /// The image the installed system follows for updates; `None` for `source`.
    pub target: Option<ImageReference>,
    /// The stateroot of the first deployment (a plain file name).
    pub stateroot: String,
    /// Extra kernel arguments, after those from the image's kargs.d.
    pub kargs: Vec<String>,
    /// `root=` value; empty for none.
    pub root_mount_spec: Option<String>,
}

type Scan = BTreeMap<PathBuf, FsEntry>;

/// Scan `booted`'s pristine and live /etc on a second thread while `work` runs.
fn scan_etc_while<T>(booted: &Deployment, work: impl FnOnce() -> T) -> (Result<(Scan, Scan)>, T) {
    // Both read beneath the deployment: never through a symlink an image made of usr or etc.
    let scan = |rel: &str| -> Result<Scan> {
        let root = ociboot_fs::beneath::Root::open(&booted.root)?;
        fstree::scan_in(&root, Path::new(rel))
    };
    std::thread::scope(|s| {
        let scans = s.spawn(|| Ok::<_, Error>((scan("usr/etc")?, scan("etc")?)));
        let done = work();
        let scans = ociboot_store::error::join_worker(scans.join(), || {
            format!("/etc scanner for {}", booted.key())
        })
        .map_err(Error::from)
        .and_then(|r| r);
        (scans, done)
    })
}

impl Sysroot {
    /// `install to-filesystem`: pull, deploy, write the first entry.
    pub fn install(
        &self,
        lock: &SysrootLock,
        opts: &InstallOptions,
        reg: &RegistryOptions,
        progress: &dyn PullProgress,
    ) -> Result<Deployment> {
        let store = self.locked(lock)?;
        if !valid_name(&opts.stateroot) {
            return Err(Error::Invalid(format!(
                "bad stateroot name {:?}",
                opts.stateroot
            )));
        }
        if !bls::read_entries(&self.boot)?.is_empty() || self.root.join("ociboot/deploy").exists() {
            return Err(Error::State(format!(
                "{} already has deployments",
                self.root.display()
            )));
        }
        let source = opts.source.clone().ok_or_else(|| {
            Error::Invalid(
                "--source-imgref is required (ociboot cannot find its own image yet)".into(),
            )
        })?;
        let pulled = store.pull(&source, reg, progress)?;
        let co = self.checkout(store, &pulled.manifest_digest, &opts.stateroot, true)?;
        // An image refused here leaves no deployment behind.
        let cleanup = |e: Error| {
            let _ = ociboot_fs::remove_any(&co.root);
            e
        };
        super::entries::check_init(&co.root, &source.to_string()).map_err(cleanup)?;
        let kernel = bls::install_kernel(
            &self.boot,
            &opts.stateroot,
            &co.root,
            co.kernel_sum.as_deref(),
        )
        .map_err(cleanup)?;
        // Where the initramfs moves /dev, /proc, /sys and /run before running init=.
        for api in ["dev", "proc", "sys", "run"] {
            let p = self.root.join(api);
            std::fs::create_dir_all(&p).at("creating", &p)?;
        }
        let image_kargs = kargs::image_kargs(&co.root)?;
        let mut all = Vec::new();
        if let Some(spec) = opts.root_mount_spec.as_deref().filter(|s| !s.is_empty()) {
            all.push(format!("root={spec}"));
            all.push("rw".to_string());
        }
        all.extend(image_kargs.iter().cloned());
        all.extend(opts.kargs.iter().cloned());
        let spec = OriginSpec {
            image: opts.target.clone().unwrap_or(source),
            kargs: all,
            image_kargs,
        };
        let mut origin = co.origin(store, spec)?;
        origin.kernel = Some(kernel.into());
        origin.write(&self.origin_path(&co.stateroot, &co.id))?;
        let d = Deployment {
            stateroot: co.stateroot,
            id: co.id,
            root: co.root,
            origin,
        };
        self.write_entries(&[&d], "install-entries-synced")?;
        Ok(d)
    }

    /// Stage `image` (already in the store as `digest`) for the next boot, merging /etc from
    /// the booted deployment now so that conflicts are reported before anything is staged.
    pub fn stage(
        &self,
        lock: &SysrootLock,
        image: &ImageReference,
        digest: &Sha256Digest,
        locked: bool,
    ) -> Result<Deployment> {
        let store = self.locked(lock)?;
        let state = self.state()?;
        let booted = state.booted().cloned().ok_or_else(not_booted)?;
        let stateroot = booted.stateroot.clone();
        // The booted /etc and its pristine copy are read while the checkout runs.
        let (scans, co) =
            scan_etc_while(&booted, || self.checkout(store, digest, &stateroot, false));
        let co = co?;
        let cleanup = |e: Error| {
            let _ = ociboot_fs::remove_any(&co.root);
            e
        };
        // The merge itself happens at finalize, with /etc as it is then; conflicts now.
        let (o, m) = scans.map_err(cleanup)?;
        etcmerge::check_deployment(&o, &m, &co.root).map_err(cleanup)?;
        super::entries::check_init(&co.root, &image.to_string()).map_err(cleanup)?;
        if !super::entries::can_bless(&co.root) {
            tracing::warn!(
                "{image} has no /{} (Debian: package systemd-boot): its boot entry is not \
                 counted, so a boot of it that fails does not fall back by itself",
                super::entries::BLESS_BOOT
            );
        }
        let new_image_kargs = kargs::image_kargs(&co.root).map_err(cleanup)?;
        let spec = OriginSpec {
            image: image.clone(),
            kargs: kargs::upgrade_kargs(
                &booted.origin.kargs,
                &booted.origin.image_kargs,
                &new_image_kargs,
            ),
            image_kargs: new_image_kargs,
        };
        let mut origin = co.origin(store, spec).map_err(cleanup)?;
        // The kernel goes to /boot now, so finalizing at shutdown only writes entries.
        let k = bls::install_kernel(&self.boot, &stateroot, &co.root, co.kernel_sum.as_deref())
            .map_err(cleanup)?;
        origin.kernel = Some(k.into());
        origin
            .write(&self.origin_path(&stateroot, &co.id))
            .map_err(cleanup)?;
        hit("stage-deployed");
        std::fs::create_dir_all(&self.run).at("creating", &self.run)?;
        self.write_staged(&StagedInfo {
            stateroot: stateroot.clone(),
            id: co.id.clone(),
            locked,
        })?;
        hit("stage-staged-written");
        if self.run == Path::new("/run/ociboot") {
            let _ = std::fs::write(
                "/run/reboot-required",
                format!("ociboot: Reboot required for image: {digest}\n"),
            );
        }
        Ok(Deployment {
            stateroot,
            id: co.id,
            root: co.root,
            origin,
        })
    }

    /// Unlock a staged deployment made with `--download-only`.
    pub fn unlock_staged(&self, lock: &SysrootLock) -> Result<bool> {
        self.deployments_locked(lock)?;
        let state = self.state()?;
        let Some((_, mut info)) = state.staged else {
            return Ok(false);
        };
        if !info.locked {
            return Ok(false);
        }
        info.locked = false;
        self.write_staged(&info)?;
        Ok(true)
    }

    /// What the shutdown unit runs: merge /etc as it is now into the staged deployment and
    /// make it the default. Returns the finalized deployment, if any.
    pub fn finalize_staged(&self, lock: &SysrootLock) -> Result<Option<Deployment>> {
        self.deployments_locked(lock)?;
        let state = self.state()?;
        let Some((staged, info)) = state.staged.clone() else {
            return Ok(None);
        };
        if info.locked {
            return Ok(None);
        }
        let booted = state.booted().cloned().ok_or_else(not_booted)?;
        // Never retried: if this is interrupted, the old deployment boots.
        std::fs::remove_file(self.staged_file()).at("removing", self.staged_file())?;
        ociboot_fs::fsync_dir(&self.run)?;
        hit("finalize-unlinked");
        // /etc as it is at this moment, into a fresh copy of the new pristine /etc, swapped in.
        let new_etc = staged.root.join("etc.merged");
        ociboot_fs::remove_any(&new_etc)?;
        // The shutdown waits for this: read the booted /etc and its pristine copy on a
        // second thread while the new pristine /etc is copied.
        let (scans, copied) = scan_etc_while(&booted, || {
            fstree::copy_pristine_etc(&staged.root, "etc.merged")
        });
        copied?;
        let (o, m) = scans?;
        etcmerge::merge_scanned(&o, &m, &booted.root.join("etc"), &new_etc)?;
        ociboot_fs::syncfs(&staged.root)?;
        // Staging leaves etc out; the merged one appears by one rename.
        let etc = staged.root.join("etc");
        ociboot_fs::remove_any(&etc)?;
        std::fs::rename(&new_etc, &etc).ctx(|| format!("renaming {} to etc", new_etc.display()))?;
        ociboot_fs::fsync_dir(&staged.root)?;
        hit("finalize-etc-merged");
        let mut order: Vec<&Deployment> = vec![&staged, &booted];
        for (_, d) in &state.entries {
            if d.origin.pinned && d.key() != booted.key() {
                order.push(d);
            }
        }
        self.write_entries(&order, "finalize-entries-synced")?;
        hit("finalize-entries-swapped");
        Ok(Some(staged))
    }

    /// Make the rollback deployment the default (or undo a queued rollback). Drops a staged
    /// deployment. Returns true if a queued rollback was reverted.
    pub fn rollback(&self, lock: &SysrootLock) -> Result<bool> {
        self.deployments_locked(lock)?;
        let state = self.state()?;
        let booted = state.booted().ok_or_else(not_booted)?;
        let rollback = state
            .rollback()
            .ok_or_else(|| Error::State("no rollback deployment to switch to".into()))?;
        let reverting = state.rollback_queued();
        let mut order: Vec<&Deployment> = if reverting {
            vec![booted, rollback]
        } else {
            vec![rollback, booted]
        };
        for (_, d) in &state.entries {
            if d.key() != booted.key() && d.key() != rollback.key() {
                order.push(d);
            }
        }
        // A staged deployment is dropped (the GC removes its directory later).
        if state.staged.is_some() {
            std::fs::remove_file(self.staged_file()).at("removing", self.staged_file())?;
        }
        self.write_entries(&order, "rollback-entries-synced")?;
        Ok(reverting)
    }

    /// Pin or unpin the deployment at `which` (its index in boot order, or its id).
    pub fn set_pinned(&self, lock: &SysrootLock, which: &str, pinned: bool) -> Result<Deployment> {
        self.deployments_locked(lock)?;
        let state = self.state()?;
        let d = match which.parse::<usize>() {
            Ok(i) => state.entries.get(i).map(|(_, d)| d.clone()),
            Err(_) => state
                .entries
                .iter()
                .map(|(_, d)| d)
                .find(|d| d.id == which || d.key() == which)
                .cloned(),
        }
        .ok_or_else(|| {
            Error::Invalid(format!(
                "no deployment {which:?} in the boot entries (staged deployments cannot be pinned)"
            ))
        })?;
        let mut o = d.origin.clone();
        o.pinned = pinned;
        o.write(&self.origin_path(&d.stateroot, &d.id))?;
        Ok(Deployment { origin: o, ..d })
    }

    /// Record what `upgrade --check` found on the booted deployment.
    pub fn set_cached_update(
        &self,
        lock: &SysrootLock,
        d: &Deployment,
        cached: Option<CachedUpdate>,
    ) -> Result<()> {
        self.deployments_locked(lock)?;
        let mut o = d.origin.clone();
        o.cached_update = cached;
        o.write(&self.origin_path(&d.stateroot, &d.id))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{fake_sysroot, write_order};
    use super::*;

    #[test]
    fn pin_by_index_id_or_key() {
        let (_d, s) = fake_sysroot(&["a.0", "b.0", "c.0"]);
        write_order(&s, &["a.0", "b.0"]);
        let lock = s.lock(&|_| {}).unwrap();
        let pinned = |id: &str| {
            s.deployment(&format!("default/{id}"))
                .unwrap()
                .origin
                .pinned
        };
        assert_eq!(s.set_pinned(&lock, "1", true).unwrap().id, "b.0");
        assert!(pinned("b.0") && !pinned("a.0"));
        s.set_pinned(&lock, "default/b.0", false).unwrap();
        s.set_pinned(&lock, "a.0", true).unwrap();
        assert!(pinned("a.0") && !pinned("b.0"));
        // Only deployments with an entry.
        for which in ["c.0", "2", "default/c.0"] {
            assert!(s.set_pinned(&lock, which, true).is_err(), "{which}");
        }
        assert!(!pinned("c.0"));
    }

    #[test]
    fn unlock_only_a_locked_staged_deployment() {
        let (_d, s) = fake_sysroot(&["a.0", "b.0"]);
        write_order(&s, &["a.0"]);
        let lock = s.lock(&|_| {}).unwrap();
        assert!(!s.unlock_staged(&lock).unwrap());
        s.write_staged(&StagedInfo {
            stateroot: "default".into(),
            id: "b.0".into(),
            locked: true,
        })
        .unwrap();
        assert!(s.unlock_staged(&lock).unwrap());
        let (d, info) = s.state_booted_by("").unwrap().staged.unwrap();
        assert_eq!((d.id.as_str(), info.locked), ("b.0", false));
        assert!(!s.unlock_staged(&lock).unwrap());
    }
}
