//! Can an image boot with ociboot? It needs exactly one kernel, `usr/lib/modules/<kver>/vmlinuz`,
//! with its `initramfs.img` beside it, and a statically linked `usr/bin/ociboot`, which the
//! initramfs starts as init= to set up the deployment as the root. The `kernel` and
//! `static-ociboot` lints and `install to-disk` all ask these questions here.

use std::path::{Path, PathBuf};

use super::elf::{self, ElfError, ElfLinking};
use super::paths::{display_rel, lookup};
use crate::sysroot::INIT_IN_IMAGE;

/// Where kernels live in an image, one directory per version.
pub const MODULES_DIR: &str = "usr/lib/modules";

/// What makes an image bootable, as host paths under its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootable {
    /// The image's one kernel and its initramfs.
    pub kernel: KernelFiles,
    /// The static ociboot binary (`usr/bin/ociboot`).
    pub init: PathBuf,
}

/// The image's one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFiles {
    /// The kernel version: the name of its directory under `usr/lib/modules`.
    pub kver: String,
    /// The host path of the kernel, `usr/lib/modules/<kver>/vmlinuz` under the root.
    pub vmlinuz: PathBuf,
    /// The host path of the initramfs beside it, `initramfs.img`.
    pub initramfs: PathBuf,
}

