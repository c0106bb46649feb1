//! The kernels boot entries point to: found in a deployment (beneath its root), copied into
//! `<boot>/ociboot/<stateroot>-<hash>/` once per distinct content, and collected when no entry
//! uses them.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Entry;
use crate::error::{Ctx, Error, Result};

/// A kernel and initramfs found in a deployment, and where they live in /boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The kernel version (its directory under `usr/lib/modules`).
    pub kver: String,
    /// Paths relative to the boot filesystem's root, as the entries name them.
    pub linux: String,
    /// The initramfs; `None` if the deployment has no `initramfs.img`.
    pub initrd: Option<String>,
    /// The kernel's directory under `<boot>/ociboot`: `<stateroot>-<hash of its content>`.
    pub dir: String,
}

/// Find `usr/lib/modules/<kver>/vmlinuz` (first kver in sorted order) in a deployment: the
/// kernel version and the paths of vmlinuz and initramfs.img, relative to `root`.
///
/// The deployment's content is the image's. Its kernel files are opened with
/// [`Root::open_in_root`](ociboot_fs::beneath::Root::open_in_root): a symlink is resolved
/// inside the image, as in a chroot, never on the host (whose files would otherwise be copied
/// to the boot partition), and the target must be a regular file. The kernel version must be
/// a plain name: it becomes part of file names and of the boot entry.
pub fn find_kernel(root: &Path) -> Result<(String, PathBuf, Option<PathBuf>)> {
    use ociboot_fs::beneath::Root;
    let r = Root::open(root)?;
    let modules = Path::new("usr/lib/modules");
    let mut found = None;
    for name in r.list(modules)? {
        let vmlinuz = modules.join(&name).join("vmlinuz");
        if r.stat(&vmlinuz)?.is_none() {
            continue;
        }
        let kver = name
            .to_str()
            .filter(|k| plain_kver(k))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: the kernel version {:?} is not a plain name (letters, digits, \
                     `.`, `_`, `+`, `~`, `-`; at most 128 bytes)",
                    root.join(modules).display(),
                    name
                ))
            })?
            .to_string();
        r.open_in_root(&vmlinuz)?;
        if let Some((first, _)) = &found {
            // Which one boots would be a guess; `container lint` refuses this too.
            return Err(Error::Invalid(format!(
                "{}: the image has several kernels ({first}, {kver}): one is needed",
                root.join(modules).display()
            )));
        }
        found = Some((kver, vmlinuz));
    }
    let (kver, vmlinuz) = found.ok_or_else(|| {
        Error::Invalid(format!(
            "no kernel: {}/*/vmlinuz is missing",
            root.join(modules).display()
        ))
    })?;
    let initrd = modules.join(&kver).join("initramfs.img");
    let initrd = match r.stat(&initrd)? {
        None => None,
        Some(_) => {
            r.open_in_root(&initrd)?;
            Some(initrd)
        }
    };
    Ok((kver, vmlinuz, initrd))
}

/// A kernel version that can go into file names and a boot entry as it is.
fn plain_kver(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 128
        && !k.starts_with('.')
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'~' | b'-'))
}

/// The identity of the kernel [`find_kernel`] picks, from the image's tree: the store object
/// ids (content digests with metadata) of its vmlinuz and initramfs.img, hashed. None if the
/// tree has no kernel. Saves reading and hashing tens of megabytes on every stage.
pub fn kernel_sum(tree: &ociboot_store::Tree) -> Option<String> {
    use ociboot_store::Content;
    let Content::Dir(kvers) = &tree.lookup(b"usr/lib/modules")?.content else {
        return None;
    };
    let node = |k: &[u8], name: &str| {
        let mut p = b"usr/lib/modules/".to_vec();
        p.extend_from_slice(k);
        p.push(b'/');
        p.extend_from_slice(name.as_bytes());
        tree.lookup(&p)
    };
    let file = |k: &[u8], name: &str| match &node(k, name)?.content {
        Content::File { object, .. } => Some(*object),
        _ => None,
    };
    // BTreeMap order is byte order, the order find_kernel sorts names in; like find_kernel,
    // only real directories of usr/lib/modules count. The sum names the files only when
    // they are regular files of the tree: anything else (a symlink) is hashed from the
    // files find_kernel opens instead.
    let kver = kvers
        .iter()
        .find(|(k, n)| n.is_dir() && node(k, "vmlinuz").is_some())
        .map(|(k, _)| k)?;
    file(kver, "vmlinuz")?;
    if node(kver, "initramfs.img").is_some() {
        file(kver, "initramfs.img")?;
    }
    let mut h = Sha256::new();
    h.update(b"ociboot kernel objects\0");
    for name in ["vmlinuz", "initramfs.img"] {
        if let Some(object) = file(kver, name) {
            h.update(name.as_bytes());
            h.update(object.hex().as_bytes());
        }
    }
    Some(ociboot_oci::digest::hex(&h.finalize()))
}

