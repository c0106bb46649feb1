//! Small crash-safety helpers: write-to-new-file, fsync, rename, fsync the directory.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// fsync a directory so that renames and creations in it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).at("opening", dir)?;
    f.sync_all().at("fsync", dir)
}

/// Flush everything written to the filesystem holding `path`.
pub fn syncfs(path: &Path) -> Result<()> {
    let f = File::open(path).at("opening", path)?;
    rustix::fs::syncfs(f.as_fd()).at("syncfs", path)
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
        let mut f = File::create(&tmp).at("creating", &tmp)?;
        f.write_all(data).at("writing", &tmp)?;
        f.sync_all().at("fsync", &tmp)?;
    }
    std::fs::rename(&tmp, dest)
        .ctx(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    fsync_dir(dir)
}

/// Create a directory (and parents) if missing.
pub fn ensure_dir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).at("creating", p)
}

/// Remove a file or a whole directory tree if it exists.
pub fn remove_any(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).at("removing", p),
        Ok(_) => std::fs::remove_file(p).at("removing", p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::path(p, e)),
    }
}

/// Bytes allocated to a file or directory tree (files with other links count nothing: removing
/// this name frees none of their space). What vanished meanwhile counts nothing; any other
/// error reading the tree is returned, naming the path.
pub fn disk_usage(p: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let m = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format!("stat {}", p.display()), e)),
    };
    let own = if m.is_dir() || m.nlink() <= 1 {
        m.blocks() * 512
    } else {
        0
    };
    if !m.is_dir() {
        return Ok(own);
    }
    let rd = match std::fs::read_dir(p) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(own),
        Err(e) => return Err(Error::io(format!("reading {}", p.display()), e)),
    };
    let mut total = own;
    for e in rd {
        let e = e.at("reading", p)?;
        total += disk_usage(&e.path())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_a_tree_once_and_names_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/f"), vec![1u8; 64 << 10]).unwrap();
        std::fs::write(d.join("linked"), vec![2u8; 64 << 10]).unwrap();
        std::fs::hard_link(d.join("linked"), dir.path().join("other-link")).unwrap();
        let total = disk_usage(&d).unwrap();
        // The 64 KiB file counts, the one with another link does not.
        assert!((64 << 10..128 << 10).contains(&total), "{total}");
        assert_eq!(disk_usage(&dir.path().join("gone")).unwrap(), 0);
        // A path through a regular file: ENOTDIR is not "vanished".
        let bad = d.join("linked/x");
        let err = disk_usage(&bad).unwrap_err().to_string();
        assert!(err.contains(&bad.display().to_string()), "{err}");
    }

    #[test]
    fn write_atomic_replaces_the_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("state.json");
        write_atomic(&f, b"old").unwrap();
        write_atomic(&f, b"new").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
