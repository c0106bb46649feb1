//! File objects: a regular file's content together with its owner, mode and xattrs, stored
//! once under the hash of both, so that a deployment can hardlink it as it is.
//!
//! New objects are written into a staging directory, flushed with one `syncfs`, and only
//! then renamed into `objects/`, so an object under its final name is always complete.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
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
    pub fn hex(&self) -> String {
        ociboot_oci::digest::hex(&self.0)
    }

    /// `ab/cdef…` below `objects/`.
    pub fn rel_path(&self) -> String {
        let h = self.hex();
        format!("{}/{}", &h[..2], &h[2..])
    }

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
const INLINE_MAX: u64 = 256 << 10;

/// Counters of one import.
#[derive(Debug, Default, Clone, Copy)]
pub struct ImportStats {
    pub files: u64,
    pub new_objects: u64,
    pub new_bytes: u64,
    pub reused_objects: u64,
}

/// Objects being written for one layer, not yet visible in `objects/`.
pub struct Staging {
    dir: PathBuf,
    dir_fd: OwnedFd,
    objects: PathBuf,
    objects_fd: OwnedFd,
    staged: HashMap<ObjectId, String>,
    counter: u64,
    buf: Vec<u8>,
    pub stats: ImportStats,
}

impl Staging {
    /// A fresh staging directory `dir` (must not exist) for objects going to `objects`.
    pub fn new(dir: PathBuf, objects: &Path) -> Result<Self> {
        std::fs::create_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let dir_fd = rustix::fs::open(
            &dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening {}", dir.display()))?;
        let objects_fd = rustix::fs::open(
            objects,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening {}", objects.display()))?;
        Ok(Staging {
            dir,
            dir_fd,
            objects: objects.to_path_buf(),
            objects_fd,
            staged: HashMap::new(),
            counter: 0,
            buf: Vec::new(),
            stats: ImportStats::default(),
        })
    }

    fn exists(&self, id: &ObjectId) -> bool {
        self.staged.contains_key(id)
            || rustix::fs::statat(&self.objects_fd, id.rel_path(), AtFlags::SYMLINK_NOFOLLOW)
                .is_ok()
    }

    fn create_tmp(&mut self) -> Result<(String, File)> {
        self.counter += 1;
        let name = format!("{}", self.counter);
        let fd = rustix::fs::openat(
            &self.dir_fd,
            &name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .ctx(|| format!("creating {}/{name}", self.dir.display()))?;
        Ok((name, File::from(fd)))
    }

    /// Store a file of `size` bytes read from `r` with metadata `meta`; `what` names it for
    /// errors. Returns its object id.
    pub fn add_file(
        &mut self,
        r: &mut dyn Read,
        size: u64,
        meta: &Meta,
        what: &str,
    ) -> Result<ObjectId> {
        self.stats.files += 1;
        if size <= INLINE_MAX {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            let res = (|| {
                r.take(size)
                    .read_to_end(&mut buf)
                    .map_err(|e| Error::stream(what, e))?;
                if buf.len() as u64 != size {
                    return Err(Error::Layer(format!(
                        "{what}: truncated file content ({} of {size} bytes)",
                        buf.len()
                    )));
                }
                let content: [u8; 32] = Sha256::digest(&buf).into();
                let id = ObjectId::compute(&content, meta);
                if self.exists(&id) {
                    self.stats.reused_objects += 1;
                    return Ok(id);
                }
                let (name, mut f) = self.create_tmp()?;
                f.write_all(&buf)
                    .ctx(|| format!("writing object for {what}"))?;
                self.finish_object(id, name, f, meta, size, what)?;
                Ok(id)
            })();
            self.buf = buf;
            return res;
        }
        let (name, mut f) = self.create_tmp()?;
        let mut hasher = Sha256::new();
        let mut copied = 0u64;
        let mut chunk = vec![0u8; 128 << 10];
        let mut limited = r.take(size);
        loop {
            let n = limited
                .read(&mut chunk)
                .map_err(|e| Error::stream(what, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&chunk[..n]);
            f.write_all(&chunk[..n])
                .ctx(|| format!("writing object for {what}"))?;
            copied += n as u64;
        }
        if copied != size {
            return Err(Error::Layer(format!(
                "{what}: truncated file content ({copied} of {size} bytes)"
            )));
        }
        let content: [u8; 32] = hasher.finalize().into();
        let id = ObjectId::compute(&content, meta);
        if self.exists(&id) {
            drop(f);
            rustix::fs::unlinkat(&self.dir_fd, &name, AtFlags::empty())
                .ctx(|| format!("removing staged {name}"))?;
            self.stats.reused_objects += 1;
            return Ok(id);
        }
        self.finish_object(id, name, f, meta, size, what)?;
        Ok(id)
    }

    fn finish_object(
        &mut self,
        id: ObjectId,
        name: String,
        f: File,
        meta: &Meta,
        size: u64,
        what: &str,
    ) -> Result<()> {
        apply_meta_fd(&f, meta).map_err(|e| match e {
            Error::Io { context, source } => Error::Io {
                context: format!("{what}: {context}"),
                source,
            },
            e => e,
        })?;
        self.staged.insert(id, name);
        self.stats.new_objects += 1;
        self.stats.new_bytes += size;
        Ok(())
    }

    /// Make the staged objects durable, then visible under `objects/`. The caller records the
    /// layer only after this returns.
    pub fn commit(self, after_sync: impl FnOnce()) -> Result<ImportStats> {
        rustix::fs::syncfs(&self.dir_fd).ctx(|| format!("syncfs {}", self.dir.display()))?;
        after_sync();
        for (id, name) in &self.staged {
            let rel = id.rel_path();
            match rustix::fs::renameat(&self.dir_fd, name.as_str(), &self.objects_fd, rel.as_str())
            {
                Ok(()) => {}
                Err(rustix::io::Errno::NOENT) => {
                    // the fan-out directory is missing: create it and retry once
                    let sub = &rel[..2];
                    match rustix::fs::mkdirat(&self.objects_fd, sub, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => {
                            return Err(Error::io(
                                format!("creating {}/{sub}", self.objects.display()),
                                e.into(),
                            ))
                        }
                    }
                    rustix::fs::renameat(
                        &self.dir_fd,
                        name.as_str(),
                        &self.objects_fd,
                        rel.as_str(),
                    )
                    .ctx(|| {
                        format!("moving object {} into {}", id.hex(), self.objects.display())
                    })?;
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("moving object {} into {}", id.hex(), self.objects.display()),
                        e.into(),
                    ))
                }
            }
        }
        // Make the renames durable before anything refers to these objects.
        rustix::fs::syncfs(&self.objects_fd)
            .ctx(|| format!("syncfs {}", self.objects.display()))?;
        let stats = self.stats;
        let _ = std::fs::remove_dir(&self.dir);
        Ok(stats)
    }

    /// Throw the staged objects away.
    pub fn abort(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
    for (k, v) in &meta.xattrs {
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

impl Staging {
    /// The objects this staging area will add.
    pub fn staged_ids(&self) -> Vec<ObjectId> {
        self.staged.keys().copied().collect()
    }
}

/// Read an object's extended attributes, sorted.
pub fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::io(
                    format!("listing xattrs of {}", path.display()),
                    e.into(),
                ))
            }
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|x| !x.is_empty()) {
        let cname = CString::new(name).map_err(|_| Error::Corrupt("xattr name".into()))?;
        let mut val = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(path, cname.as_c_str(), &mut val) {
                Ok(l) => break l,
                Err(rustix::io::Errno::RANGE) => val.resize(val.len() * 4, 0),
                Err(e) => {
                    return Err(Error::io(
                        format!("reading xattr of {}", path.display()),
                        e.into(),
                    ))
                }
            }
        };
        val.truncate(len);
        out.push((name.to_vec(), val));
    }
    out.sort();
    Ok(out)
}

/// Recompute the id of an object file from its content and metadata.
pub fn verify_object(path: &Path) -> Result<ObjectId> {
    use std::os::unix::fs::MetadataExt;
    let mut f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let md = f.metadata().ctx(|| format!("stat {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 128 << 10];
    loop {
        let n = f
            .read(&mut buf)
            .ctx(|| format!("reading {}", path.display()))?;
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
        xattrs: read_xattrs(path)?,
    };
    Ok(ObjectId::compute(&h.finalize().into(), &meta))
}
