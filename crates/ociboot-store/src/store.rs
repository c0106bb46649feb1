//! The store inside a sysroot: opening it (lock, layout, recovery from an interrupted writer)
//! and where each of its files lives. The operations are in the submodules: `pull` (pull),
//! `query` (refs, find, inspect, list), `gc` (remove, prune) and `fsck` (check).
//!
//! ```text
//! <sysroot>/ociboot/
//!   lock                        flock: exclusive for writers, shared for fsck and unpack
//!   store/                      0700: objects are deployments' inodes, setuid ones too
//!     dirty                     present while objects may exist that no layer record lists
//!     objects/ab/cdef…          file objects (content + owner/mode/xattrs), by ObjectId
//!     layers/<blob hex>         layer records: the layer's operations, by compressed digest
//!     images/<manifest hex>/    manifest.json config.json tree image.json
//!     refs/<escaped reference>  JSON: reference -> manifest digest
//!     tmp/                      staging; emptied whenever the exclusive lock is taken
//! ```
//!
//! Opening never modifies a store it has not locked exclusively, and a read-only [`Store`]
//! never writes: every mutating operation starts with `ensure_writable`.

use std::path::{Path, PathBuf};

use ociboot_oci::{ImageReference, Sha256Digest};

use crate::error::{Error, IoContext, Result};
use crate::lock::{self, Lock};
use crate::objects::ObjectId;
use ociboot_fs::{ensure_dir, fsync_dir, remove_any};

mod fsck;
mod gc;
mod pull;
mod query;
#[cfg(test)]
pub(crate) mod testutil;

pub use gc::PruneReport;
pub use pull::{NoProgress, PullOutcome, PullProgress};
pub use query::{ImageRecord, ImageSummary, LayerMeta, RefRecord};

/// A store inside a sysroot. Opening it for writing holds the exclusive lock until dropped;
/// [`Store::open_read`] holds the shared lock, [`Store::open_unlocked`] none.
pub struct Store {
    root: PathBuf,
    _lock: Option<Lock>,
    writable: bool,
}