/// Why an image cannot boot. Messages name the path in the image.
#[derive(Debug, thiserror::Error)]
pub enum NotBootable {
    /// No `usr/lib/modules/<kver>/vmlinuz` regular file (or no `usr/lib/modules` directory).
    #[error("no kernel: no /{MODULES_DIR}/<kver>/vmlinuz")]
    NoKernel,
    /// More than one kernel version has a `vmlinuz`; holds the versions, in sorted order.
    #[error(
        "{} kernels: {}; an image has exactly one",
        .0.len(),
        .0.iter().map(|k| format!("/{MODULES_DIR}/{k}/vmlinuz")).collect::<Vec<_>>().join(", ")
    )]
    SeveralKernels(Vec<String>),
    /// The kernel of this version has no `initramfs.img` regular file beside it.
    #[error(
        "/{MODULES_DIR}/{0}/initramfs.img is missing: the kernel boots with the initramfs beside \
         it (make it in the Containerfile, e.g. with dracut or update-initramfs)"
    )]
    NoInitramfs(String),
    /// The image has no `usr/bin/ociboot`.
    #[error("the image has no /{INIT_IN_IMAGE} (a statically linked ociboot): it sets up the root at boot")]
    NoInit,
    /// `usr/bin/ociboot` is a symlink, not the binary itself.
    #[error("/{INIT_IN_IMAGE} is a symlink; it must be the static ociboot binary itself (the kernel starts it as init=)")]
    InitSymlink,
    /// `usr/bin/ociboot` is neither a symlink nor a regular file (a directory, say).
    #[error("/{INIT_IN_IMAGE} is not a regular file")]
    InitNotFile,
    /// `usr/bin/ociboot` is a dynamically linked ELF.
    #[error(
        "/{INIT_IN_IMAGE} is dynamically linked; it runs before any library is reachable, so \
         build it with RUSTFLAGS='-C target-feature=+crt-static'"
    )]
    InitDynamic,
    /// `usr/bin/ociboot` could not be read or is not a valid ELF file.
    #[error("/{INIT_IN_IMAGE}: {0}")]
    InitNotElf(#[source] ElfError),
    /// Reading the image failed: an I/O error, or too many symlinks in a path.
    #[error(transparent)]
    Io(#[from] crate::Error),
}

/// Check that the image at `root` can boot with ociboot: one kernel with its initramfs, and a
/// static `usr/bin/ociboot`. The first problem found is the error.
pub fn check_bootable(root: &Path) -> Result<Bootable, NotBootable> {
    let kernel = one_kernel(root)?;
    let init = static_init(root)?;
    Ok(Bootable { kernel, init })
}

/// The image's one kernel and its initramfs. Versions are the directories of
/// `usr/lib/modules` with a `vmlinuz` (directories of modules only are not kernels).
pub fn one_kernel(root: &Path) -> Result<KernelFiles, NotBootable> {
    let Some(modules) = lookup(root, Path::new(MODULES_DIR), true)? else {
        return Err(NotBootable::NoKernel);
    };
    if !modules.meta.is_dir() {
        return Err(NotBootable::NoKernel);
    }
    let mut names = Vec::new();
    for e in std::fs::read_dir(&modules.path).map_err(|e| io(&modules.path, e))? {
        names.push(e.map_err(|e| io(&modules.path, e))?.file_name());
    }
    names.sort();
    let mut kernels = Vec::new();
    for n in names {
        let rel = Path::new(MODULES_DIR).join(&n);
        if let Some(v) = lookup(root, &rel.join("vmlinuz"), true)? {
            if v.meta.is_file() {
                kernels.push((n, v.path));
            }
        }
    }
    let (name, vmlinuz) = match kernels.len() {
        0 => return Err(NotBootable::NoKernel),
        1 => kernels.remove(0),
        _ => {
            let names = kernels.iter().map(|(n, _)| kver(n)).collect();
            return Err(NotBootable::SeveralKernels(names));
        }
    };
    let kv = kver(&name);
    let initramfs = Path::new(MODULES_DIR).join(&name).join("initramfs.img");
    match lookup(root, &initramfs, true)? {
        Some(f) if f.meta.is_file() => Ok(KernelFiles {
            kver: kv,
            vmlinuz,
            initramfs: f.path,
        }),
        _ => Err(NotBootable::NoInitramfs(kv)),
    }
}

/// `usr/bin/ociboot`, checked to be a regular file (not a symlink) and a static ELF.
pub fn static_init(root: &Path) -> Result<PathBuf, NotBootable> {
    let Some(f) = lookup(root, Path::new(INIT_IN_IMAGE), false)? else {
        return Err(NotBootable::NoInit);
    };
    if f.meta.file_type().is_symlink() {
        return Err(NotBootable::InitSymlink);
    }
    if !f.meta.is_file() {
        return Err(NotBootable::InitNotFile);
    }
    match elf::elf_linking(&f.path).map_err(NotBootable::InitNotElf)? {
        ElfLinking::Static => Ok(f.path),
        ElfLinking::Dynamic => Err(NotBootable::InitDynamic),
    }
}

/// A kernel version as shown (escaped if not UTF-8).
fn kver(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    display_rel(name.as_bytes())
        .trim_start_matches('/')
        .to_string()
}

fn io(path: &Path, source: std::io::Error) -> NotBootable {
    NotBootable::Io(ociboot_fs::IoError::at("reading", path, source).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::elf::tests::fake_elf;

    fn kernel(root: &Path, kver: &str, initramfs: bool) {
        let d = root.join(MODULES_DIR).join(kver);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("vmlinuz"), b"kernel").unwrap();
        if initramfs {
            std::fs::write(d.join("initramfs.img"), b"initramfs").unwrap();
        }
    }

    fn init(root: &Path, data: &[u8]) {
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join(INIT_IN_IMAGE), data).unwrap();
    }

    #[test]
    fn one_kernel_with_initramfs() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        assert!(matches!(one_kernel(r), Err(NotBootable::NoKernel)));
        // Modules without a kernel do not count.
        std::fs::create_dir_all(r.join(MODULES_DIR).join("5.0-extra/kernel")).unwrap();
        assert!(matches!(one_kernel(r), Err(NotBootable::NoKernel)));
        kernel(r, "6.1.0-1-amd64", false);
        let e = one_kernel(r).unwrap_err();
        assert!(matches!(e, NotBootable::NoInitramfs(_)), "{e}");
        assert!(
            e.to_string()
                .contains("/usr/lib/modules/6.1.0-1-amd64/initramfs.img is missing"),
            "{e}"
        );
        kernel(r, "6.1.0-1-amd64", true);
        let k = one_kernel(r).unwrap();
        assert_eq!(k.kver, "6.1.0-1-amd64");
        assert_eq!(
            k.initramfs,
            r.join(MODULES_DIR).join("6.1.0-1-amd64/initramfs.img")
        );
        kernel(r, "6.2.0-1-amd64", true);
        let e = one_kernel(r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "2 kernels: /usr/lib/modules/6.1.0-1-amd64/vmlinuz, \
             /usr/lib/modules/6.2.0-1-amd64/vmlinuz; an image has exactly one"
        );
    }

    #[test]
    fn static_init_binary() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        kernel(r, "6.1", true);
        let e = check_bootable(r).unwrap_err();
        assert!(e.to_string().contains("has no /usr/bin/ociboot"), "{e}");
        init(r, b"#!/bin/sh\n");
        assert!(matches!(static_init(r), Err(NotBootable::InitNotElf(_))));
        init(r, &fake_elf(&[1, 3]));
        assert!(matches!(static_init(r), Err(NotBootable::InitDynamic)));
        let dynamic = std::fs::read("/bin/true").unwrap();
        init(r, &dynamic);
        assert!(matches!(static_init(r), Err(NotBootable::InitDynamic)));
        init(r, &fake_elf(&[1]));
        let b = check_bootable(r).unwrap();
        assert_eq!(b.init, r.join(INIT_IN_IMAGE));
        assert_eq!(b.kernel.kver, "6.1");
        // A symlink, even to a static binary, is refused; so is a directory.
        std::fs::rename(r.join(INIT_IN_IMAGE), r.join("usr/bin/real")).unwrap();
        std::os::unix::fs::symlink("real", r.join(INIT_IN_IMAGE)).unwrap();
        assert!(matches!(static_init(r), Err(NotBootable::InitSymlink)));
        std::fs::remove_file(r.join(INIT_IN_IMAGE)).unwrap();
        std::fs::create_dir(r.join(INIT_IN_IMAGE)).unwrap();
        assert!(matches!(static_init(r), Err(NotBootable::InitNotFile)));
    }
}
