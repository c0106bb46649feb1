//! Crash-safe writes: a new file beside the old one, fsynced, renamed over it, the directory
//! fsynced. After a crash the file has its old or its new content, never a mix; the only
//! leftover can be a temporary file whose name readers and boot loaders skip.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, IoError};

/// fsync a directory, so that renames and creations in it are durable.
pub fn fsync_dir(dir: &Path) -> Result<(), IoError> {
    let f = File::open(dir).at("opening", dir)?;
    f.sync_all().at("fsync", dir)
}

/// Flush everything written to the filesystem holding `path`.
pub fn syncfs(path: &Path) -> Result<(), IoError> {
    let f = File::open(path).at("opening", path)?;
    rustix::fs::syncfs(f.as_fd()).at("syncfs", path)
}

/// Create a directory (and its parents) if missing.
pub fn ensure_dir(p: &Path) -> Result<(), IoError> {
    std::fs::create_dir_all(p).at("creating", p)
}

/// Create a directory (and its parents) if missing, and make it root-only (0700) if anyone else
/// may enter it: what is below (old deployments, store objects, setuid files an update has
/// since replaced) must not be reachable by unprivileged users.
pub fn ensure_private_dir(p: &Path) -> Result<(), IoError> {
    use std::os::unix::fs::PermissionsExt;
    ensure_dir(p)?;
    let mode = std::fs::metadata(p).at("stat", p)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).at("chmod", p)?;
    }
    Ok(())
}

/// The temporary name [`write_atomic`] writes `dest` under before the rename: hidden, with the
/// prefix `.tmp-` that listings skip, and ending in `.tmp` so that no boot loader takes a
/// leftover for an entry (`*.conf`) and no reader for a record (`*.json`).
pub fn temp_name(dest: &Path) -> Option<PathBuf> {
    let name = dest.file_name()?;
    Some(dest.with_file_name(format!(".tmp-{}.tmp", name.to_string_lossy())))
}

/// Replace `dest` with `data` atomically: written to [`temp_name`], fsynced, renamed over
/// `dest`, then the directory fsynced. A file that already holds `data` is left alone (on a
/// FAT boot partition that spares a write). Returns whether anything was written.
///
/// Callers serialise writers of one `dest` (they hold the store's or the sysroot's lock): the
/// temporary name is the same for every writer, so a crashed one's leftover is simply reused.
pub fn write_atomic(dest: &Path, data: &[u8]) -> Result<bool, IoError> {
    let invalid = |why: &str| {
        IoError::at(
            "replacing",
            dest,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string()),
        )
    };
    let dir = dest
        .parent()
        .ok_or_else(|| invalid("no parent directory"))?;
    let tmp = temp_name(dest).ok_or_else(|| invalid("no file name"))?;
    if std::fs::read(dest).is_ok_and(|cur| cur == data) {
        return Ok(false);
    }
    {
        let mut f = File::create(&tmp).at("creating", &tmp)?;
        f.write_all(data).at("writing", &tmp)?;
        f.sync_all().at("fsync", &tmp)?;
    }
    std::fs::rename(&tmp, dest)
        .ctx(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    fsync_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("state.json");
        assert!(write_atomic(&f, b"old").unwrap());
        assert!(write_atomic(&f, b"new").unwrap());
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn the_same_content_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("loader.conf");
        assert!(write_atomic(&f, b"default ociboot-1.conf\n").unwrap());
        let before = std::fs::metadata(&f).unwrap();
        assert!(!write_atomic(&f, b"default ociboot-1.conf\n").unwrap());
        let after = std::fs::metadata(&f).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(before.ino(), after.ino(), "the file was replaced");
    }

    #[test]
    fn a_leftover_temporary_file_is_no_entry_and_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ociboot-1.conf");
        let tmp = temp_name(&f).unwrap();
        let name = tmp.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with(".tmp-") && !name.ends_with(".conf"),
            "{name}"
        );
        std::fs::write(&tmp, b"half a crashed wri").unwrap();
        write_atomic(&f, b"title x\n").unwrap();
        assert!(!tmp.exists());
        assert_eq!(std::fs::read(&f).unwrap(), b"title x\n");
    }

    #[test]
    fn a_private_directory_is_root_only_whatever_it_was() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/deploy");
        ensure_private_dir(&d).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&d), 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("missing-dir/state.json");
        let e = write_atomic(&f, b"x").unwrap_err();
        assert!(e.to_string().contains("missing-dir"), "{e}");
        assert!(e.path.is_some());
    }
}
