//! Paths looked up inside an image's root as if it were `/` (like a lookup under chroot): a
//! symlink's target is resolved against the root, an absolute target or `..` never leaves it,
//! and nothing of the host is ever read through a link.

use std::ffi::OsString;
use std::fs::Metadata;
use std::path::{Component, Path, PathBuf};

use crate::error::{Ctx, Error, Result};

/// How many symlinks one lookup follows before giving up (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// What a lookup found: the host path (none of its components a symlink, bar the last when
/// not followed) and its metadata.
#[derive(Debug)]
pub(crate) struct Found {
    pub path: PathBuf,
    pub meta: Metadata,
}

/// Look `rel` up under `root`, following symlinks inside the root, the last one too when
/// `follow_last`. `None` if it does not exist (or a component is not a directory).
pub(crate) fn lookup(root: &Path, rel: &Path, follow_last: bool) -> Result<Option<Found>> {
    // Components still to resolve, last first; components resolved so far.
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, rel);
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let mut host: PathBuf = root.to_path_buf();
        host.extend(&done);
        host.push(&c);
        let m = match std::fs::symlink_metadata(&host) {
            Ok(m) => m,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Ok(Err(e).at("stat", &host)?),
        };
        if m.file_type().is_symlink() && (follow_last || !todo.is_empty()) {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Error::Invalid(format!(
                    "{}: too many levels of symbolic links",
                    root.join(rel).display()
                )));
            }
            let target = std::fs::read_link(&host).at("readlink", &host)?;
            if target.is_absolute() {
                done.clear();
            }
            push_components(&mut todo, &target);
            continue;
        }
        if !todo.is_empty() && !m.is_dir() {
            return Ok(None);
        }
        done.push(c);
    }
    let mut path = root.to_path_buf();
    path.extend(&done);
    let meta = std::fs::symlink_metadata(&path).at("stat", &path)?;
    Ok(Some(Found { path, meta }))
}

fn is_missing(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
}

/// Push the components of `p` onto the stack `todo` so that the first is popped first.
fn push_components(todo: &mut Vec<OsString>, p: &Path) {
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    todo.extend(comps.into_iter().rev());
}

/// A path of the image as people read it: `/` and the bytes of `rel`, with what is not
/// printable UTF-8 escaped (`\xff`, `\n`) and backslashes doubled, so the name is unambiguous.
pub fn display_rel(rel: &[u8]) -> String {
    let mut s = String::with_capacity(rel.len() + 1);
    if !rel.starts_with(b"/") {
        s.push('/');
    }
    for chunk in rel.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' || c.is_control() {
                s.extend(c.escape_default());
            } else {
                s.push(c);
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::write(r.join("usr/lib/os-release"), "ID=x\n").unwrap();
        std::fs::create_dir(r.join("etc")).unwrap();
        symlink("../usr/lib/os-release", r.join("etc/os-release")).unwrap();
        symlink("/usr/lib", r.join("lib")).unwrap();
        // Out of the root on the host: must resolve to the root's own /etc/passwd (absent).
        symlink("/etc/passwd", r.join("etc/abs")).unwrap();
        symlink("../../../../../../etc/passwd", r.join("etc/up")).unwrap();
        symlink("loop", r.join("loop")).unwrap();

        let f = lookup(r, Path::new("etc/os-release"), true)
            .unwrap()
            .unwrap();
        assert_eq!(f.path, r.join("usr/lib/os-release"));
        assert!(f.meta.is_file());
        let f = lookup(r, Path::new("etc/os-release"), false)
            .unwrap()
            .unwrap();
        assert!(f.meta.file_type().is_symlink());
        let f = lookup(r, Path::new("/lib/os-release"), false)
            .unwrap()
            .unwrap();
        assert_eq!(f.path, r.join("usr/lib/os-release"));
        assert!(lookup(r, Path::new("etc/abs"), true).unwrap().is_none());
        assert!(lookup(r, Path::new("etc/up"), true).unwrap().is_none());
        assert!(lookup(r, Path::new("usr/lib/os-release/x"), true)
            .unwrap()
            .is_none());
        assert!(lookup(r, Path::new("loop"), true).is_err());
        let f = lookup(r, Path::new("usr/../../etc"), true)
            .unwrap()
            .unwrap();
        assert_eq!(f.path, r.join("etc"));
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(display_rel(b"var/log"), "/var/log");
        assert_eq!(display_rel(b"usr/caf\xc3\xa9"), "/usr/caf\u{e9}");
        assert_eq!(display_rel(b"usr/a\xffb"), "/usr/a\\xffb");
        assert_eq!(display_rel(b"usr/a\nb\\"), "/usr/a\\nb\\\\");
    }
}
