//! Root set-up at boot: make the deployment named on the kernel command line the root.
//!
//! The image's own kernel and initramfs mount the physical root and run `init=`, which points
//! at the deployment's own (static) `usr/bin/ociboot` on that filesystem. As PID 1 it then:
//!
//! 1. finds `ociboot=<stateroot>/<id>` and the deployment directory `D`;
//! 2. bind-mounts `D` on itself (so it can become `/`) and `D/etc` on itself, the stateroot's
//!    `var` on `D/var` (creating the state directories `/home`, `/root`, … point into; see
//!    [`crate::toplevel`]), the physical root (without its submounts) on `D/sysroot`, and a
//!    fresh tmpfs on `D/tmp`;
//! 3. moves `/dev`, `/proc`, `/sys` and `/run` (mounted by the initramfs) under `D`;
//! 4. remounts `D` read-only: the image is read-only everywhere but its own writable `/etc`
//!    and the mounts above (its files are hardlinks to store objects shared by every
//!    deployment; a write through one would change them all);
//! 5. makes `D` the root (`MS_MOVE` onto `/`, `chroot`) and executes the image's `/sbin/init`.
//!
//! `/boot` is mounted by the system itself (the installer writes its line to the
//! deployment's /etc/fstab).

use std::path::{Path, PathBuf};

use rustix::mount::{self, MountFlags, MountPropagationFlags};

use crate::error::{Ctx, Error, Result};

/// The API filesystems the initramfs leaves mounted on the physical root.
const API_MOUNTS: &[&str] = &["dev", "proc", "sys", "run"];

/// What [`prepare_root`] did.
#[derive(Debug)]
pub struct Prepared {
    /// `<stateroot>/<id>`
    pub key: String,
    /// The deployment directory, now a mount point ready to become `/`.
    pub root: PathBuf,
}

/// The deployment named by `ociboot=` in `cmdline`, under the physical root `physical`.
pub fn deployment_dir(physical: &Path, cmdline: &str) -> Result<(String, PathBuf)> {
    let key = crate::cmdline::deployment_key(cmdline).ok_or_else(|| {
        Error::State("no ociboot=STATEROOT/ID on the kernel command line".to_string())
    })?;
    let (sr, id) = crate::sysroot::split_key(key)
        .ok_or_else(|| Error::Invalid(format!("bad ociboot={key} on the kernel command line")))?;
    let dir = physical
        .join("ociboot/deploy")
        .join(sr)
        .join("deploy")
        .join(id);
    if !dir.join("usr").is_dir() || !dir.join("etc").is_dir() {
        return Err(Error::State(format!(
            "deployment {key} named by ociboot= on the kernel command line is missing or \
             incomplete: {} has no usr/ and etc/",
            dir.display()
        )));
    }
    Ok((key.to_string(), dir))
}

fn bind(src: &Path, dst: &Path) -> Result<()> {
    Ok(mount::mount_bind(src, dst)
        .ctx(|| format!("bind-mounting {} on {}", src.display(), dst.display()))?)
}

/// Steps 1–4 above, with the physical root at `physical` (`/` at boot). Nothing is undone on
/// error: at boot the caller stops the machine; elsewhere the mounts die with the namespace.
pub fn prepare_root(physical: &Path, cmdline: &str) -> Result<Prepared> {
    let (key, d) = deployment_dir(physical, cmdline)?;
    let stateroot = key.split('/').next().unwrap_or_default();
    let var = physical.join("ociboot/deploy").join(stateroot).join("var");
    // Our mounts must not propagate back into a shared parent (systemd makes / shared later).
    if physical == Path::new("/") || crate::sysroot::is_mount_point(physical) {
        mount::mount_change(physical, MountPropagationFlags::PRIVATE)
            .ctx(|| format!("making {} private", physical.display()))?;
    }
    for sub in ["var", "sysroot"] {
        let p = d.join(sub);
        if !p.is_dir() {
            return Err(Error::State(format!("{} is missing", p.display())));
        }
    }
    bind(&d, &d)?;
    let etc = d.join("etc");
    bind(&etc, &etc)?;
    std::fs::create_dir_all(&var).at("creating", &var)?;
    crate::toplevel::ensure_state_dirs(&var)?;
    bind(&var, &d.join("var"))?;
    bind(physical, &d.join("sysroot"))?;
    let tmp = d.join("tmp");
    std::fs::create_dir_all(&tmp).at("creating", &tmp)?;
    mount::mount(
        "tmpfs",
        &tmp,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        c"mode=1777",
    )
    .ctx(|| format!("mounting a tmpfs on {}", tmp.display()))?;
    for api in API_MOUNTS {
        let src = physical.join(api);
        if !crate::sysroot::is_mount_point(&src) {
            continue;
        }
        let dst = d.join(api);
        std::fs::create_dir_all(&dst).at("creating", &dst)?;
        mount::mount_move(&src, &dst)
            .ctx(|| format!("moving {} to {}", src.display(), dst.display()))?;
    }
    // Last: the submounts above keep their own (writable) flags.
    mount::mount_remount(&d, MountFlags::BIND | MountFlags::RDONLY, "")
        .ctx(|| format!("remounting {} read-only", d.display()))?;
    Ok(Prepared { key, root: d })
}

/// Step 5: make the prepared deployment `/` of this process (and, as PID 1, of the system).
pub fn switch_root(p: &Prepared) -> Result<()> {
    rustix::process::chdir(&p.root).at("chdir", &p.root)?;
    mount::mount_move(".", "/").ctx(|| format!("moving {} onto /", p.root.display()))?;
    rustix::process::chroot(".").ctx(|| "chroot into the deployment".to_string())?;
    rustix::process::chdir("/").ctx(|| "chdir /".to_string())?;
    Ok(())
}
