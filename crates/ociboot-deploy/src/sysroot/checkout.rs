//! An image in the store checked out as a new deployment directory: files hardlinked from the
//! store, the image's /etc kept pristine at `usr/etc` (and copied to a writable `etc` when
//! asked), the stateroot's /var seeded from the image's if it is empty; and the origin that
//! describes the result.
//!
//! A checkout is written under `<id>.partial`, synced, and renamed: it must never leave a
//! directory under its final name that is not complete, and never touch an existing
//! deployment, entry or the staged state.

use std::path::PathBuf;

use ociboot_oci::{ImageReference, Sha256Digest};
use ociboot_store::{Content, Store, Tree, UnpackMode};

use super::Sysroot;
use crate::bls;
use crate::error::{Ctx, Error, Result};
use crate::fstree;
use crate::origin::Origin;

/// A deployment directory just checked out, not yet described by an origin.
#[derive(Debug, Clone)]
pub(super) struct Checkout {
    pub stateroot: String,
    pub id: String,
    pub serial: u32,
    /// The image in the store.
    pub digest: Sha256Digest,
    /// The deployment directory (under its final name).
    pub root: PathBuf,
    /// The identity of its kernel ([`bls::kernel_sum`]), if the image has one.
    pub kernel_sum: Option<String>,
}

/// What an origin records beyond the checkout and the image's own metadata.
pub(super) struct OriginSpec {
    /// The image updates come from.
    pub image: ImageReference,
    /// The whole command line except `ociboot=`.
    pub kargs: Vec<String>,
    /// The part of `kargs` from the image's kargs.d.
    pub image_kargs: Vec<String>,
}

impl Checkout {
    /// The origin of this deployment (not written).
    pub fn origin(&self, store: &Store, spec: OriginSpec) -> Result<Origin> {
        let rec = store.image_record(&self.digest)?;
        Ok(Origin {
            image: spec.image,
            manifest_digest: self.digest,
            config_digest: rec.config_digest,
            version: rec.version,
            timestamp: rec.created,
            architecture: rec.architecture,
            stateroot: self.stateroot.clone(),
            id: self.id.clone(),
            serial: self.serial,
            kargs: spec.kargs,
            image_kargs: spec.image_kargs,
            pinned: false,
            cached_update: None,
            deployed_at: ociboot_fs::time::now(),
            kernel: None,
        })
    }
}

impl Sysroot {
    /// The next free `<first 16 hex digits of digest>.<serial>` in `stateroot`.
    fn next_id(&self, stateroot: &str, digest: &Sha256Digest) -> (String, u32) {
        let prefix = &digest.hex()[..16];
        let mut serial = 0;
        if let Ok(rd) = std::fs::read_dir(self.deploy_dir(stateroot)) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if let Some(rest) = n.strip_prefix(&format!("{prefix}.")) {
                    let num: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    if let Ok(s) = num.parse::<u32>() {
                        serial = serial.max(s + 1);
                    }
                }
            }
        }
        (format!("{prefix}.{serial}"), serial)
    }

    /// Check out an image as a new deployment: files hardlinked from the store, the image's
    /// /etc kept pristine at usr/etc and copied to a writable etc, /var seeded into the
    /// stateroot if it is new. Written under `<id>.partial` and renamed when complete.
    ///
    /// Without `with_etc` (staging) the writable etc is left out: finalize makes it from the
    /// /etc of that moment, and nothing boots a deployment before that.
    pub(super) fn checkout(
        &self,
        store: &Store,
        digest: &Sha256Digest,
        stateroot: &str,
        with_etc: bool,
    ) -> Result<Checkout> {
        let mut tree = store.tree(digest)?;
        let kernel_sum = bls::kernel_sum(&tree);
        let (id, serial) = self.next_id(stateroot, digest);
        let dir = self.deploy_dir(stateroot);
        // Root-only: an old deployment's setuid files stay out of unprivileged users' reach
        // (the booted one is reached through its mount at /, not through this directory).
        ociboot_fs::ensure_private_dir(&dir)?;
        let var = etc_to_usr_etc(&mut tree)?;
        let relocated = crate::toplevel::relocate(&mut tree)?;
        for note in &relocated.scratch_notes {
            tracing::warn!("{note}");
        }
        let partial = dir.join(format!("{id}.partial"));
        ociboot_fs::remove_any(&partial)?;
        ociboot_store::unpack_with(store, &tree, &partial, UnpackMode::Hardlink)?;
        if with_etc {
            fstree::copy_pristine_etc(&partial, "etc")?;
        }
        for sub in ["var", "sysroot", "tmp"] {
            std::fs::create_dir_all(partial.join(sub))
                .ctx(|| format!("creating {}/{sub}", partial.display()))?;
        }
        if !self.seed_var(store, stateroot, var, relocated.content)? {
            for note in &relocated.state_notes {
                tracing::warn!("{note}");
            }
        }
        ociboot_fs::syncfs(&dir)?;
        let root = dir.join(&id);
        std::fs::rename(&partial, &root)
            .ctx(|| format!("renaming {} to {}", partial.display(), root.display()))?;
        ociboot_fs::fsync_dir(&dir)?;
        Ok(Checkout {
            stateroot: stateroot.to_string(),
            id,
            serial,
            digest: *digest,
            root,
            kernel_sum,
        })
    }

    /// The stateroot's /var, seeded from the image's only when the stateroot has none yet,
    /// with what the image had in its state directories (`/root`, `/home`, …; see
    /// [`crate::toplevel`]). Whether it was seeded; either way the state directories exist.
    fn seed_var(
        &self,
        store: &Store,
        stateroot: &str,
        var: Option<ociboot_store::Node>,
        relocated: Vec<(&'static str, ociboot_store::Node)>,
    ) -> Result<bool> {
        let var_dir = self.var_dir(stateroot);
        let empty = std::fs::read_dir(&var_dir)
            .map(|mut r| r.next().is_none())
            .unwrap_or(true);
        let mut seeded = false;
        if empty {
            let mut root = var.unwrap_or_else(ociboot_store::Node::implicit_dir);
            if root.is_dir() {
                crate::toplevel::seed_into(&mut root, relocated);
                ociboot_fs::remove_any(&var_dir)?;
                ociboot_store::unpack(store, &Tree { root }, &var_dir)?;
                seeded = true;
            }
        }
        ociboot_fs::ensure_dir(&var_dir)?;
        crate::toplevel::ensure_state_dirs(&var_dir)?;
        Ok(seeded)
    }
}

