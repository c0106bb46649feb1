//! File objects: a regular file's content together with its owner, mode and xattrs, stored
//! once under the hash of both, so that a deployment can hardlink it as it is.
//!
//! Small files (at most [`INLINE_MAX`]) are hashed in memory and created with `O_EXCL` directly
//! under their final name; large ones are written into `tmp/` while hashed and renamed into
//! `objects/` once their id is known. Either way an object may sit under its final name before
//! it is durable: [`Staging::commit`] makes it so with one `syncfs`, and until a layer record
//! refers to it the store's `dirty` marker makes the next writer delete it. An object file is
//! never modified once named: it must not be written to through a deployment's hardlink.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, Mode, OFlags};
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::space::SpaceGuard;
use crate::tree::Meta;

/// The name of a file object: SHA-256 over its content digest and metadata.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 32]);

impl std::fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

impl ObjectId {
    /// The id as 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        ociboot_oci::digest::hex(&self.0)
    }

    /// `ab/cdef…` below `objects/`.
    pub fn rel_path(&self) -> String {
        let h = self.hex();
        format!("{}/{}", &h[..2], &h[2..])
    }

    /// The id of the object file `name` in fan-out directory `dir` (the inverse of
    /// [`ObjectId::rel_path`]); `None` if the two do not make 64 hex digits.
    pub fn from_rel_path(dir: &str, name: &str) -> Option<ObjectId> {
        ociboot_oci::Sha256Digest::from_hex(&format!("{dir}{name}")).map(|d| ObjectId(d.0))
    }

    /// The id of a file with this content digest and metadata (mtime excluded).
    pub fn compute(content: &[u8; 32], meta: &Meta) -> ObjectId {
        let mut h = Sha256::new();
        h.update(b"ociboot-object-v1\0");
        h.update(content);
        h.update(meta.mode.to_le_bytes());
        h.update(meta.uid.to_le_bytes());
        h.update(meta.gid.to_le_bytes());
        h.update((meta.xattrs.len() as u32).to_le_bytes());
        for (k, v) in &meta.xattrs {
            h.update((k.len() as u32).to_le_bytes());
            h.update(k);
            h.update((v.len() as u32).to_le_bytes());
            h.update(v);
        }
        ObjectId(h.finalize().into())
    }
}

/// Files at most this large are hashed in memory before anything is written, so content
/// already in the store costs no write at all.
pub const INLINE_MAX: u64 = 256 << 10;

/// Counters of one import.
#[derive(Debug, Default, Clone, Copy)]
pub struct ImportStats {
    /// Regular files stored, new or not.
    pub files: u64,
    /// Objects written because the store did not have them yet.
    pub new_objects: u64,
    /// Content bytes of the new objects.
    pub new_bytes: u64,
    /// Files whose object the store (or an earlier file of the same import) already had.
    pub reused_objects: u64,
}

/// Writes new objects for one layer.
///
/// Small objects are created directly under their final name (their id is known before the
/// first byte is written); large ones are streamed into `tmp/` and renamed once hashed.
/// Until [`Staging::commit`] has run `syncfs`, an object may not be durable, and nothing refers
/// to it: the store's `dirty` marker (see `Store::open_write`) makes the next writer delete
/// every object no layer record refers to, so a torn object can never be taken for a good one.
pub struct Staging {
    tmp: PathBuf,
    tmp_fd: OwnedFd,
    objects: PathBuf,
    objects_fd: OwnedFd,
    new: HashSet<ObjectId>,
    counter: u64,
    umask: u32,
    euid: u32,
    egid: u32,
    unsynced: u64,
    syncer: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
    space: Option<Arc<SpaceGuard>>,
    /// Counters of what this staging has stored so far.
    pub stats: ImportStats,
}

/// Start flushing written data in the background every so many bytes, so that the commit's
/// `syncfs` finds little left to do.
const BACKGROUND_SYNC_BYTES: u64 = 32 << 20;

/// A large object being written (see [`Staging::begin_large`]).
pub struct LargeObject {
    name: String,
    file: File,
    hasher: Sha256,
    written: u64,
    space: Option<Arc<SpaceGuard>>,
}

impl LargeObject {
    /// Append `data` to the object, hashing it; `what` names the file for errors.
    pub fn write(&mut self, data: &[u8], what: &str) -> Result<()> {
        if let Some(g) = &self.space {
            g.charge(data.len() as u64)?;
        }
        self.hasher.update(data);
        self.file
            .write_all(data)
            .ctx(|| format!("writing object for {what}"))?;
        self.written += data.len() as u64;
        Ok(())
    }
}