/// Copy the deployment's kernel into /boot once per distinct content (`sum`, from
/// [`kernel_sum`], or else hashed from the files).
pub fn install_kernel(
    boot: &Path,
    stateroot: &str,
    root: &Path,
    sum: Option<&str>,
) -> Result<Kernel> {
    let (kver, vmlinuz, initramfs) = find_kernel(root)?;
    let bootcsum = match sum {
        Some(s) => s.to_string(),
        None => {
            let mut h = Sha256::new();
            let r = ociboot_fs::beneath::Root::open(root)?;
            for p in std::iter::once(&vmlinuz).chain(initramfs.as_ref()) {
                let mut data = Vec::new();
                r.open_in_root(p)?
                    .read_to_end(&mut data)
                    .at("reading", root.join(p))?;
                h.update((data.len() as u64).to_le_bytes());
                h.update(&data);
            }
            ociboot_oci::digest::hex(&h.finalize())
        }
    };
    let name = format!("{stateroot}-{bootcsum}");
    let rel = format!("ociboot/{name}");
    let dest = boot.join(&rel);
    let kernel = Kernel {
        linux: format!("/{rel}/vmlinuz-{kver}"),
        initrd: initramfs
            .as_ref()
            .map(|_| format!("/{rel}/initramfs-{kver}.img")),
        dir: name,
        kver: kver.clone(),
    };
    if dest.is_dir() {
        return Ok(kernel);
    }
    let parent = boot.join("ociboot");
    std::fs::create_dir_all(&parent).at("creating", &parent)?;
    let tmp = parent.join(format!(".tmp-{}-{bootcsum}", std::process::id()));
    ociboot_fs::remove_any(&tmp)?;
    std::fs::create_dir(&tmp).at("creating", &tmp)?;
    let mut files = vec![(vmlinuz, format!("vmlinuz-{kver}"))];
    if let Some(i) = initramfs {
        files.push((i, format!("initramfs-{kver}.img")));
    }
    let r = ociboot_fs::beneath::Root::open(root)?;
    for (src, n) in files {
        let d = tmp.join(&n);
        let mut from = r.open_in_root(&src)?;
        let mut to = std::fs::File::create(&d).at("creating", &d)?;
        std::io::copy(&mut from, &mut to)
            .ctx(|| format!("copying {} to {}", root.join(&src).display(), d.display()))?;
        to.sync_all().at("fsync", &d)?;
    }
    ociboot_fs::fsync_dir(&tmp)?;
    std::fs::rename(&tmp, &dest)
        .ctx(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    ociboot_fs::fsync_dir(&parent)?;
    Ok(kernel)
}

/// Kernel directories (names under boot/ociboot) that no entry uses, and leftovers.
pub fn unused_kernel_dirs(boot: &Path, entries: &[Entry]) -> Result<Vec<PathBuf>> {
    let parent = boot.join("ociboot");
    let rd = match std::fs::read_dir(&parent) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Ok(Err(e).at("reading", &parent)?),
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        let used = entries
            .iter()
            .any(|x| x.linux.starts_with(&format!("/ociboot/{n}/")));
        if !used {
            out.push(e.path());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_with_several_kernels_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("usr/lib/modules");
        for k in ["6.1.0-1", "6.2.0-1"] {
            std::fs::create_dir_all(m.join(k)).unwrap();
            std::fs::write(m.join(k).join("vmlinuz"), "k").unwrap();
        }
        let e = find_kernel(d.path()).unwrap_err().to_string();
        assert!(e.contains("several kernels (6.1.0-1, 6.2.0-1)"), "{e}");
        std::fs::remove_file(m.join("6.2.0-1/vmlinuz")).unwrap();
        assert_eq!(
            find_kernel(d.path()).unwrap().0,
            "6.1.0-1",
            "modules only: no kernel"
        );
    }
}
