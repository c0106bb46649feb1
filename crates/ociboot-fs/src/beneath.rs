//! Path operations confined beneath a root directory, for trees whose contents an image
//! controls (a deployment, its `/etc`, an unpacked layer).
//!
//! Every path is resolved by the kernel with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)`: no `..` above the root, no symlink followed anywhere on the way,
//! no `/proc` magic link. The last component of a path is then acted on with the `*at` call
//! that does not follow it (`unlinkat`, `fstatat(AT_SYMLINK_NOFOLLOW)`, `readlinkat`). So a
//! symlink an image planted, absolute or relative, in the middle or at the end of a path,
//! can make an operation fail, never reach a file outside the root. The one exception,
//! [`Root::open_in_root`], follows symlinks the way a chroot would (`RESOLVE_IN_ROOT`): for
//! files an image may legitimately reach through its own links, still never outside it.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use crate::error::IoError;

/// How deep [`Root::remove`] descends before it gives up: far deeper than any real tree, and
/// shallow enough that the recursion's stack stays small.
pub const MAX_DEPTH: usize = 1024;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// A directory that paths are resolved beneath. Paths given to it are relative to it; a
/// leading `/` means the root itself, as inside a chroot.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// What [`Root::stat`] finds at a path, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// A device, FIFO or socket.
    Other,
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why.to_string())
}

/// `rel` as a path the kernel resolves beneath the root: root and `.` components dropped,
/// `..` refused here already (the kernel would refuse it only when it climbs out).
fn relative(rel: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid("the path has a `..` component"))
            }
        }
    }
    Ok(out)
}

/// Split into the parent (resolved beneath the root) and the last name (acted on without
/// following it). The root itself has no last name.
fn split(rel: &Path) -> io::Result<(PathBuf, &OsStr)> {
    let clean = relative(rel)?;
    let name = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .next_back()
        .ok_or_else(|| invalid("the path names the root itself"))?;
    let parent = clean.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((parent, name))
}

fn dot(p: &Path) -> &Path {
    if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    }
}

impl Root {
    /// Open the directory `path` (a path this process chose, so it may itself be reached
    /// through symlinks) as a root.
    pub fn open(path: impl AsRef<Path>) -> Result<Root, IoError> {
        let path = path.as_ref();
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| IoError::at("opening", path, e.into()))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The root's own path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` shown as the full path it names, for messages.
    pub fn show(&self, rel: &Path) -> PathBuf {
        self.path
            .join(relative(rel).unwrap_or_else(|_| rel.to_path_buf()))
    }

    fn err(&self, verb: &str, rel: &Path) -> impl FnOnce(io::Error) -> IoError {
        let p = self.show(rel);
        let verb = verb.to_string();
        move |e| IoError::at(&verb, p, e)
    }

    fn resolve(&self, rel: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let clean = relative(rel)?;
        Ok(rustix::fs::openat2(
            &self.fd,
            dot(&clean),
            flags | OFlags::CLOEXEC,
            mode,
            RESOLVE,
        )?)
    }

