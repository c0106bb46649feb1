//! Removing references and collecting garbage: images no reference (or `keep` root) names,
//! layer records no image lists, objects no layer record lists; and the sweep of unrecorded
//! objects that recovery after an interrupted pull runs (see [`Store::open_write`]).
//!
//! Removal goes images → layers → objects, and each step removes only what nothing left on
//! disk refers to, so a crash at any point leaves a consistent store. GC must never remove
//! something still referred to, and never skip a directory it could not read: a read error
//! (other than the entry having vanished) stops it with an error naming the path.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use ociboot_oci::{ImageReference, Sha256Digest};
use serde::Serialize;

use super::Store;
use crate::error::{Error, IoContext, Result};
use crate::objects::ObjectId;
use crate::tree::{Content, LayerOp};
use ociboot_fs::{disk_usage, fsync_dir, remove_any, syncfs};

/// What garbage collection removed.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    /// Image directories removed.
    pub images: u64,
    /// Layer records removed.
    pub layers: u64,
    /// File objects removed.
    pub objects: u64,
    /// Disk space freed, in bytes (allocated blocks; an object still hardlinked elsewhere,
    /// e.g. by a deployment, frees nothing).
    pub bytes: u64,
}

impl Store {
    /// Every object some layer record refers to.
    pub(super) fn recorded_objects(
        &self,
        only: Option<&BTreeSet<Sha256Digest>>,
    ) -> Result<HashSet<ObjectId>> {
        let layers_dir = self.root.join("layers");
        let mut live = HashSet::new();
        for e in std::fs::read_dir(&layers_dir).at("reading", &layers_dir)? {
            let e = e.at("reading", &layers_dir)?;
            let n = e.file_name().to_string_lossy().to_string();
            let Some(d) = Sha256Digest::from_hex(&n) else {
                continue;
            };
            if only.is_some_and(|o| !o.contains(&d)) {
                continue;
            }
            for op in self.read_layer(&d)?.1 {
                if let LayerOp::Put(_, n) = op {
                    if let Content::File { object, .. } = n.content {
                        live.insert(object);
                    }
                }
            }
        }
        Ok(live)
    }

    /// Delete every object no layer record refers to; returns how many.
    pub(super) fn remove_unrecorded_objects(&self) -> Result<u64> {
        let live = self.recorded_objects(None)?;
        let mut removed = 0;
        self.for_each_object(&mut |id, path, _| {
            if !live.contains(&id) {
                std::fs::remove_file(path).at("removing", path)?;
                removed += 1;
            }
            Ok(())
        })?;
        syncfs(&self.root)?;
        Ok(removed)
    }

    /// Remove references (by reference or digest: every reference to that image).
    pub fn remove(&self, what: &str) -> Result<Vec<ImageReference>> {
        self.ensure_writable()?;
        // A stored reference removes just itself; a digest removes every reference to it.
        if let Ok(r) = what.parse::<ImageReference>() {
            if self.resolve(&r)?.is_some() {
                self.remove_ref(&r)?;
                return Ok(vec![r]);
            }
        }
        let d = self.find(what)?;
        let mut removed = Vec::new();
        for r in self.refs()? {
            if r.manifest_digest == d {
                self.remove_ref(&r.reference)?;
                removed.push(r.reference);
            }
        }
        Ok(removed)
    }

    /// Remove one reference (the image stays until [`Store::prune`]).
    pub fn remove_ref(&self, r: &ImageReference) -> Result<()> {
        self.ensure_writable()?;
        let p = self.ref_path(r);
        std::fs::remove_file(&p).at("removing", &p)?;
        Ok(fsync_dir(&self.root.join("refs"))?)
    }

    /// Drop images no reference (and no `keep` root) points to, layers no image uses and
    /// objects no layer uses. Each removal only ever removes unreferenced things, in the
    /// order images → layers → objects, so a crash in between leaves a consistent store.
    pub fn prune(&self, keep: &[Sha256Digest]) -> Result<PruneReport> {
        self.ensure_writable()?;
        let mut report = PruneReport::default();
        let mut live_images: BTreeSet<Sha256Digest> = keep.iter().copied().collect();
        for r in self.refs()? {
            live_images.insert(r.manifest_digest);
        }
        let images_dir = self.root.join("images");
        let mut live_layers: BTreeSet<Sha256Digest> = BTreeSet::new();
        for e in std::fs::read_dir(&images_dir).at("reading", &images_dir)? {
            let e = e.at("reading", &images_dir)?;
            let n = e.file_name().to_string_lossy().to_string();
            match Sha256Digest::from_hex(&n) {
                Some(d) if live_images.contains(&d) => {
                    for l in self.image_record(&d)?.layers {
                        live_layers.insert(l.digest);
                    }
                }
                _ => {
                    report.bytes += disk_usage(&e.path())?;
                    // Gone from images/ in one rename, so that a reader without the lock
                    // sees the image whole or not at all; tmp/ is scratch.
                    let doomed = self.root.join("tmp").join(format!("pruned-{n}"));
                    remove_any(&doomed)?;
                    std::fs::rename(e.path(), &doomed)
                        .ctx(|| format!("moving {} to {}", e.path().display(), doomed.display()))?;
                    remove_any(&doomed)?;
                    report.images += 1;
                }
            }
        }
        fsync_dir(&images_dir)?;
        let layers_dir = self.root.join("layers");
        for e in std::fs::read_dir(&layers_dir).at("reading", &layers_dir)? {
            let e = e.at("reading", &layers_dir)?;
            let n = e.file_name().to_string_lossy().to_string();
            if !Sha256Digest::from_hex(&n).is_some_and(|d| live_layers.contains(&d)) {
                report.bytes += disk_usage(&e.path())?;
                remove_any(&e.path())?;
                report.layers += 1;
            }
        }
        fsync_dir(&layers_dir)?;
        let live_objects = self.recorded_objects(None)?;
        self.for_each_object(&mut |id, path, meta| {
            if !live_objects.contains(&id) {
                std::fs::remove_file(path).at("removing", path)?;
                report.objects += 1;
                // Count the space really freed: the last link of the file.
                if std::os::unix::fs::MetadataExt::nlink(meta) <= 1 {
                    report.bytes += std::os::unix::fs::MetadataExt::blocks(meta) * 512;
                }
            }
            Ok(())
        })?;
        syncfs(&self.root)?;
        Ok(report)
    }