/// `transport:image`, percent-escaped into one file name.
fn ref_file_name(r: &ImageReference) -> String {
    let s = format!("{}:{}", r.transport, r.image);
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Store {
    /// The store directory of a sysroot.
    pub fn path_in(sysroot: &Path) -> PathBuf {
        sysroot.join("ociboot/store")
    }

    /// Open for reading (shared lock). Creates nothing: a sysroot without a store reads as empty.
    pub fn open_read(sysroot: &Path, waiting: &dyn Fn(&str)) -> Result<Store> {
        let base = sysroot.join("ociboot");
        if !base.exists() {
            return Err(Error::NotFound(format!(
                "no ociboot store in {} (nothing has been pulled yet)",
                sysroot.display()
            )));
        }
        let l = lock::acquire(&base.join("lock"), "store", false, waiting)?;
        Ok(Store {
            root: Self::path_in(sysroot),
            _lock: Some(l),
            writable: false,
        })
    }

    /// Open for reading without any lock, so that a writer (a pull waiting on a slow registry)
    /// never makes the reader wait. What it reads is committed by atomic renames (references,
    /// layer records, image directories), so it sees each complete or not at all; an image
    /// removed meanwhile reads as not found. For listing and inspecting; `fsck`, which wants
    /// a store that does not change under it, uses [`Store::open_read`].
    pub fn open_unlocked(sysroot: &Path) -> Result<Store> {
        if !sysroot.join("ociboot").exists() {
            return Err(Error::NotFound(format!(
                "no ociboot store in {} (nothing has been pulled yet)",
                sysroot.display()
            )));
        }
        Ok(Store {
            root: Self::path_in(sysroot),
            _lock: None,
            writable: false,
        })
    }

    /// `<sysroot>/ociboot/lock`, its directory made if needed; the sysroot must exist.
    fn lock_file(sysroot: &Path) -> Result<PathBuf> {
        if !sysroot.is_dir() {
            return Err(Error::NotFound(format!(
                "sysroot {} is not a directory",
                sysroot.display()
            )));
        }
        let base = sysroot.join("ociboot");
        ensure_dir(&base)?;
        Ok(base.join("lock"))
    }

    /// Open for writing: creates the layout, takes the exclusive lock, clears stale staging.
    pub fn open_write(sysroot: &Path, waiting: &dyn Fn(&str)) -> Result<Store> {
        let l = lock::acquire(&Self::lock_file(sysroot)?, "store", true, waiting)?;
        Self::open_locked(sysroot, l)
    }

    /// Open for writing unless another writer holds the lock: then [`Error::Busy`] names it,
    /// and the store is left as it is. Readers holding it are waited for (`waiting` is told).
    pub fn open_write_unless_written(sysroot: &Path, waiting: &dyn Fn(&str)) -> Result<Store> {
        let l = lock::acquire_unless_written(&Self::lock_file(sysroot)?, "store", waiting)?;
        Self::open_locked(sysroot, l)
    }

    /// Open for writing if nobody holds the lock; `None` if someone does (for work that can
    /// be left to the next writer, like the collection after `finalize-staged`).
    pub fn try_open_write(sysroot: &Path) -> Result<Option<Store>> {
        let base = sysroot.join("ociboot");
        ensure_dir(&base)?;
        match lock::try_acquire(&base.join("lock"), "store")? {
            Some(l) => Ok(Some(Self::open_locked(sysroot, l)?)),
            None => Ok(None),
        }
    }

    /// The rest of opening for writing, under the exclusive lock `l`.
    fn open_locked(sysroot: &Path, l: Lock) -> Result<Store> {
        let root = Self::path_in(sysroot);
        // Objects are the very inodes of deployments (setuid ones too): only root may reach
        // them through the store. An older, world-readable store is closed here.
        ociboot_fs::ensure_private_dir(&root)?;
        let fresh = !root.join("objects").exists();
        for d in ["objects", "layers", "images", "refs", "tmp"] {
            ensure_dir(&root.join(d))?;
        }
        if fresh || !root.join("objects/ff").exists() {
            for i in 0..256 {
                ensure_dir(&root.join(format!("objects/{i:02x}")))?;
            }
            fsync_dir(&root.join("objects"))?;
        }
        // Anything in tmp/ belongs to a process that died while holding this lock: its content
        // may not even be on disk. Nothing refers to it.
        let tmp = root.join("tmp");
        for e in std::fs::read_dir(&tmp).at("reading", &tmp)? {
            let e = e.at("reading", &tmp)?;
            remove_any(&e.path())?;
        }
        let store = Store {
            root,
            _lock: Some(l),
            writable: true,
        };
        if store.dirty_marker().exists() {
            // A writer died between writing objects and recording them: some objects may be
            // torn. Only those some layer record refers to were synced; drop the others.
            let removed = store.remove_unrecorded_objects()?;
            tracing::info!(
                "recovered from an interrupted pull: removed {removed} unrecorded objects"
            );
            std::fs::remove_file(store.dirty_marker())
                .ctx(|| "removing the dirty marker".to_string())?;
            fsync_dir(&store.root)?;
        }
        Ok(store)
    }

    fn dirty_marker(&self) -> PathBuf {
        self.root.join("dirty")
    }

    /// The store directory, `<sysroot>/ociboot/store`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of file objects, with its 256 fan-out subdirectories.
    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// The path of an object's file.
    pub fn object_path(&self, id: &ObjectId) -> PathBuf {
        self.root.join("objects").join(id.rel_path())
    }

    fn layer_path(&self, d: &Sha256Digest) -> PathBuf {
        self.root.join("layers").join(d.hex())
    }

    fn image_dir(&self, d: &Sha256Digest) -> PathBuf {
        self.root.join("images").join(d.hex())
    }

    fn ref_path(&self, r: &ImageReference) -> PathBuf {
        self.root.join("refs").join(ref_file_name(r))
    }

    fn ensure_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::Usage("store opened read-only".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::testutil::one_image;
    use super::*;

    fn no_wait(holder: &str) {
        panic!("unexpected wait for the lock held by {holder}");
    }

    #[test]
    fn reading_a_sysroot_without_a_store_is_not_found_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open_read(dir.path(), &no_wait).err().unwrap();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        assert!(!dir.path().join("ociboot").exists());
        let err = Store::open_write(&dir.path().join("missing"), &no_wait)
            .err()
            .unwrap();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
    }

    #[test]
    fn a_writer_waits_for_the_writer_before_it_and_is_told_who_that_is() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open_write(dir.path(), &no_wait).unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let sysroot = dir.path().to_path_buf();
        let second = std::thread::spawn(move || {
            let waiting_tx = tx.clone();
            let s = Store::open_write(&sysroot, &move |h| {
                waiting_tx.send(format!("waiting: {h}")).unwrap()
            });
            tx.send("opened".into()).unwrap();
            s.map(|s| s.writable)
        });
        let holder = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            holder.starts_with(&format!(
                "waiting: the store lock, held by pid {} (",
                std::process::id()
            )),
            "{holder}"
        );
        // Still blocked while the first writer holds the lock.
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(first);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "opened");
        assert!(second.join().unwrap().unwrap());
    }

    #[test]
    fn readers_share_the_lock_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open_write(dir.path(), &no_wait).unwrap());
        let a = Store::open_read(dir.path(), &no_wait).unwrap();
        let b = Store::open_read(dir.path(), &no_wait).unwrap();
        for r in [a.prune(&[]).map(|_| ()), b.remove("oci:/x:y").map(|_| ())] {
            assert!(
                matches!(&r, Err(Error::Usage(m)) if m.contains("read-only")),
                "{r:?}"
            );
        }
    }

    #[test]
    fn opening_for_writing_lays_out_the_store_and_empties_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let root = Store::path_in(dir.path());
        drop(Store::open_write(dir.path(), &no_wait).unwrap());
        for d in [
            "objects/00",
            "objects/ff",
            "layers",
            "images",
            "refs",
            "tmp",
        ] {
            assert!(root.join(d).is_dir(), "{d}");
        }
        std::fs::create_dir(root.join("tmp/image-leftover")).unwrap();
        std::fs::write(root.join("tmp/image-leftover/tree"), b"torn").unwrap();
        std::fs::write(root.join("tmp/object-1-1"), b"torn").unwrap();
        let store = Store::open_write(dir.path(), &no_wait).unwrap();
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        assert_eq!(store.root(), root);
    }

    #[test]
    fn an_interrupted_pull_leaves_only_recorded_objects_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _) = one_image(dir.path(), "a", &[("etc/os-release", b"ID=test\n")]);
        let recorded: Vec<ObjectId> = store.recorded_objects(None).unwrap().into_iter().collect();
        assert_eq!(recorded.len(), 1);
        // What a writer killed between writing an object and recording its layer leaves.
        let torn = ObjectId([0xab; 32]);
        std::fs::write(store.object_path(&torn), b"half").unwrap();
        std::fs::write(store.dirty_marker(), b"").unwrap();
        drop(store);

        let store = Store::open_write(&dir.path().join("sysroot"), &no_wait).unwrap();
        assert!(!store.object_path(&torn).exists());
        assert!(store.object_path(&recorded[0]).exists());
        assert!(!store.dirty_marker().exists());
        assert_eq!(store.fsck(true).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn reference_file_names_are_one_path_component_and_distinct() {
        let a: ImageReference = "oci:/srv/images/a:v1".parse().unwrap();
        let b: ImageReference = "oci:/srv/images%2Fa:v1".parse().unwrap();
        let (na, nb) = (ref_file_name(&a), ref_file_name(&b));
        assert!(!na.contains('/') && !nb.contains('/'), "{na} {nb}");
        assert_ne!(na, nb);
    }
}