/// Move the tree's /etc to /usr/etc; take its /var out and return it.
fn etc_to_usr_etc(tree: &mut Tree) -> Result<Option<ociboot_store::Node>> {
    let Content::Dir(top) = &mut tree.root.content else {
        return Err(Error::Invalid("image root is not a directory".into()));
    };
    let etc = top.remove(&b"etc"[..]);
    let var = top.remove(&b"var"[..]);
    // /etc is copied, merged and written to as root: through a symlink that would reach
    // whatever the image points it at, on the host.
    let not_dir = |name: &str, n: &ociboot_store::Node| {
        Error::Invalid(format!(
            "the image's {name} is a {}, not a directory: /etc must be a real directory",
            n.type_name()
        ))
    };
    if let Some(e) = etc.as_ref().filter(|e| !e.is_dir()) {
        return Err(not_dir("/etc", e));
    }
    if let Some(Content::Dir(u)) = top.get(&b"usr"[..]).map(|u| &u.content) {
        if let Some(e) = u.get(&b"etc"[..]).filter(|e| !e.is_dir()) {
            return Err(not_dir("/usr/etc", e));
        }
    }
    if let Some(etc) = etc {
        let usr = top
            .entry(b"usr".to_vec())
            .or_insert_with(ociboot_store::Node::implicit_dir);
        let Content::Dir(u) = &mut usr.content else {
            return Err(Error::Invalid("the image's /usr is not a directory".into()));
        };
        if u.contains_key(&b"etc"[..]) {
            return Err(Error::Invalid(
                "the image has both /etc and /usr/etc".into(),
            ));
        }
        u.insert(b"etc".to_vec(), etc);
    }
    Ok(var)
}

/// The image's /var out of its tree (an empty directory if it has none).
pub(super) fn image_var(tree: &mut Tree) -> Result<ociboot_store::Node> {
    let Content::Dir(top) = &mut tree.root.content else {
        return Err(Error::Invalid("image root is not a directory".into()));
    };
    Ok(top
        .remove(&b"var"[..])
        .unwrap_or_else(ociboot_store::Node::implicit_dir))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{digest, fake_sysroot};

    #[test]
    fn ids_take_the_next_serial_of_their_digest() {
        let (_d, s) = fake_sysroot(&[]);
        let dg = digest("x");
        let prefix = dg.hex()[..16].to_string();
        assert_eq!(s.next_id("default", &dg), (format!("{prefix}.0"), 0));
        let dir = s.deploy_dir("default");
        std::fs::create_dir_all(dir.join(format!("{prefix}.0"))).unwrap();
        std::fs::write(dir.join(format!("{prefix}.4.origin")), "").unwrap();
        std::fs::create_dir_all(dir.join(format!("{prefix}.7.partial"))).unwrap();
        std::fs::create_dir_all(dir.join("ffffffffffffffff.9")).unwrap();
        // A leftover .partial counts too: its name is never reused while it is there.
        assert_eq!(s.next_id("default", &dg), (format!("{prefix}.8"), 8));
        assert_eq!(s.next_id("other", &dg).1, 0);
    }
}
