//! The lints that look at a few known paths of the image. Each returns `Ok(None)` when all is
//! well, `Ok(Some(problem))` for a finding, and an error only when the tree cannot be read.

use std::path::{Component, Path, PathBuf};

use super::bootable::{self, NotBootable};
use super::paths::lookup;
use super::{Items, Problem};
use crate::error::{Ctx, Error, Result};
use crate::kargs::{self, KARGS_D};

fn finding(r: std::result::Result<impl Sized, NotBootable>) -> Result<Option<Problem>> {
    match r {
        Ok(_) => Ok(None),
        Err(NotBootable::Io(e)) => Err(e),
        Err(e) => Ok(Some(Problem::new(e.to_string()))),
    }
}

/// `kernel`: exactly one kernel, with its initramfs.
pub(super) fn kernel(root: &Path) -> Result<Option<Problem>> {
    finding(bootable::one_kernel(root))
}

/// `static-ociboot`: /usr/bin/ociboot is a static ELF executable.
pub(super) fn static_ociboot(root: &Path) -> Result<Option<Problem>> {
    finding(bootable::static_init(root))
}

/// `bootc-kargs`: every kargs.d file parses, with the parser deployments use.
pub(super) fn bootc_kargs(root: &Path) -> Result<Option<Problem>> {
    let Some(dir) = lookup(root, Path::new(KARGS_D), true)? else {
        return Ok(None);
    };
    if !dir.meta.is_dir() {
        return Ok(Some(Problem::new(format!("/{KARGS_D} is not a directory"))));
    }
    let files = kargs::kargs_d_files(&dir.path)?;
    let mut bad = Items::default();
    for f in &files {
        let rel = Path::new(KARGS_D).join(f.file_name().unwrap_or_default());
        let shown = rel.display();
        match lookup(root, &rel, true)? {
            None => bad.push(|| format!("/{shown}: a symlink to nothing in the image")),
            Some(found) if !found.meta.is_file() => {
                bad.push(|| format!("/{shown}: not a regular file"))
            }
            Some(found) => match kargs::kargs_file(&found.path, std::env::consts::ARCH) {
                Ok(_) => {}
                Err(Error::Invalid(msg)) => bad.push(|| msg),
                Err(e) => return Err(e),
            },
        }
    }
    Ok((!bad.is_empty()).then(|| {
        Problem::with_items(
            format!(
                "{} of {} files in /{KARGS_D} are not valid (kargs = [\"…\"], optional \
                 match-architectures = [\"…\"], no other key)",
                bad.total,
                files.len()
            ),
            bad,
        )
    }))
}

/// `etc-usretc`: not both /etc and /usr/etc.
pub(super) fn etc_usretc(root: &Path) -> Result<Option<Problem>> {
    let etc = lookup(root, Path::new("etc"), true)?;
    let usr_etc = lookup(root, Path::new("usr/etc"), true)?;
    Ok((etc.is_some() && usr_etc.is_some()).then(|| {
        Problem::new(
            "/etc and /usr/etc both exist: a deployment keeps the image's /etc at /usr/etc, so \
             the image's configuration belongs in /etc only",
        )
    }))
}

/// `os-release`: /usr/lib/os-release is a file.
pub(super) fn os_release(root: &Path) -> Result<Option<Problem>> {
    Ok(match lookup(root, Path::new("usr/lib/os-release"), true)? {
        Some(f) if f.meta.is_file() => None,
        Some(_) => Some(Problem::new("/usr/lib/os-release is not a regular file")),
        None => Some(Problem::new(
            "/usr/lib/os-release is missing (/etc/os-release alone is not enough: /etc belongs \
             to the machine, /usr to the image)",
        )),
    })
}

/// `var-run`: /var/run and /var/lock are symlinks to /run and /run/lock, if present.
pub(super) fn var_run(root: &Path) -> Result<Option<Problem>> {
    let mut bad = Items::default();
    for (rel, want) in [("var/run", "/run"), ("var/lock", "/run/lock")] {
        let Some(f) = lookup(root, Path::new(rel), false)? else {
            continue;
        };
        let ft = f.meta.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(&f.path).at("readlink", &f.path)?;
            if lexical_target(Path::new("/var"), &target) != Path::new(want) {
                bad.push(|| format!("/{rel} -> {}: not a symlink to {want}", target.display()));
            }
        } else {
            let kind = if ft.is_dir() {
                "a directory"
            } else {
                "not a symlink"
            };
            bad.push(|| format!("/{rel} is {kind}; make it a symlink to {want}"));
        }
    }
    Ok((!bad.is_empty()).then(|| {
        Problem::with_items(
            "/var/run and /var/lock must be symlinks to /run and /run/lock (../run, ../run/lock)",
            bad,
        )
    }))
}

/// Where a symlink in `dir` pointing at `target` points, by the path's text alone.
fn lexical_target(dir: &Path, target: &Path) -> PathBuf {
    let mut out = if target.is_absolute() {
        PathBuf::from("/")
    } else {
        dir.to_path_buf()
    };
    for c in target.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}
