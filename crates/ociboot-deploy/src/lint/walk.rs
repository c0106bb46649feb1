//! The one walk of the whole tree that the recursive lints (`setuid`, `utf8`, `var-content`)
//! share. Directories are opened relative to their parent with `O_NOFOLLOW` and entries are
//! looked at with `AT_SYMLINK_NOFOLLOW`, so no symlink is ever followed; an explicit stack of
//! open directories replaces recursion. Entries are visited in byte order of their names, so
//! reports are the same from one run to the next.

use std::ffi::{CString, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::paths::display_rel;
use super::{Items, Problem, MAX_DEPTH};
use crate::error::{Ctx, Result};

/// A lint that is part of the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WalkLint {
    Setuid,
    Utf8,
    Var,
}

/// Top-level directories not walked: API filesystems and scratch space, mounted at run time.
const NOT_WALKED: &[&[u8]] = &[b"dev", b"proc", b"run", b"sys", b"sysroot", b"tmp"];

/// Directories of /var that are normally there: not reported when empty.
const VAR_USUAL: &[&[u8]] = &[
    b"backups", b"cache", b"db", b"empty", b"lib", b"local", b"log", b"mail", b"opt", b"spool",
    b"tmp",
];

/// Directories of /var under which empty directories are not reported either: programs and
/// systemd's own tmpfiles.d make them again (/var/log/journal, /var/cache/apt/archives/partial).
const VAR_SCRATCH: &[&[u8]] = &[b"cache", b"log", b"tmp"];

struct Frame {
    fd: OwnedFd,
    rel: Vec<u8>,
    names: std::vec::IntoIter<CString>,
    entries: usize,
}

/// What each wanted lint collected so far.
#[derive(Default)]
struct Found {
    setuid: Option<Items>,
    utf8: Option<Items>,
    var: Option<Items>,
}

/// Walk the tree at `root` for the `wanted` lints. What the walk had to leave out goes to
/// `notes`.
pub(crate) fn walk(
    root: &Path,
    wanted: &[WalkLint],
    notes: &mut Vec<String>,
) -> Result<Vec<(WalkLint, Option<Problem>)>> {
    let want = |w| wanted.contains(&w).then(Items::default);
    let mut found = Found {
        setuid: want(WalkLint::Setuid),
        utf8: want(WalkLint::Utf8),
        var: want(WalkLint::Var),
    };
    let dir_flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(root, dir_flags, Mode::empty()).at("opening", root)?;
    let dev = rustix::fs::fstat(&fd).at("stat", root)?.st_dev;
    let names = list(&fd, root, b"")?;
    let mut stack = vec![Frame {
        fd,
        rel: Vec::new(),
        names: names.into_iter(),
        entries: 0,
    }];
    let mut too_deep = Items::default();
    loop {
        let depth = stack.len();
        let Some(top) = stack.last_mut() else { break };
        let Some(name) = top.names.next() else {
            if let Some(done) = stack.pop() {
                found.dir_done(&done.rel, done.entries);
            }
            continue;
        };
        top.entries += 1;
        let mut rel = top.rel.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.to_bytes());
        let st = match rustix::fs::statat(&top.fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => continue, // removed since listed
            Err(e) => {
                return Err(ociboot_fs::IoError::at("stat", host(root, &rel), e.into()).into())
            }
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        found.visit(&rel, name.to_bytes(), ft, st.st_mode, st.st_size);
        if ft != FileType::Directory
            || st.st_dev != dev
            || (top.rel.is_empty() && NOT_WALKED.contains(&name.to_bytes()))
        {
            continue;
        }
        if depth >= MAX_DEPTH {
            too_deep.push(|| display_rel(&rel));
            continue;
        }
        let sub =
            match rustix::fs::openat(&top.fd, &name, dir_flags | OFlags::NOFOLLOW, Mode::empty()) {
                Ok(fd) => fd,
                Err(e) => {
                    return Err(
                        ociboot_fs::IoError::at("opening", host(root, &rel), e.into()).into(),
                    )
                }
            };
        let names = list(&sub, root, &rel)?;
        stack.push(Frame {
            fd: sub,
            rel,
            names: names.into_iter(),
            entries: 0,
        });
    }
    if let Some(first) = too_deep.kept.first() {
        notes.push(format!(
            "not checked: {} directories more than {MAX_DEPTH} levels deep, such as {first}",
            too_deep.total
        ));
    }
    Ok(found.into_problems())
}