fn open_dir(p: &Path) -> Result<OwnedFd> {
    Ok(rustix::fs::open(
        p,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at("opening", p)?)
}

impl Staging {
    /// Objects go to `objects` (with its 256 fan-out directories), temporary files to `tmp`.
    pub fn new(tmp: &Path, objects: &Path) -> Result<Self> {
        let tmp_fd = open_dir(tmp)?;
        let objects_fd = open_dir(objects)?;
        let sync_fd = open_dir(objects)?;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            for () in rx {
                let _ = rustix::fs::syncfs(&sync_fd);
            }
        });
        Ok(Staging {
            tmp: tmp.to_path_buf(),
            tmp_fd,
            objects: objects.to_path_buf(),
            objects_fd,
            new: HashSet::new(),
            counter: 0,
            umask: ociboot_fs::current_umask(),
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            unsynced: 0,
            syncer: Some((tx, handle)),
            space: None,
            stats: ImportStats::default(),
        })
    }

    /// Check the free space with `guard` before every write.
    pub fn watch_space(&mut self, guard: SpaceGuard) {
        self.space = Some(Arc::new(guard));
    }

    fn exists(&self, id: &ObjectId) -> bool {
        self.new.contains(id)
            || rustix::fs::statat(&self.objects_fd, id.rel_path(), AtFlags::SYMLINK_NOFOLLOW)
                .is_ok()
    }

    fn written(&mut self, n: u64) {
        self.unsynced += n;
        if self.unsynced >= BACKGROUND_SYNC_BYTES {
            self.unsynced = 0;
            if let Some((tx, _)) = &self.syncer {
                let _ = tx.send(());
            }
        }
    }

    /// Store a small file whose whole content is `data`. Content already in the store costs
    /// no write at all.
    /// `digest` is the content's SHA-256 if the caller has it already.
    pub fn add_bytes(
        &mut self,
        data: &[u8],
        digest: Option<[u8; 32]>,
        meta: &Meta,
        what: &str,
    ) -> Result<ObjectId> {
        self.stats.files += 1;
        let content: [u8; 32] = digest.unwrap_or_else(|| Sha256::digest(data).into());
        let id = ObjectId::compute(&content, meta);
        if self.new.contains(&id) {
            self.stats.reused_objects += 1;
            return Ok(id);
        }
        let rel = id.rel_path();
        // O_EXCL doubles as the existence check: one system call instead of two.
        let fd = match rustix::fs::openat(
            &self.objects_fd,
            rel.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(meta.mode & 0o777),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::EXIST) => {
                self.stats.reused_objects += 1;
                return Ok(id);
            }
            Err(e) => {
                return Err(Error::io(
                    format!("{what}: creating object {}/{rel}", self.objects.display()),
                    e.into(),
                ))
            }
        };
        // From here on the object is ours to remove if anything fails.
        self.new.insert(id);
        if let Some(g) = &self.space {
            g.charge(data.len() as u64)?;
        }
        let mut f = File::from(fd);
        f.write_all(data)
            .ctx(|| format!("{what}: writing object {rel}"))?;
        self.finish_meta(&f, meta, what)?;
        self.stats.new_objects += 1;
        self.stats.new_bytes += data.len() as u64;
        self.written(data.len() as u64);
        Ok(id)
    }

    /// Start storing a large file; feed it with [`LargeObject::write`].
    pub fn begin_large(&mut self, meta: &Meta) -> Result<LargeObject> {
        self.stats.files += 1;
        self.counter += 1;
        let name = format!("object-{}-{}", std::process::id(), self.counter);
        let fd = rustix::fs::openat(
            &self.tmp_fd,
            name.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(meta.mode & 0o777),
        )
        .ctx(|| format!("creating {}/{name}", self.tmp.display()))?;
        Ok(LargeObject {
            name,
            file: File::from(fd),
            hasher: Sha256::new(),
            written: 0,
            space: self.space.clone(),
        })
    }

    /// Finish a large file: name it by its hash, or drop it if the store has it already.
    pub fn finish_large(
        &mut self,
        o: LargeObject,
        meta: &Meta,
        size: u64,
        what: &str,
    ) -> Result<ObjectId> {
        let discard = |s: &Self, name: &str| {
            let _ = rustix::fs::unlinkat(&s.tmp_fd, name, AtFlags::empty());
        };
        if o.written != size {
            discard(self, &o.name);
            return Err(Error::Layer(format!(
                "{what}: truncated file content ({} of {size} bytes)",
                o.written
            )));
        }
        let content: [u8; 32] = o.hasher.finalize().into();
        let id = ObjectId::compute(&content, meta);
        if self.exists(&id) {
            drop(o.file);
            discard(self, &o.name);
            self.stats.reused_objects += 1;
            return Ok(id);
        }
        if let Err(e) = self.finish_meta(&o.file, meta, what) {
            discard(self, &o.name);
            return Err(e);
        }
        drop(o.file);
        let rel = id.rel_path();
        rustix::fs::renameat(
            &self.tmp_fd,
            o.name.as_str(),
            &self.objects_fd,
            rel.as_str(),
        )
        .ctx(|| {
            format!(
                "{what}: moving object into {}/{rel}",
                self.objects.display()
            )
        })?;
        self.new.insert(id);
        self.stats.new_objects += 1;
        self.stats.new_bytes += size;
        self.written(size);
        Ok(id)
    }

    /// Drop a large file that will not be finished: its temporary file is removed.
    pub fn discard_large(&self, o: LargeObject) {
        drop(o.file);
        let _ = rustix::fs::unlinkat(&self.tmp_fd, o.name.as_str(), AtFlags::empty());
    }

    fn finish_meta(&self, f: &File, meta: &Meta, what: &str) -> Result<()> {
        apply_meta_created(f, meta, self.umask, self.euid, self.egid).map_err(|e| e.annotate(what))
    }

    /// The objects this import added.
    pub fn new_ids(&self) -> Vec<ObjectId> {
        self.new.iter().copied().collect()
    }

    fn stop_syncer(&mut self) {
        if let Some((tx, handle)) = self.syncer.take() {
            drop(tx);
            let _ = handle.join();
        }
    }

    /// Make the new objects durable. The caller records the layer only after this returns.
    pub fn commit(mut self) -> Result<ImportStats> {
        self.stop_syncer();
        rustix::fs::syncfs(&self.objects_fd).at("syncfs", &self.objects)?;
        Ok(self.stats)
    }

    /// Remove the objects this import added.
    pub fn abort(mut self) {
        self.stop_syncer();
        for id in &self.new {
            let _ = rustix::fs::unlinkat(&self.objects_fd, id.rel_path(), AtFlags::empty());
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.stop_syncer();
    }
}