    /// The parent directory of `rel` opened beneath the root, and the last name of `rel`.
    fn parent_fd<'a>(&self, rel: &'a Path) -> io::Result<(OwnedFd, &'a OsStr)> {
        let (parent, name) = split(rel)?;
        let dir = self.resolve(&parent, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        Ok((dir, name))
    }

    /// The directory `rel` as a root of its own.
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> Result<Root, IoError> {
        let rel = rel.as_ref();
        let fd = self
            .resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .map_err(self.err("opening", rel))?;
        Ok(Root {
            fd,
            path: self.show(rel),
        })
    }

    /// Open the regular file `rel` for reading.
    pub fn open_file(&self, rel: impl AsRef<Path>) -> Result<File, IoError> {
        let rel = rel.as_ref();
        let fd = self
            .resolve(rel, OFlags::RDONLY | OFlags::NOFOLLOW, Mode::empty())
            .map_err(self.err("opening", rel))?;
        Ok(File::from(fd))
    }

    /// Open `rel` for reading only if it is a regular file (not a symlink, device or FIFO:
    /// opening a FIFO an image planted must not block).
    pub fn open_regular(&self, rel: impl AsRef<Path>) -> Result<File, IoError> {
        let rel = rel.as_ref();
        let fd = self
            .resolve(
                rel,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
                Mode::empty(),
            )
            .map_err(self.err("opening", rel))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| self.err("stat", rel)(e.into()))?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(self.err("opening", rel)(invalid("not a regular file")));
        }
        Ok(File::from(fd))
    }

    /// Open `rel` for reading as a process chrooted to the root would: symlinks are followed,
    /// but resolved against the root (an absolute target, or `..` at the top, stays inside;
    /// `RESOLVE_IN_ROOT`). Only a regular file is opened.
    pub fn open_in_root(&self, rel: impl AsRef<Path>) -> Result<File, IoError> {
        let rel = rel.as_ref();
        let clean = relative(rel).map_err(self.err("opening", rel))?;
        let fd = rustix::fs::openat2(
            &self.fd,
            dot(&clean),
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| self.err("opening", rel)(e.into()))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| self.err("stat", rel)(e.into()))?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(self.err("opening", rel)(invalid("not a regular file")));
        }
        Ok(File::from(fd))
    }

    /// The names in the directory `rel` (without `.` and `..`), sorted bytewise.
    pub fn list(&self, rel: impl AsRef<Path>) -> Result<Vec<std::ffi::OsString>, IoError> {
        let rel = rel.as_ref();
        let fd = self
            .resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .map_err(self.err("reading", rel))?;
        let mut out = Vec::new();
        for entry in
            rustix::fs::Dir::read_from(&fd).map_err(|e| self.err("reading", rel)(e.into()))?
        {
            let entry = entry.map_err(|e| self.err("reading", rel)(e.into()))?;
            let n = entry.file_name();
            if n != c"." && n != c".." {
                out.push(OsStr::from_bytes(n.to_bytes()).to_os_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The content of the file `rel`, refused when larger than `limit` bytes.
    pub fn read(&self, rel: impl AsRef<Path>, limit: u64) -> Result<Vec<u8>, IoError> {
        let rel = rel.as_ref();
        let mut out = Vec::new();
        self.open_file(rel)?
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(self.err("reading", rel))?;
        if out.len() as u64 > limit {
            return Err(self.err("reading", rel)(invalid(&format!(
                "larger than the {limit} bytes allowed"
            ))));
        }
        Ok(out)
    }

    /// What `rel` is, without following it; `None` when nothing is there beneath the root:
    /// also when a symlink or a non-directory stands on the way to it (the path leads
    /// nowhere inside the tree).
    pub fn stat(&self, rel: impl AsRef<Path>) -> Result<Option<Kind>, IoError> {
        Ok(self
            .lstat(rel)?
            .map(|st| match rustix::fs::FileType::from_raw_mode(st.st_mode) {
                rustix::fs::FileType::RegularFile => Kind::File,
                rustix::fs::FileType::Directory => Kind::Dir,
                rustix::fs::FileType::Symlink => Kind::Symlink,
                _ => Kind::Other,
            }))
    }

    /// The target of the symlink `rel`, as written (it is not resolved).
    pub fn read_link(&self, rel: impl AsRef<Path>) -> Result<PathBuf, IoError> {
        let rel = rel.as_ref();
        let (dir, name) = self.parent_fd(rel).map_err(self.err("reading link", rel))?;
        let target = rustix::fs::readlinkat(&dir, name, Vec::new())
            .map_err(|e| self.err("reading link", rel)(e.into()))?;
        Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
    }

    /// Create the directory `rel` and any missing parents with `mode` (less the umask). A
    /// symlink where a directory should be is an error, never followed.
    pub fn create_dir_all(&self, rel: impl AsRef<Path>, mode: u32) -> Result<(), IoError> {
        let rel = rel.as_ref();
        let clean = relative(rel).map_err(self.err("creating", rel))?;
        let mut at = PathBuf::new();
        for c in clean.components() {
            at.push(c);
            let (dir, name) = self.parent_fd(&at).map_err(self.err("creating", &at))?;
            match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {
                    if self.stat(&at)? != Some(Kind::Dir) {
                        return Err(self.err("creating", &at)(io::Error::from(
                            io::ErrorKind::NotADirectory,
                        )));
                    }
                }
                Err(e) => return Err(self.err("creating", &at)(e.into())),
            }
        }
        Ok(())
    }

    /// Create the symlink `rel` pointing at `target` (which is stored, never resolved here).
    pub fn symlink(&self, target: impl AsRef<Path>, rel: impl AsRef<Path>) -> Result<(), IoError> {
        let rel = rel.as_ref();
        let (dir, name) = self.parent_fd(rel).map_err(self.err("creating", rel))?;
        rustix::fs::symlinkat(target.as_ref(), &dir, name)
            .map_err(|e| self.err("creating", rel)(e.into()))
    }

    /// Remove `rel`, whatever it is (a directory with all it holds), if it exists. Nothing is
    /// followed: a symlink is removed, not the tree it points at, and a symlink on the way to
    /// `rel` is an error.
    pub fn remove(&self, rel: impl AsRef<Path>) -> Result<(), IoError> {
        let rel = rel.as_ref();
        let (dir, name) = match self.parent_fd(rel) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.err("removing", rel)(e)),
        };
        let name = std::ffi::CString::new(name.as_bytes())
            .map_err(|_| self.err("removing", rel)(invalid("NUL in the name")))?;
        remove_at(&dir, &name, 0).map_err(self.err("removing", rel))
    }
}

/// Remove `name` in `dir`: unlink it, or empty it first when it is a directory (opened with
/// `O_NOFOLLOW`, so a symlink swapped in meanwhile fails instead of being followed).
fn remove_at(dir: &impl AsFd, name: &CStr, depth: usize) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(rustix::io::Errno::ISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    if depth >= MAX_DEPTH {
        return Err(invalid(&format!(
            "the tree is more than {MAX_DEPTH} directories deep"
        )));
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&sub)? {
        let entry = entry?;
        let n = entry.file_name();
        if n != c"." && n != c".." {
            names.push(n.to_owned());
        }
    }
    for n in names {
        remove_at(&sub, &n, depth + 1)?;
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

mod meta;

#[cfg(test)]
mod tests;
