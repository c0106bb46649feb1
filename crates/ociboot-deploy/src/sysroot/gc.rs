//! Garbage collection of a sysroot: deployment directories and origins no entry or staged
//! state names (and leftover `.partial` checkouts), kernel directories in /boot no entry or
//! staged deployment uses, references no kept deployment follows, then the store's
//! unreferenced content.
//!
//! Removal goes deployments → kernels → references → store content, each step removing only
//! what nothing left on disk refers to. The GC must never remove a deployment that an entry
//! (booted, rollback, pinned or other) or the staged state names, nor a kernel they use.
//! Trees are removed through `ociboot_fs::beneath::Root`: nothing inside them is followed.

use std::collections::BTreeSet;
use std::path::Path;

use ociboot_fs::beneath::Root;
use ociboot_oci::{ImageReference, Sha256Digest};

use super::{hit, State, Sysroot, SysrootLock};
use crate::bls::{self, Entry};
use crate::error::Result;
use crate::origin::Origin;

/// What garbage collection removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct GcReport {
    /// Deployment directories removed (leftover `.partial` checkouts included).
    pub deployments: u64,
    /// Image references removed from the store.
    pub refs: u64,
    /// Kernel directories removed from /boot.
    pub kernels: u64,
    /// Images removed from the store; 0 when the store was not pruned.
    pub images: u64,
    /// Disk space the store prune freed, in bytes (allocated blocks); 0 when it was not pruned.
    pub bytes: u64,
}

/// The images kept deployments use: by digest and by the reference they follow.
#[derive(Default)]
struct Live {
    digests: BTreeSet<Sha256Digest>,
    refs: BTreeSet<ImageReference>,
}

impl Sysroot {
    /// Remove deployments no entry, staged state or pin needs, kernels no entry uses, and
    /// store content no kept deployment uses (refs in `retain` stay).
    ///
    /// The store is pruned only when this removed a deployment or a reference (or `full`):
    /// walking every object is the expensive part, and there is nothing new to free otherwise.
    pub fn gc(
        &self,
        lock: &SysrootLock,
        retain: &[ImageReference],
        full: bool,
    ) -> Result<GcReport> {
        let store = self.locked(lock)?;
        let state = self.state()?;
        let mut report = GcReport::default();
        let live = self.remove_deployments(&state, &mut report)?;
        hit("gc-deployments-removed");
        report.kernels = self.remove_kernels(&state)?;
        // Store: refs no kept deployment uses go (unless retained), then unreferenced content.
        for r in store.refs()? {
            if !live.refs.contains(&r.reference)
                && !live.digests.contains(&r.manifest_digest)
                && !retain.contains(&r.reference)
            {
                store.remove_ref(&r.reference)?;
                report.refs += 1;
            }
        }
        if !(full || report.deployments > 0 || report.refs > 0) {
            hit("gc-store-pruned");
            return Ok(report);
        }
        let digests: Vec<Sha256Digest> = live.digests.into_iter().collect();
        let p = store.prune(&digests)?;
        hit("gc-store-pruned");
        report.images = p.images;
        report.bytes = p.bytes;
        Ok(report)
    }