/// Like [`apply_meta_fd`] for a file this process just created with `meta.mode & 0o777`: skips
/// the calls that would change nothing.
fn apply_meta_created(f: &impl AsFd, meta: &Meta, umask: u32, euid: u32, egid: u32) -> Result<()> {
    let chown = meta.uid != euid || meta.gid != egid;
    if chown {
        rustix::fs::fchown(
            f,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
        )
        .ctx(|| format!("chown to {}:{}", meta.uid, meta.gid))?;
    }
    if chown || meta.mode & (0o7000 | umask) != 0 {
        rustix::fs::fchmod(f, Mode::from_raw_mode(meta.mode))
            .ctx(|| format!("chmod {:o}", meta.mode))?;
    }
    set_xattrs_fd(f, &meta.xattrs)
}

pub(crate) fn set_xattrs_fd(f: &impl AsFd, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    for (k, v) in xattrs {
        let name = CString::new(k.clone()).map_err(|_| {
            Error::Layer(format!(
                "xattr name {:?} contains NUL",
                String::from_utf8_lossy(k)
            ))
        })?;
        rustix::fs::fsetxattr(f, name.as_c_str(), v, rustix::fs::XattrFlags::empty())
            .ctx(|| format!("setting xattr {}", String::from_utf8_lossy(k)))?;
    }
    Ok(())
}

/// Set owner, permission bits and xattrs on an open file, in the order that keeps setuid
/// bits and file capabilities (chown clears both).
pub fn apply_meta_fd(f: &impl AsFd, meta: &Meta) -> Result<()> {
    rustix::fs::fchown(
        f,
        Some(rustix::fs::Uid::from_raw(meta.uid)),
        Some(rustix::fs::Gid::from_raw(meta.gid)),
    )
    .ctx(|| format!("chown to {}:{}", meta.uid, meta.gid))?;
    rustix::fs::fchmod(f, Mode::from_raw_mode(meta.mode))
        .ctx(|| format!("chmod {:o}", meta.mode))?;
    set_xattrs_fd(f, &meta.xattrs)
}

/// Recompute the id of an object file from its content and metadata.
pub fn verify_object(path: &Path) -> Result<ObjectId> {
    use std::os::unix::fs::MetadataExt;
    let mut f = File::open(path).at("opening", path)?;
    let md = f.metadata().at("stat", path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 128 << 10];
    loop {
        let n = f.read(&mut buf).at("reading", path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let meta = Meta {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: 0,
        xattrs: ociboot_fs::read_xattrs(path)?,
    };
    Ok(ObjectId::compute(&h.finalize().into(), &meta))
}