    /// Call `f` on every object file; anything else under `objects/` is corruption.
    pub(super) fn for_each_object(
        &self,
        f: &mut dyn FnMut(ObjectId, &Path, &std::fs::Metadata) -> Result<()>,
    ) -> Result<()> {
        let objects = self.objects_dir();
        for sub in std::fs::read_dir(&objects).at("reading", &objects)? {
            let sub = sub.at("reading", &objects)?;
            let subname = sub.file_name().to_string_lossy().to_string();
            let sub_dir = sub.path();
            for e in std::fs::read_dir(&sub_dir).at("reading", &sub_dir)? {
                let e = e.at("reading", &sub_dir)?;
                let p = e.path();
                let name = e.file_name().to_string_lossy().to_string();
                let meta = std::fs::symlink_metadata(&p).at("stat", &p)?;
                match ObjectId::from_rel_path(&subname, &name) {
                    Some(id) => f(id, &p, &meta)?,
                    None => return Err(Error::Corrupt(format!("unexpected file {}", p.display()))),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{image, object_count, pull, store, tar};

    #[test]
    fn prune_drops_only_what_no_reference_or_keep_root_needs() {
        let dir = tempfile::tempdir().unwrap();
        let shared = tar(&[("usr/lib/os-release", b"ID=test\n")]);
        let a = image(
            dir.path(),
            "a",
            &[shared.clone(), tar(&[("usr/bin/a", b"only in a")])],
        );
        let b = image(
            dir.path(),
            "b",
            &[shared, tar(&[("usr/bin/b", b"only in b")])],
        );
        let store = store(dir.path());
        let da = pull(&store, &a).manifest_digest;
        let db = pull(&store, &b).manifest_digest;
        assert_eq!(object_count(&store), 3);

        // Nothing unreferenced yet: nothing goes.
        let r = store.prune(&[]).unwrap();
        assert_eq!((r.images, r.layers, r.objects), (0, 0, 0));

        assert_eq!(store.remove(&a.to_string()).unwrap(), vec![a.clone()]);
        // A keep root (a deployed image) survives without a reference.
        let r = store.prune(&[da]).unwrap();
        assert_eq!((r.images, r.layers, r.objects), (0, 0, 0));

        let r = store.prune(&[]).unwrap();
        assert_eq!((r.images, r.layers, r.objects), (1, 1, 1));
        assert!(r.bytes > 0);
        assert!(store.find(&da.to_string()).is_err());
        assert_eq!(object_count(&store), 2);
        // b is whole: its shared layer and objects stayed.
        assert_eq!(store.fsck(true).unwrap(), Vec::<String>::new());
        assert_eq!(store.tree(&db).unwrap().stats(), (6, 8 + 9));
    }

    #[test]
    fn removing_by_digest_removes_every_reference_to_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let layers = [tar(&[("etc/motd", b"hi\n")])];
        // The same image under two names, and another image.
        let a = image(&dir.path().join("x"), "v1", &layers);
        let b = image(&dir.path().join("y"), "v1", &layers);
        let other = image(&dir.path().join("y"), "v2", &layers);
        let store = store(dir.path());
        let d = pull(&store, &a).manifest_digest;
        assert_eq!(pull(&store, &b).manifest_digest, d);
        let d2 = pull(&store, &other).manifest_digest;
        assert_ne!(d, d2);

        // A reference removes just itself.
        assert_eq!(store.remove(&a.to_string()).unwrap(), vec![a.clone()]);
        assert_eq!(store.resolve(&b).unwrap(), Some(d));
        pull(&store, &a);
        let mut removed = store.remove(&d.hex()[..12]).unwrap();
        removed.sort();
        let mut both = vec![a.clone(), b.clone()];
        both.sort();
        assert_eq!(removed, both);
        assert_eq!(store.resolve(&a).unwrap(), None);
        assert_eq!(store.resolve(&other).unwrap(), Some(d2));
        let err = store.remove_ref(&a).unwrap_err().to_string();
        assert!(err.contains("refs/"), "{err}");
    }

    #[test]
    fn prune_stops_on_an_unexpected_file_among_objects_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let stray = store.objects_dir().join("ab/not-an-object");
        std::fs::write(&stray, b"x").unwrap();
        let err = store.prune(&[]).unwrap_err().to_string();
        assert!(err.contains(&stray.display().to_string()), "{err}");
        assert!(stray.exists());
    }
}
