//! Whole files and trees by path: removal, disk usage, extended attributes, the umask. These
//! take paths this process chose (under the store or the sysroot), never paths an image
//! named; for those, see [`crate::beneath`].

use std::ffi::CString;
use std::io;
use std::path::Path;

use crate::error::{IoContext, IoError};

/// Remove a file or a whole directory tree, if it exists. Symlinks are removed, not followed
/// (the last component is never followed, and the standard library's tree removal does not
/// follow symlinks inside the tree).
pub fn remove_any(p: &Path) -> Result<(), IoError> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).at("removing", p),
        Ok(_) => std::fs::remove_file(p).at("removing", p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::about(p, e)),
    }
}

/// Bytes allocated to a file or directory tree (files with other links count nothing: removing
/// this name frees none of their space). What vanished meanwhile counts nothing; any other
/// error reading the tree is returned, naming the path.
pub fn disk_usage(p: &Path) -> Result<u64, IoError> {
    use std::os::unix::fs::MetadataExt;
    let m = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(IoError::at("stat", p, e)),
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
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(own),
        Err(e) => return Err(IoError::at("reading", p, e)),
    };
    let mut total = own;
    for e in rd {
        let e = e.at("reading", p)?;
        total += disk_usage(&e.path())?;
    }
    Ok(total)
}

/// The kernel's limit on one extended attribute's value, and on a file's list of names.
const XATTR_MAX: usize = 64 << 10;

/// Extended attributes as (name, value) pairs, sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// A file's extended attributes, sorted by name; the file itself if it is a symlink. A
/// filesystem without xattrs has none.
pub fn read_xattrs(path: &Path) -> Result<Xattrs, IoError> {
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if names.len() < XATTR_MAX => names.resize(XATTR_MAX, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(IoError::at("listing the xattrs of", path, e.into())),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|x| !x.is_empty()) {
        // The kernel's list has no NUL inside a name.
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        let mut val = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(path, cname.as_c_str(), &mut val) {
                Ok(l) => break l,
                Err(rustix::io::Errno::RANGE) if val.len() < XATTR_MAX => val.resize(XATTR_MAX, 0),
                Err(e) => return Err(IoError::at("reading an xattr of", path, e.into())),
            }
        };
        val.truncate(len);
        out.push((name.to_vec(), val));
    }
    out.sort();
    Ok(out)
}

/// The process's file-mode creation mask. (Reading it means setting it: it is set back at
/// once, and the process is not expected to change it meanwhile from another thread.)
pub fn current_umask() -> u32 {
    use rustix::fs::Mode;
    let old = rustix::process::umask(Mode::from_raw_mode(0o022));
    rustix::process::umask(old);
    old.bits()
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
    fn remove_any_removes_a_symlink_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        remove_any(&link).unwrap();
        assert!(target.join("keep").exists());
        remove_any(&target).unwrap();
        assert!(!target.exists());
        remove_any(&target).unwrap();
    }

    #[test]
    fn xattrs_round_trip_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let set =
            |n: &str, v: &[u8]| rustix::fs::setxattr(&f, n, v, rustix::fs::XattrFlags::empty());
        if set("user.b", b"2").is_err() {
            // tmpfs without user xattrs: nothing to check here.
            return;
        }
        set("user.a", &[7u8; 1000]).unwrap();
        let got = read_xattrs(&f).unwrap();
        let names: Vec<_> = got.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, [b"user.a".as_slice(), b"user.b"]);
        assert_eq!(got[0].1.len(), 1000);
    }

    #[test]
    fn the_umask_is_read_without_changing_it() {
        let a = current_umask();
        assert_eq!(current_umask(), a);
    }
}
