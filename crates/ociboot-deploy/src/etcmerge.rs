//! The /etc three-way merge, as ostree does it: what the admin changed relative to the booted
//! image's pristine /etc (content, mode, owner, added, removed files, symlinks) is carried into
//! the new deployment; everything the admin did not touch follows the new image. Local wins.
//!
//! Conflicts that cannot be merged (a local file where the new image has a directory, a local
//! change below something the new image made a symlink or a file) are found by [`plan`] before
//! anything is written, so staging refuses them instead of failing at shutdown.
//!
//! Both trees are read and written through [`Root`]s (`RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`): a symlink the new image planted where the admin has a directory is
//! replaced or reported, never written through; a symlink is copied as a symlink.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ociboot_fs::beneath::Root;

use crate::error::{Error, Result};
use crate::fstree::{self, FsEntry, Kind};

/// Local changes: `orig` (pristine /etc of the running image) → `modified` (the live /etc).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EtcDiff {
    /// Paths (relative to /etc) the admin added, parents before children.
    pub added: Vec<PathBuf>,
    /// Paths whose content, mode, owner, type or link target the admin changed.
    pub modified: Vec<PathBuf>,
    /// Paths the admin removed; a removed directory once, without its contents.
    pub removed: Vec<PathBuf>,
}

impl EtcDiff {
    /// Whether the admin changed nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

fn under(p: &Path, dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| p != d && p.starts_with(d))
}

/// Compare two scans. A removed directory is listed once, not with its contents (it goes as a
/// whole); added paths are all listed, parents first, because an added directory may meet a
/// directory of the same name in the new image and must then be merged entry by entry.
pub fn diff(orig: &BTreeMap<PathBuf, FsEntry>, modified: &BTreeMap<PathBuf, FsEntry>) -> EtcDiff {
    let mut d = EtcDiff::default();
    for (p, o) in orig {
        match modified.get(p) {
            None => {
                if !under(p, &d.removed) {
                    d.removed.push(p.clone());
                }
            }
            Some(m) if m != o => {
                // A directory that became something else, or the reverse, is a replacement.
                d.modified.push(p.clone());
            }
            Some(_) => {}
        }
    }
    for p in modified.keys() {
        if !orig.contains_key(p) {
            d.added.push(p.clone());
        }
    }
    d
}

/// What applying a diff to the new /etc will do, or why it cannot.
pub struct Plan {
    /// The local changes to apply.
    pub diff: EtcDiff,
    /// Why some cannot be applied, one line each naming the path; empty when all can.
    pub conflicts: Vec<String>,
}

/// What the new /etc has at a relative path, looked up only for the paths a diff touches (a
/// diff is small; the new /etc need not be read whole). Like a scan, a path below anything
/// that is not a directory is absent.
struct Lookup<'a> {
    root: Option<&'a Root>,
    seen: std::collections::HashMap<PathBuf, Option<FsEntry>>,
}

impl Lookup<'_> {
    fn get(&mut self, rel: &Path) -> Result<Option<FsEntry>> {
        if let Some(e) = self.seen.get(rel) {
            return Ok(e.clone());
        }
        let parent_ok = match rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => self.get(p)?.is_some_and(|e| e.is_dir()),
            None => true,
        };
        let e = match self.root {
            Some(root) if parent_ok => fstree::stat_in(root, rel)?,
            _ => None,
        };
        self.seen.insert(rel.to_path_buf(), e.clone());
        Ok(e)
    }
}

/// Check that `diff` (from `modified_root`) can be applied to the new /etc at `new_root`.
pub fn plan(diff: EtcDiff, modified: &BTreeMap<PathBuf, FsEntry>, new_root: &Path) -> Result<Plan> {
    plan_in(diff, modified, Some(&Root::open(new_root)?))
}

/// [`plan`] against the new /etc opened as a root; `None` for an image without /etc.
pub fn plan_in(
    diff: EtcDiff,
    modified: &BTreeMap<PathBuf, FsEntry>,
    new_root: Option<&Root>,
) -> Result<Plan> {
    let mut new = Lookup {
        root: new_root,
        seen: Default::default(),
    };
    let mut conflicts = Vec::new();
    let removed = diff.removed.clone();
    let gone = |p: &Path| removed.iter().any(|r| p == r || p.starts_with(r));
    for p in diff.modified.iter().chain(&diff.added) {
        let Some(local) = modified.get(p) else {
            continue;
        };
        // Every parent must be (or become) a directory in the new /etc.
        let mut anc = p.parent();
        while let Some(a) = anc {
            if a.as_os_str().is_empty() {
                break;
            }
            if let Some(e) = new.get(a)? {
                let replaced = diff.modified.iter().chain(&diff.added).any(|m| m == a);
                if !e.is_dir() && !gone(a) && !replaced {
                    conflicts.push(format!(
                        "/etc/{}: changed locally, but the new image has /etc/{} as a {}",
                        p.display(),
                        a.display(),
                        describe(&e)
                    ));
                }
            }
            anc = a.parent();
        }
        if let Some(e) = new.get(p)? {
            if e.is_dir() && !local.is_dir() {
                conflicts.push(format!(
                    "/etc/{}: a local {} where the new image has a directory",
                    p.display(),
                    describe(local)
                ));
            }
        }
    }
    conflicts.dedup();
    Ok(Plan { diff, conflicts })
}

