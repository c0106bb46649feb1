//! Metadata and creation beneath a [`Root`]: the full `lstat`, new files, directories and
//! device nodes, owner, mode, times and extended attributes. Each acts on the last component
//! of its path with the `*at` call that does not follow it, in a parent resolved beneath the
//! root; what it creates must not exist yet (`O_EXCL`, `mkdirat`, `mknodat`, `symlinkat`).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Stat, Timestamps, Uid};

use super::{invalid, Root};
use crate::error::IoError;
use crate::tree::{read_xattrs, Xattrs};

impl Root {
    /// The metadata of `rel`, not following it; `None` when nothing is there beneath the root,
    /// also when a symlink or a non-directory stands on the way (as [`Root::stat`]).
    pub fn lstat(&self, rel: impl AsRef<Path>) -> Result<Option<Stat>, IoError> {
        let rel = rel.as_ref();
        let blocked = [
            rustix::io::Errno::NOENT,
            rustix::io::Errno::LOOP,
            rustix::io::Errno::NOTDIR,
        ]
        .map(|e| Some(e.raw_os_error()));
        let (dir, name) = match self.parent_fd(rel) {
            Ok(x) => x,
            Err(e) if blocked.contains(&e.raw_os_error()) => return Ok(None),
            Err(e) => return Err(self.err("stat", rel)(e)),
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(self.err("stat", rel)(e.into())),
        }
    }

    /// Create the regular file `rel`, which must not exist, for writing, with `mode` (less
    /// the umask). Its parent must be a directory beneath the root.
    pub fn create_file(&self, rel: impl AsRef<Path>, mode: u32) -> Result<File, IoError> {
        let rel = rel.as_ref();
        let (dir, name) = self.parent_fd(rel).map_err(self.err("creating", rel))?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| self.err("creating", rel)(e.into()))?;
        Ok(File::from(fd))
    }

    /// Create the directory `rel`, which must not exist, with `mode` (less the umask). Its
    /// parent must be a directory beneath the root.
    pub fn create_dir(&self, rel: impl AsRef<Path>, mode: u32) -> Result<(), IoError> {
        let rel = rel.as_ref();
        let (dir, name) = self.parent_fd(rel).map_err(self.err("creating", rel))?;
        rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode))
            .map_err(|e| self.err("creating", rel)(e.into()))
    }

    /// Create the FIFO or device node `rel`, which must not exist.
    pub fn mknod(
        &self,
        rel: impl AsRef<Path>,
        kind: FileType,
        mode: u32,
        dev: u64,
    ) -> Result<(), IoError> {
        let rel = rel.as_ref();
        let (dir, name) = self.parent_fd(rel).map_err(self.err("creating", rel))?;
        rustix::fs::mknodat(&dir, name, kind, Mode::from_raw_mode(mode), dev)
            .map_err(|e| self.err("creating", rel)(e.into()))
    }

    /// Give `rel` (a symlink itself, not what it points at) an owner and group.
    pub fn set_owner(&self, rel: impl AsRef<Path>, uid: u32, gid: u32) -> Result<(), IoError> {
        let rel = rel.as_ref();
        let (dir, name) = self.parent_fd(rel).map_err(self.err("chown", rel))?;
        rustix::fs::chownat(
            &dir,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err("chown", rel)(e.into()))
    }

    /// Set the permission bits of `rel`. A symlink is refused: Linux gives symlinks no mode
    /// of their own, and `chmod` would change what it points at.
    pub fn set_mode(&self, rel: impl AsRef<Path>, mode: u32) -> Result<(), IoError> {
        let rel = rel.as_ref();
        let (dir, name) = self.parent_fd(rel).map_err(self.err("chmod", rel))?;
        let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.err("chmod", rel)(e.into()))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            return Err(self.err("chmod", rel)(invalid("a symlink has no mode")));
        }
        rustix::fs::chmodat(&dir, name, Mode::from_raw_mode(mode), AtFlags::empty())
            .map_err(|e| self.err("chmod", rel)(e.into()))
    }

    /// Set the access and modification times of `rel` (a symlink's own).
    pub fn set_times(&self, rel: impl AsRef<Path>, times: &Timestamps) -> Result<(), IoError> {
        let rel = rel.as_ref();
        let (dir, name) = self
            .parent_fd(rel)
            .map_err(self.err("setting times of", rel))?;
        rustix::fs::utimensat(&dir, name, times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.err("setting times of", rel)(e.into()))
    }

    /// `rel` as a path the `l*xattr` calls take: the parent's open descriptor in
    /// `/proc/self/fd` (followed: it is the directory resolved beneath the root), then the last
    /// name, which those calls never follow. The descriptor must stay open while it is used.
    fn xattr_path(&self, rel: &Path) -> io::Result<(std::os::fd::OwnedFd, PathBuf)> {
        let (dir, name) = self.parent_fd(rel)?;
        if name.as_bytes().contains(&b'/') {
            return Err(invalid("a name with a slash"));
        }
        let p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
        Ok((dir, p))
    }

    /// The extended attributes of `rel` (a symlink's own), sorted by name.
    pub fn xattrs(&self, rel: impl AsRef<Path>) -> Result<Xattrs, IoError> {
        let rel = rel.as_ref();
        let (_dir, p) = self
            .xattr_path(rel)
            .map_err(self.err("reading the xattrs of", rel))?;
        read_xattrs(&p).map_err(|e| self.err("reading the xattrs of", rel)(e.source))
    }

    /// Set the extended attribute `name` of `rel` (a symlink's own) to `value`.
    pub fn set_xattr(
        &self,
        rel: impl AsRef<Path>,
        name: &[u8],
        value: &[u8],
    ) -> Result<(), IoError> {
        let rel = rel.as_ref();
        let what = format!("setting xattr {} on", String::from_utf8_lossy(name));
        let (_dir, p) = self.xattr_path(rel).map_err(self.err(&what, rel))?;
        let cname = std::ffi::CString::new(name)
            .map_err(|_| self.err(&what, rel)(invalid("NUL in the name")))?;
        rustix::fs::lsetxattr(&p, cname.as_c_str(), value, rustix::fs::XattrFlags::empty())
            .map_err(|e| self.err(&what, rel)(e.into()))
    }
}
