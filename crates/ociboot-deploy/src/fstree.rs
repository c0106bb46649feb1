//! Reading and copying real directory trees (for /etc and /var), with owners, modes, xattrs
//! and symlinks kept as they are and never followed.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Ctx, Error, Result};

/// What a path is, for comparing two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file, compared by content.
    File {
        /// SHA-256 of the content.
        sha256: [u8; 32],
        /// Size in bytes.
        size: u64,
    },
    /// A symlink and its target as written.
    Symlink(PathBuf),
    /// fifo, socket, device: compared by type only (the file-type bits of the mode).
    Special(u32),
}

/// One path of a scanned tree: what it is, its permission bits and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEntry {
    /// What the path is (and, for a file, its content digest).
    pub kind: Kind,
    /// Permission bits, setuid/setgid/sticky included (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
}

impl FsEntry {
    /// Whether the path is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

fn hash_file(p: &Path) -> Result<([u8; 32], u64)> {
    let mut f = std::fs::File::open(p).at("reading", p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf).at("reading", p)?;
        if r == 0 {
            break;
        }
        h.update(&buf[..r]);
        n += r as u64;
    }
    Ok((h.finalize().into(), n))
}

/// Describe one path (not following a final symlink).
pub fn stat(p: &Path) -> Result<Option<FsEntry>> {
    let m = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ociboot_fs::IoError::at("stat", p, e).into()),
    };
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink(std::fs::read_link(p).at("readlink", p)?)
    } else if ft.is_file() {
        let (sha256, size) = hash_file(p)?;
        Kind::File { sha256, size }
    } else {
        Kind::Special(m.mode() & 0o170000)
    };
    Ok(Some(FsEntry {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
    }))
}

/// Every path below `root` (relative, sorted so parents come first), without following symlinks.
pub fn scan(root: &Path) -> Result<BTreeMap<PathBuf, FsEntry>> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return Ok(out);
    }
    fn rec(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, FsEntry>) -> Result<()> {
        let dir = root.join(rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .at("reading", &dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .at("reading", &dir)?;
        names.sort();
        for n in names {
            let r = rel.join(&n);
            if let Some(e) = stat(&root.join(&r))? {
                let is_dir = e.is_dir();
                out.insert(r.clone(), e);
                if is_dir {
                    rec(root, &r, out)?;
                }
            }
        }
        Ok(())
    }
    rec(root, Path::new(""), &mut out)?;
    Ok(out)
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Invalid(format!("{}: NUL in path", p.display())))
}

/// Copy extended attributes from one path to another (neither followed if a symlink).
pub fn copy_xattrs(src: &Path, dst: &Path) -> Result<()> {
    for (name, value) in ociboot_fs::read_xattrs(src)? {
        let cname = CString::new(name).map_err(|_| Error::Invalid("xattr name".into()))?;
        rustix::fs::lsetxattr(
            dst,
            cname.as_c_str(),
            &value,
            rustix::fs::XattrFlags::empty(),
        )
        .ctx(|| {
            format!(
                "setting xattr {} on {}",
                cname.to_string_lossy(),
                dst.display()
            )
        })?;
    }
    Ok(())
}

/// Give `dst` the owner, mode, xattrs and times of `src` (symlinks: owner, xattrs, times).
fn copy_meta(src: &Path, dst: &Path, m: &std::fs::Metadata) -> Result<()> {
    let is_link = m.file_type().is_symlink();
    let c = cstr(dst)?;
    rustix::fs::chownat(
        rustix::fs::CWD,
        c.as_c_str(),
        Some(rustix::fs::Uid::from_raw(m.uid())),
        Some(rustix::fs::Gid::from_raw(m.gid())),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .at("chown", dst)?;
    if !is_link {
        rustix::fs::chmod(
            c.as_c_str(),
            rustix::fs::Mode::from_raw_mode(m.mode() & 0o7777),
        )
        .at("chmod", dst)?;
    }
    copy_xattrs(src, dst)?;
    let t = |s: i64, ns: i64| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: t(m.atime(), m.atime_nsec()),
        last_modification: t(m.mtime(), m.mtime_nsec()),
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        c.as_c_str(),
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .at("setting times of", dst)?;
    Ok(())
}

/// Copy `src` (file, symlink, special file or whole directory) to `dst`, which must not exist,
/// keeping everything but the inode. Never follows a symlink inside `src`.
pub fn copy_path(src: &Path, dst: &Path) -> Result<()> {
    let m = std::fs::symlink_metadata(src).at("stat", src)?;
    let ft = m.file_type();
    if ft.is_dir() {
        std::fs::create_dir(dst).at("creating", dst)?;
        let mut names: Vec<_> = std::fs::read_dir(src)
            .at("reading", src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .at("reading", src)?;
        names.sort();
        for n in names {
            copy_path(&src.join(&n), &dst.join(&n))?;
        }
    } else if ft.is_symlink() {
        let t = std::fs::read_link(src).at("readlink", src)?;
        std::os::unix::fs::symlink(&t, dst).at("creating symlink", dst)?;
    } else if ft.is_file() {
        let mut i = std::fs::File::open(src).at("reading", src)?;
        let mut o = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dst)
            .at("creating", dst)?;
        std::io::copy(&mut i, &mut o)
            .ctx(|| format!("copying {} to {}", src.display(), dst.display()))?;
    } else {
        let ftype = if ft.is_fifo() {
            rustix::fs::FileType::Fifo
        } else if ft.is_char_device() {
            rustix::fs::FileType::CharacterDevice
        } else if ft.is_block_device() {
            rustix::fs::FileType::BlockDevice
        } else {
            // sockets are not copied
            return Ok(());
        };
        let c = cstr(dst)?;
        rustix::fs::mknodat(
            rustix::fs::CWD,
            c.as_c_str(),
            ftype,
            rustix::fs::Mode::from_raw_mode(0o600),
            m.rdev(),
        )
        .at("creating", dst)?;
    }
    copy_meta(src, dst, &m)
}

/// Set a directory's owner and mode to those of another.
pub fn copy_dir_meta(src: &Path, dst: &Path) -> Result<()> {
    let m = std::fs::symlink_metadata(src).at("stat", src)?;
    copy_meta(src, dst, &m)
}

/// A relative path with only normal components.
pub fn is_plain_relative(p: &Path) -> bool {
    p.components().all(|c| matches!(c, Component::Normal(_)))
}
