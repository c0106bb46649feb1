//! Reading and copying real directory trees (/etc and /var), with owners, modes, xattrs and
//! symlinks kept as they are.
//!
//! Every operation goes through a [`Root`] (`openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`, the last component acted on with the `*at` call that does not follow
//! it): a symlink is read and re-created, never followed, and nothing outside the tree a
//! function was given is read or written, whatever symlinks an image planted in it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use ociboot_fs::beneath::{Root, MAX_DEPTH};
use rustix::fs::FileType;
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

/// A scanned tree: every path (relative), sorted so that parents come first.
pub type Scan = BTreeMap<PathBuf, FsEntry>;

fn hash_file(root: &Root, rel: &Path) -> Result<([u8; 32], u64)> {
    let mut f = root.open_regular(rel)?;
    let p = root.show(rel);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf).at("reading", &p)?;
        if r == 0 {
            break;
        }
        h.update(&buf[..r]);
        n += r as u64;
    }
    Ok((h.finalize().into(), n))
}

/// Describe `rel` beneath `root`, not following it. `None` when nothing is there, also when a
/// symlink or a non-directory stands on the way (the path leads nowhere inside the tree).
pub fn stat_in(root: &Root, rel: &Path) -> Result<Option<FsEntry>> {
    let Some(st) = root.lstat(rel)? else {
        return Ok(None);
    };
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink(root.read_link(rel)?),
        FileType::RegularFile => {
            let (sha256, size) = hash_file(root, rel)?;
            Kind::File { sha256, size }
        }
        _ => Kind::Special(st.st_mode & 0o170000),
    };
    Ok(Some(FsEntry {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
    }))
}

/// Every path below the directory `path` (a path this process chose: its own components may
/// be followed), without following anything inside it. A missing directory scans empty.
pub fn scan(path: &Path) -> Result<Scan> {
    match Root::open(path) {
        Ok(root) => scan_root(&root),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Scan::new()),
        Err(e) => Err(e.into()),
    }
}

/// Every path below `root` itself (relative), without following symlinks.
pub fn scan_root(root: &Root) -> Result<Scan> {
    fn rec(root: &Root, rel: &Path, depth: usize, out: &mut Scan) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(Error::Invalid(format!(
                "{}: more than {MAX_DEPTH} directories deep",
                root.show(rel).display()
            )));
        }
        for n in root.list(dot(rel))? {
            let r = rel.join(&n);
            if let Some(e) = stat_in(root, &r)? {
                let is_dir = e.is_dir();
                out.insert(r.clone(), e);
                if is_dir {
                    rec(root, &r, depth + 1, out)?;
                }
            }
        }
        Ok(())
    }
    let mut out = Scan::new();
    rec(root, Path::new(""), 0, &mut out)?;
    Ok(out)
}

fn dot(p: &Path) -> &Path {
    if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    }
}

/// The directory `rel` beneath `root` (`usr/etc`, `etc` of a deployment) as a root of its
/// own; `None` when it does not exist. Every component must be a real directory: a symlink
/// (or a file) on the way is an error naming it, never followed.
pub fn dir_in(root: &Root, rel: &Path) -> Result<Option<Root>> {
    let mut at = PathBuf::new();
    for c in rel.components() {
        at.push(c);
        match root.stat(&at)? {
            None => return Ok(None),
            Some(ociboot_fs::beneath::Kind::Dir) => {}
            Some(k) => {
                let what = match k {
                    ociboot_fs::beneath::Kind::Symlink => "a symlink",
                    ociboot_fs::beneath::Kind::File => "a file",
                    _ => "a special file",
                };
                return Err(Error::Invalid(format!(
                    "{}: {what}, not a directory: /{} must be a real directory",
                    root.show(&at).display(),
                    rel.display()
                )));
            }
        }
    }
    Ok(Some(root.open_dir(rel)?))
}

/// Every path below `rel` beneath `root`; empty when `rel` does not exist, an error when a
/// symlink or a file stands where a directory of it should be ([`dir_in`]).
pub fn scan_in(root: &Root, rel: &Path) -> Result<Scan> {
    match dir_in(root, rel)? {
        Some(d) => scan_root(&d),
        None => Ok(Scan::new()),
    }
}