/// The names in the directory `fd` (at `rel` under `root`), sorted.
fn list(fd: &OwnedFd, root: &Path, rel: &[u8]) -> Result<Vec<CString>> {
    let what = || format!("reading {}", host(root, rel).display());
    let mut dir = rustix::fs::Dir::read_from(fd).ctx(what)?;
    let mut names = Vec::new();
    while let Some(e) = dir.read() {
        let e = e.ctx(what)?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            names.push(n.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn host(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// The part of `rel` under /var, if it is in /var but not in /var/run or /var/lock (the
/// `var-run` lint's business).
fn in_var(rel: &[u8]) -> Option<&[u8]> {
    let sub = rel.strip_prefix(b"var/")?;
    let top = sub.split(|&b| b == b'/').next().unwrap_or_default();
    (top != b"run" && top != b"lock").then_some(sub)
}

impl Found {
    fn visit(&mut self, rel: &[u8], name: &[u8], ft: FileType, mode: u32, size: i64) {
        if let Some(items) = &mut self.utf8 {
            if std::str::from_utf8(name).is_err() {
                items.push(|| display_rel(rel));
            }
        }
        if let Some(items) = &mut self.setuid {
            let bits = mode & 0o6000;
            if ft == FileType::RegularFile && bits != 0 {
                let kind = match bits {
                    0o4000 => "setuid",
                    0o2000 => "setgid",
                    _ => "setuid and setgid",
                };
                items.push(|| format!("{} ({kind}, mode {:04o})", display_rel(rel), mode & 0o7777));
            }
        }
        if let Some(items) = &mut self.var {
            let shadowed = match ft {
                // Reported when empty, after their entries were counted.
                FileType::Directory => false,
                // Empty files (log files packages create) are harmless.
                FileType::RegularFile => size > 0,
                _ => true,
            };
            if shadowed && in_var(rel).is_some() {
                items.push(|| display_rel(rel));
            }
        }
    }

    fn dir_done(&mut self, rel: &[u8], entries: usize) {
        let Some(items) = &mut self.var else { return };
        if entries > 0 {
            return;
        }
        if let Some(sub) = in_var(rel) {
            let top = sub.split(|&b| b == b'/').next().unwrap_or_default();
            if !VAR_USUAL.contains(&sub) && !VAR_SCRATCH.contains(&top) {
                items.push(|| format!("{}/", display_rel(rel)));
            }
        }
    }

    fn into_problems(self) -> Vec<(WalkLint, Option<Problem>)> {
        let problem = |items: Items, msg: &dyn Fn(usize) -> String| {
            (!items.is_empty()).then(|| {
                let m = msg(items.total);
                Problem::with_items(m, items)
            })
        };
        let mut out = Vec::new();
        if let Some(i) = self.setuid {
            let p = problem(i, &|n| {
                format!("{n} setuid or setgid files (check each needs it)")
            });
            out.push((WalkLint::Setuid, p));
        }
        if let Some(i) = self.utf8 {
            let p = problem(i, &|n| format!("{n} file names are not valid UTF-8"));
            out.push((WalkLint::Utf8, p));
        }
        if let Some(i) = self.var {
            let p = problem(i, &|n| {
                format!(
                    "{n} entries in /var: the image's /var is copied to a host only at its first \
                     install, and after that the host's own /var hides them; create them at boot \
                     with tmpfiles.d or StateDirectory= instead"
                )
            });
            out.push((WalkLint::Var, p));
        }
        out
    }
}
