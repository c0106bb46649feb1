//! Drift: how the booted deployment's `/etc` differs from its image's pristine `/etc`
//! (`usr/etc`), and how the stateroot's `/var` differs from the image's `/var` that seeded it.
//!
//! Read-only: drift must never change a deployment, `/var` or the store. The image's `/var`
//! is unpacked into a scratch directory under the run directory, removed afterwards. Every
//! tree is read through a `Root`, never following a symlink.

use std::path::Path;

use ociboot_store::{Store, Tree};

use super::checkout::image_var;
use super::{Deployment, Sysroot};
use crate::error::{Ctx, Error, Result};
use crate::etcmerge::{self, EtcDiff};
use crate::fstree;

/// Which directory [`Sysroot::drift`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftKind {
    /// The booted deployment's `/etc` against its image's pristine `/etc` (`usr/etc`).
    Etc,
    /// The stateroot's shared `/var` against the image's `/var`, which seeded it.
    Var,
}

/// The paths of a directory that changed against the image.
#[derive(Debug, Clone)]
pub struct Drift {
    /// `/etc` or `/var`: what the paths of `diff` are relative to.
    pub base: &'static str,
    /// The paths added, modified and removed since the image, relative to `base`.
    pub diff: EtcDiff,
}

impl Sysroot {
    /// How the booted deployment's `/etc` or the stateroot's `/var` differs from its image.
    pub fn drift(&self, kind: DriftKind) -> Result<Drift> {
        let state = self.state()?;
        let booted = state
            .booted()
            .ok_or_else(|| Error::State("diff needs a booted ociboot deployment".into()))?;
        Ok(match kind {
            DriftKind::Etc => Drift {
                base: "/etc",
                diff: etc_drift(booted)?,
            },
            DriftKind::Var => Drift {
                base: "/var",
                diff: self.var_drift(booted)?,
            },
        })
    }

    /// How the stateroot's /var differs from the image's /var (which seeded it). The image's
    /// /var is unpacked to a scratch directory under the run directory to compare.
    pub fn var_drift(&self, d: &Deployment) -> Result<EtcDiff> {
        let store = Store::open_read(&self.root, &|_| {})?;
        let mut tree = store.tree(&d.origin.manifest_digest)?;
        let var = image_var(&mut tree)?;
        std::fs::create_dir_all(&self.run).at("creating", &self.run)?;
        let scratch = self.run.join(format!("var-image-{}", std::process::id()));
        ociboot_fs::remove_any(&scratch)?;
        let res = (|| {
            if var.is_dir() {
                ociboot_store::unpack(&store, &Tree { root: var }, &scratch)?;
            }
            let image = fstree::scan(&scratch)?;
            let live = fstree::scan(&self.var_dir(&d.stateroot))?;
            Ok(etcmerge::diff(&image, &live))
        })();
        ociboot_fs::remove_any(&scratch)?;
        res
    }
}

/// How a deployment's `etc` differs from its pristine `usr/etc`, both read beneath the
/// deployment's root: a `usr`, `usr/etc` or `etc` that is not a real directory (a symlink an
/// image planted) is an error naming it, never read through.
pub fn etc_drift(d: &Deployment) -> Result<EtcDiff> {
    let root = ociboot_fs::beneath::Root::open(&d.root)?;
    let o = fstree::scan_in(&root, Path::new("usr/etc"))?;
    let m = fstree::scan_in(&root, Path::new("etc"))?;
    Ok(etcmerge::diff(&o, &m))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::fake_sysroot;
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn etc_drift_lists_local_changes() {
        let (_d, s) = fake_sysroot(&["a.0"]);
        let d = s.deployment("default/a.0").unwrap();
        for (p, t) in [
            ("usr/etc/kept", "1"),
            ("usr/etc/changed", "1"),
            ("usr/etc/gone", "1"),
        ] {
            std::fs::write(d.root.join(p), t).unwrap();
        }
        for (p, t) in [("etc/kept", "1"), ("etc/changed", "2"), ("etc/new", "1")] {
            std::fs::write(d.root.join(p), t).unwrap();
        }
        let diff = etc_drift(&d).unwrap();
        assert_eq!(diff.modified, [PathBuf::from("changed")]);
        assert_eq!(diff.added, [PathBuf::from("new")]);
        assert_eq!(diff.removed, [PathBuf::from("gone")]);
    }
}
