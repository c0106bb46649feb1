//! Small crash-safety helpers: write-to-new-file, fsync, rename, fsync the directory.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// fsync a directory so that renames and creations in it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).ctx(|| format!("opening {}", dir.display()))?;
    f.sync_all().ctx(|| format!("fsync {}", dir.display()))
}

/// Flush everything written to the filesystem holding `path`.
pub fn syncfs(path: &Path) -> Result<()> {
    let f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    rustix::fs::syncfs(f.as_fd()).ctx(|| format!("syncfs {}", path.display()))
}

/// Atomically replace `dest` with `data`: a new file beside it, fsynced, renamed over `dest`,
/// then the directory fsynced. After a crash `dest` has the old or the new content.
pub fn write_atomic(dest: &Path, data: &[u8]) -> Result<()> {
    let dir = dest
        .parent()
        .ok_or_else(|| Error::Usage(format!("{} has no parent directory", dest.display())))?;
    let name = dest
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{} has no file name", dest.display())))?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        name.to_string_lossy()
    ));
    {
        let mut f = File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        f.write_all(data)
            .ctx(|| format!("writing {}", tmp.display()))?;
        f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, dest)
        .ctx(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    fsync_dir(dir)
}

/// Create a directory (and parents) if missing.
pub fn ensure_dir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).ctx(|| format!("creating {}", p.display()))
}

/// Remove a file or a whole directory tree if it exists.
pub fn remove_any(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(p).ctx(|| format!("removing {}", p.display()))
        }
        Ok(_) => std::fs::remove_file(p).ctx(|| format!("removing {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::path(p, e)),
    }
}

/// Bytes allocated to a file or directory tree (files with other links count nothing: removing
/// this name frees none of their space).
pub fn disk_usage(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    let own = if m.is_dir() || m.nlink() <= 1 {
        m.blocks() * 512
    } else {
        0
    };
    if !m.is_dir() {
        return own;
    }
    let children: u64 = std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0);
    own + children
}