/// Give `dst_rel` beneath `dst` the owner, mode, xattrs and times of `src_rel` beneath `src`
/// (symlinks: owner, xattrs, times). Neither is followed.
pub fn copy_meta_in(src: &Root, src_rel: &Path, dst: &Root, dst_rel: &Path) -> Result<()> {
    let st = src
        .lstat(src_rel)?
        .ok_or_else(|| Error::Invalid(format!("{}: vanished", src.show(src_rel).display())))?;
    copy_meta(src, src_rel, dst, dst_rel, &st)
}

fn copy_meta(
    src: &Root,
    src_rel: &Path,
    dst: &Root,
    dst_rel: &Path,
    st: &rustix::fs::Stat,
) -> Result<()> {
    // chown first: it clears setuid/setgid bits that the chmod then sets.
    dst.set_owner(dst_rel, st.st_uid, st.st_gid)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
        dst.set_mode(dst_rel, st.st_mode & 0o7777)?;
    }
    for (name, value) in src.xattrs(src_rel)? {
        dst.set_xattr(dst_rel, &name, &value)?;
    }
    let t = |s: i64, ns: u64| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: t(st.st_atime, st.st_atime_nsec),
        last_modification: t(st.st_mtime, st.st_mtime_nsec),
    };
    dst.set_times(dst_rel, &times)?;
    Ok(())
}

/// Copy `src_rel` beneath `src` (file, symlink, special file or whole directory) to `dst_rel`
/// beneath `dst`, which must not exist, keeping everything but the inode. A symlink is copied
/// as a symlink (its target read and written as it is); a symlink on the way to either path is
/// an error. Sockets are not copied.
pub fn copy_in(src: &Root, src_rel: &Path, dst: &Root, dst_rel: &Path) -> Result<()> {
    // A symlink on the way is named in the error (the kernel would only say ELOOP).
    for (root, rel) in [(src, src_rel), (dst, dst_rel)] {
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            dir_in(root, parent)?;
        }
    }
    copy_rec(src, src_rel, dst, dst_rel, 0)
}

fn copy_rec(src: &Root, s: &Path, dst: &Root, d: &Path, depth: usize) -> Result<()> {
    let st = src.lstat(s)?.ok_or_else(|| {
        Error::Io(ociboot_fs::IoError::at(
            "stat",
            src.show(s),
            std::io::ErrorKind::NotFound.into(),
        ))
    })?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            if depth >= MAX_DEPTH {
                return Err(Error::Invalid(format!(
                    "{}: more than {MAX_DEPTH} directories deep",
                    src.show(s).display()
                )));
            }
            dst.create_dir(d, 0o700)?;
            for n in src.list(dot(s))? {
                copy_rec(src, &s.join(&n), dst, &d.join(&n), depth + 1)?;
            }
        }
        FileType::Symlink => dst.symlink(src.read_link(s)?, d)?,
        FileType::RegularFile => {
            let mut i = src.open_regular(s)?;
            let mut o = dst.create_file(d, 0o600)?;
            std::io::copy(&mut i, &mut o).ctx(|| {
                format!(
                    "copying {} to {}",
                    src.show(s).display(),
                    dst.show(d).display()
                )
            })?;
        }
        ft @ (FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice) => {
            dst.mknod(d, ft, 0o600, st.st_rdev)?
        }
        // sockets are not copied
        _ => return Ok(()),
    }
    copy_meta(src, s, dst, d, &st)
}

/// A deployment's pristine `usr/etc` copied to `dst` (`etc`, `etc.merged`), which must not
/// exist, as [`copy_in`] does, all beneath the deployment directory: that is a path this
/// process chose, nothing below it is followed (a `usr` the image made a symlink is an error
/// naming it). An image without /etc gets an empty `dst`.
pub fn copy_pristine_etc(deployment: &Path, dst: &str) -> Result<()> {
    let root = Root::open(deployment)?;
    let (src, dst) = (Path::new("usr/etc"), Path::new(dst));
    match dir_in(&root, src)? {
        Some(_) => copy_in(&root, src, &root, dst),
        None => Ok(root.create_dir(dst, 0o755)?),
    }
}

/// A relative path with only normal components.
pub fn is_plain_relative(p: &Path) -> bool {
    p.components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests;