    /// Remove what no entry or staged state names from every stateroot; what the kept
    /// deployments' origins use.
    fn remove_deployments(&self, state: &State, report: &mut GcReport) -> Result<Live> {
        let mut keep: BTreeSet<String> = state.entries.iter().map(|(_, d)| d.key()).collect();
        if let Some((d, _)) = &state.staged {
            keep.insert(d.key());
        }
        let mut live = Live::default();
        // Deployment trees hold what images made (symlinks out included): each is removed
        // beneath its deploy directory, nothing in it followed.
        let base = match Root::open(self.root.join("ociboot/deploy")) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(live),
            Err(e) => return Err(e.into()),
        };
        for sr in base.list("")? {
            let stateroot = sr.to_string_lossy().to_string();
            let Ok(dir) = base.open_dir(Path::new(&sr).join("deploy")) else {
                continue;
            };
            for name in dir.list("")? {
                let n = name.to_string_lossy().to_string();
                // A deployment's files: `<id>`, `<id>.origin` and `<id>.health`.
                let record = n.ends_with(".origin") || n.ends_with(".health");
                let id = n
                    .strip_suffix(".origin")
                    .or_else(|| n.strip_suffix(".health"))
                    .unwrap_or(&n)
                    .to_string();
                let key = format!("{stateroot}/{id}");
                if keep.contains(&key) && !n.ends_with(".partial") {
                    if n.ends_with(".origin") {
                        if let Ok(o) = Origin::read(&dir.show(Path::new(&name))) {
                            live.digests.insert(o.manifest_digest);
                            live.refs.insert(o.image.clone());
                        }
                    }
                    continue;
                }
                if !record {
                    report.deployments += 1;
                }
                dir.remove(&name)?;
            }
        }
        Ok(live)
    }

    /// Remove kernel directories no entry and no staged deployment uses; how many.
    fn remove_kernels(&self, state: &State) -> Result<u64> {
        let mut kernel_users: Vec<Entry> = state.entries.iter().map(|(e, _)| e.clone()).collect();
        if let Some((d, _)) = &state.staged {
            if let Ok(k) = self.boot_files(d) {
                kernel_users.push(Entry {
                    title: String::new(),
                    version: 0,
                    linux: k.linux,
                    initrd: k.initrd,
                    options: String::new(),
                    counter: None,
                });
            }
        }
        let mut n = 0;
        for k in bls::unused_kernel_dirs(&self.boot, &kernel_users)? {
            if let (Some(dir), Some(name)) = (k.parent(), k.file_name()) {
                Root::open(dir)?.remove(name)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{add_deployment, entry, exists, fake_sysroot};
    use super::super::StagedInfo;
    use super::*;

    #[test]
    fn gc_keeps_what_entries_and_staged_name() {
        // b booted (on the command line), a rollback, c pinned, d staged; e and f orphans.
        let (_d, s) = fake_sysroot(&["a.0", "b.0", "d.0", "e.0"]);
        add_deployment(&s, "c.0", |o| o.pinned = true);
        let entries = [entry("b.0", "k1"), entry("a.0", "k2"), entry("c.0", "k1")];
        bls::write_entries(&s.boot, &entries, || {}).unwrap();
        s.write_staged(&StagedInfo {
            stateroot: "default".into(),
            id: "d.0".into(),
            locked: false,
        })
        .unwrap();
        let dir = s.deploy_dir("default");
        std::fs::create_dir_all(dir.join("f.0.partial")).unwrap();
        std::fs::create_dir_all(dir.join("b.0.partial")).unwrap();
        for k in ["k1", "k2", "k3"] {
            std::fs::create_dir_all(s.boot.join("ociboot").join(k)).unwrap();
        }
        let lock = s.lock(&|h| panic!("lock held by {h}")).unwrap();
        let r = s.gc(&lock, &[], false).unwrap();
        for id in ["a.0", "b.0", "c.0", "d.0"] {
            assert!(dir.join(id).is_dir(), "{id} removed");
            assert!(
                dir.join(format!("{id}.origin")).is_file(),
                "{id}.origin removed"
            );
        }
        for gone in ["e.0", "e.0.origin", "f.0.partial", "b.0.partial"] {
            assert!(!exists(&dir.join(gone)), "{gone} kept");
        }
        assert!(s.boot.join("ociboot/k1").is_dir() && s.boot.join("ociboot/k2").is_dir());
        assert!(!exists(&s.boot.join("ociboot/k3")));
        assert_eq!((r.deployments, r.kernels, r.refs), (3, 1, 0));
        // Nothing left to remove: a second pass removes nothing.
        let r = s.gc(&lock, &[], false).unwrap();
        assert_eq!((r.deployments, r.kernels, r.refs), (0, 0, 0));
    }

    #[test]
    fn gc_removes_links_in_a_deployment_not_what_they_point_at() {
        let (d, s) = fake_sysroot(&["a.0", "e.0"]);
        bls::write_entries(&s.boot, &[entry("a.0", "k1")], || {}).unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("sub/file"), "host").unwrap();
        let e0 = s.deploy_dir("default").join("e.0");
        std::fs::create_dir_all(e0.join("etc")).unwrap();
        std::os::unix::fs::symlink(&outside, e0.join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../../outside/sub", e0.join("etc/rel")).unwrap();
        let lock = s.lock(&|h| panic!("lock held by {h}")).unwrap();
        let r = s.gc(&lock, &[], false).unwrap();
        assert_eq!(r.deployments, 1);
        assert!(!exists(&e0));
        assert_eq!(
            std::fs::read_to_string(outside.join("sub/file")).unwrap(),
            "host"
        );
    }

    #[test]
    fn a_lock_of_another_sysroot_is_refused() {
        let (_d1, s1) = fake_sysroot(&[]);
        let (_d2, s2) = fake_sysroot(&[]);
        let lock = s1.lock(&|_| {}).unwrap();
        let e = s2.gc(&lock, &[], false).unwrap_err();
        assert!(e.to_string().contains("lock"), "{e}");
    }
}