fn describe(e: &FsEntry) -> &'static str {
    match e.kind {
        Kind::Dir => "directory",
        Kind::File { .. } => "file",
        Kind::Symlink(_) => "symlink",
        Kind::Special(_) => "special file",
    }
}

/// Counts for the log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MergeStats {
    /// Paths the admin added that were carried over.
    pub added: usize,
    /// Paths the admin changed that were carried over.
    pub modified: usize,
    /// Paths the admin removed that were removed from the new /etc.
    pub removed: usize,
}

/// Would [`merge`] into a copy of `new` succeed? The conflicts, found without writing.
pub fn check(orig: &Path, modified: &Path, new: &Path) -> Result<()> {
    check_scanned(&fstree::scan(orig)?, &fstree::scan(modified)?, new)
}

/// [`check`] with the pristine and live scans already made.
pub fn check_scanned(
    o: &BTreeMap<PathBuf, FsEntry>,
    m: &BTreeMap<PathBuf, FsEntry>,
    new: &Path,
) -> Result<()> {
    conflicts(plan(diff(o, m), m, new)?)
}

/// [`check_scanned`] against the pristine /etc (`usr/etc`) of the deployment at `root`,
/// resolved beneath it: a `usr` or `usr/etc` that is not a real directory is refused with an
/// error naming it (through a symlink, the check would read a directory of the host).
pub fn check_deployment(
    o: &BTreeMap<PathBuf, FsEntry>,
    m: &BTreeMap<PathBuf, FsEntry>,
    root: &Path,
) -> Result<()> {
    let new = fstree::dir_in(&Root::open(root)?, Path::new("usr/etc"))?;
    conflicts(plan_in(diff(o, m), m, new.as_ref())?)
}

fn conflicts(p: Plan) -> Result<()> {
    if !p.conflicts.is_empty() {
        return Err(Error::EtcConflict(p.conflicts));
    }
    Ok(())
}

/// Three-way merge: `orig` is the running image's pristine /etc, `modified` the live /etc,
/// `new` the new deployment's /etc (a fresh copy of its own pristine /etc), changed in place.
pub fn merge(orig: &Path, modified: &Path, new: &Path) -> Result<MergeStats> {
    let o = fstree::scan(orig)?;
    let m = fstree::scan(modified)?;
    merge_scanned(&o, &m, modified, new)
}

/// [`merge`] with the pristine (`o`) and live (`m`, of the tree at `modified`) scans already
/// made, so that a caller can make them while it copies the new /etc.
pub fn merge_scanned(
    o: &BTreeMap<PathBuf, FsEntry>,
    m: &BTreeMap<PathBuf, FsEntry>,
    modified: &Path,
    new: &Path,
) -> Result<MergeStats> {
    let src = Root::open(modified)?;
    let dst = Root::open(new)?;
    let p = plan_in(diff(o, m), m, Some(&dst))?;
    if !p.conflicts.is_empty() {
        return Err(Error::EtcConflict(p.conflicts));
    }
    let d = p.diff;
    // Removed only where the path is, beneath the new /etc: if the new image made a parent a
    // symlink, the admin's removal has nothing to remove there (and must not follow it).
    for r in &d.removed {
        if dst.stat(r)?.is_some() {
            dst.remove(r)?;
        }
    }
    let mut changed: Vec<&PathBuf> = d.modified.iter().chain(&d.added).collect();
    changed.sort();
    for rel in changed {
        let Some(local) = m.get(rel) else { continue };
        if matches!(local.kind, Kind::Special(_)) {
            continue;
        }
        // Missing parents take the local directories' metadata.
        let mut missing = Vec::new();
        let mut a = rel.parent();
        while let Some(x) = a {
            if x.as_os_str().is_empty() || dst.stat(x)?.is_some() {
                break;
            }
            missing.push(x);
            a = x.parent();
        }
        for x in missing.into_iter().rev() {
            make_dir_like(&src, &dst, x)?;
        }
        let existing = dst.stat(rel)?;
        match (existing, local.is_dir()) {
            // Directories are made one level at a time: their children are in the list too.
            (Some(ociboot_fs::beneath::Kind::Dir), true) => {
                fstree::copy_meta_in(&src, rel, &dst, rel)?
            }
            (Some(_), true) => {
                dst.remove(rel)?;
                make_dir_like(&src, &dst, rel)?;
            }
            (None, true) => make_dir_like(&src, &dst, rel)?,
            (_, false) => {
                dst.remove(rel)?;
                fstree::copy_in(&src, rel, &dst, rel)?;
            }
        }
    }
    Ok(MergeStats {
        added: d.added.len(),
        modified: d.modified.len(),
        removed: d.removed.len(),
    })
}

/// Create the directory `rel` beneath `dst` with the owner, mode and xattrs of the admin's.
fn make_dir_like(src: &Root, dst: &Root, rel: &Path) -> Result<()> {
    dst.create_dir(rel, 0o700)?;
    fstree::copy_meta_in(src, rel, dst, rel)
}

#[cfg(test)]
mod tests;
