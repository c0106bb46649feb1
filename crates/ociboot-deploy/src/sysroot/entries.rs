//! The boot entries of deployments: the entry a deployment gets (title, kernel in /boot,
//! `ociboot=` and `init=`), the kernel files it names, and writing the whole entry set in a
//! boot order through [`bls::write_entries`].
//!
//! This only decides what entries say and in which order; the write order that keeps a
//! complete default entry at every moment is bls.rs's. It must never remove a kernel (the GC
//! does, later) nor write an entry for a deployment whose directory is not complete.

use std::path::Path;

use super::{hit, Deployment, Sysroot, INIT_IN_IMAGE};
use crate::bls::{self, Entry};
use crate::error::Result;
use crate::origin::BootFiles;

impl From<bls::Kernel> for BootFiles {
    fn from(k: bls::Kernel) -> BootFiles {
        BootFiles {
            linux: k.linux,
            initrd: k.initrd,
        }
    }
}

impl Sysroot {
    /// The deployment's kernel in /boot: as recorded in its origin when it is still there
    /// (no need to read and hash it again), else installed now.
    pub(super) fn boot_files(&self, d: &Deployment) -> Result<BootFiles> {
        if let Some(k) = &d.origin.kernel {
            let present = |p: &str| self.boot.join(p.trim_start_matches('/')).is_file();
            if present(&k.linux) && k.initrd.as_deref().is_none_or(present) {
                return Ok(k.clone());
            }
        }
        let k = bls::install_kernel(&self.boot, &d.stateroot, &d.root, None)?;
        Ok(k.into())
    }

    fn entry_for(&self, d: &Deployment, index: usize) -> Result<Entry> {
        let k = self.boot_files(d)?;
        Ok(Entry {
            title: title(d, index),
            version: 0,
            linux: k.linux,
            initrd: k.initrd,
            options: options(d),
            counter: None,
        })
    }

    /// Write the entry set for these deployments, in this order. An entry keeps the counter
    /// its file has; a new default (when there is another entry to fall back to) gets fresh
    /// tries, see [`boot_tries`].
    pub(super) fn write_entries(&self, order: &[&Deployment], before_swap: &str) -> Result<()> {
        let current = bls::read_entries(&self.boot)?;
        let first = current.first().and_then(|e| e.deployment_key());
        let entries = order
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let key = d.key();
                let mut e = self.entry_for(d, i)?;
                e.counter = if i == 0 && first != Some(key.as_str()) && order.len() > 1 {
                    boot_tries(d).map(bls::Counter::fresh)
                } else {
                    current
                        .iter()
                        .find(|c| c.deployment_key() == Some(key.as_str()))
                        .and_then(|c| c.counter)
                };
                Ok(e)
            })
            .collect::<Result<Vec<_>>>()?;
        bls::write_entries(&self.boot, &entries, || hit(before_swap))
    }
}

/// Where an admin sets the tries of a new default entry (systemd's kernel-install reads the
/// same file): in the deployment's /etc, which the /etc merge carried over.
pub const TRIES_FILE: &str = "etc/kernel/tries";

/// The tries a new default entry for `d` gets: `/etc/kernel/tries` (default 3, 0 for none),
/// and none when the image cannot bless a good boot (see [`can_bless`]): its entry would run
/// out of tries on healthy boots and the loader would leave it.
pub fn boot_tries(d: &Deployment) -> Option<u32> {
    if !can_bless(&d.root) {
        return None;
    }
    let read = ociboot_fs::beneath::Root::open(&d.root).and_then(|r| r.read(TRIES_FILE, 64));
    let tries = match read {
        Ok(data) => {
            let text = String::from_utf8_lossy(&data);
            match text.trim().parse::<u32>() {
                Ok(n) if n <= bls::MAX_TRIES => n,
                _ => {
                    tracing::warn!(
                        "{}: {:?} is not a number of tries from 0 to {}: using 3",
                        d.root.join(TRIES_FILE).display(),
                        text.trim(),
                        bls::MAX_TRIES
                    );
                    3
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 3,
        Err(e) => {
            tracing::warn!("{e}: using 3 tries");
            3
        }
    };
    (tries > 0).then_some(tries)
}

/// The program that marks a counted boot good once `boot-complete.target` is reached (Debian
/// 12: package `systemd-boot`).
pub const BLESS_BOOT: &str = "usr/lib/systemd/systemd-bless-boot";

/// Whether the image in `root` carries systemd-bless-boot (a regular file, not a link out).
pub fn can_bless(root: &Path) -> bool {
    ociboot_fs::beneath::Root::open(root)
        .and_then(|r| r.stat(BLESS_BOOT))
        .is_ok_and(|k| k == Some(ociboot_fs::beneath::Kind::File))
}

/// `<PRETTY_NAME> [<version>] (ociboot:<stateroot>:<index>)`.
fn title(d: &Deployment, index: usize) -> String {
    // Both come from the image: cleaned of anything that would add a line to the entry.
    let pretty = os_pretty_name(&d.root).unwrap_or_else(|| d.origin.image.to_string());
    let named = match &d.origin.version {
        Some(v) => format!("{pretty} {v}"),
        None => pretty,
    };
    format!(
        "{} (ociboot:{}:{index})",
        bls::clean_title(&named),
        d.stateroot
    )
}

/// The entry's command line: the origin's kargs, `ociboot=`, and `init=` when the image
/// carries its own ociboot.
fn options(d: &Deployment) -> String {
    let mut options = d.origin.kargs.join(" ");
    if !options.is_empty() {
        options.push(' ');
    }
    options.push_str(&format!("{}={}", crate::cmdline::DEPLOYMENT_KEY, d.key()));
    // The deployment's own static ociboot sets up the root at boot (see rootsetup.rs): only
    // a regular file that is a static ELF (a symlink to /bin/sh is no init of ours; staging
    // refuses such an image, see check_init).
    if crate::lint::static_init(&d.root).is_ok() {
        options.push_str(&format!(
            " init=/ociboot/deploy/{}/deploy/{}/{INIT_IN_IMAGE}",
            d.stateroot, d.id
        ));
    }
    options
}

/// Refuse an image that cannot boot: without one kernel and its initramfs, or without a
/// regular, static ELF `usr/bin/ociboot` (its entry would start something else as init, or
/// the image's own init, which does not set up the root). The one bootability check, the same
/// as `install to-disk`'s and `container lint`'s ([`crate::lint::check_bootable`]), run before
/// anything names the deployment.
pub(super) fn check_init(root: &Path, image: &str) -> Result<()> {
    crate::lint::check_bootable(root)
        .map(|_| ())
        .map_err(|e| crate::Error::Invalid(format!("{image}: {e}")))
}

/// PRETTY_NAME from the deployment's os-release.
fn os_pretty_name(root: &Path) -> Option<String> {
    for p in ["usr/lib/os-release", "usr/etc/os-release"] {
        if let Ok(t) = std::fs::read_to_string(root.join(p)) {
            for l in t.lines() {
                if let Some(v) = l.strip_prefix("PRETTY_NAME=") {
                    return Some(v.trim_matches('"').to_string());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testutil::fake_sysroot;
    use super::*;
    use crate::cmdline;

    #[test]
    fn entry_names_the_deployment_and_its_init() {
        let (_d, s) = fake_sysroot(&["a.0"]);
        let mut d = s.deployment("default/a.0").unwrap();
        d.origin.kargs = vec!["root=UUID=x".into(), "quiet".into()];
        assert_eq!(options(&d), "root=UUID=x quiet ociboot=default/a.0");
        assert_eq!(title(&d, 1), "example.com/os:a-0 (ociboot:default:1)");
        std::fs::create_dir_all(d.root.join("usr/bin")).unwrap();
        // Not an ELF file: no init= (and staging would refuse the image).
        std::fs::write(d.root.join(INIT_IN_IMAGE), "#!/bin/sh\n").unwrap();
        assert_eq!(options(&d), "root=UUID=x quiet ociboot=default/a.0");
        assert!(check_init(&d.root, "img")
            .unwrap_err()
            .to_string()
            .contains("img: "));
        std::fs::remove_file(d.root.join(INIT_IN_IMAGE)).unwrap();
        std::os::unix::fs::symlink("/bin/sh", d.root.join(INIT_IN_IMAGE)).unwrap();
        assert_eq!(options(&d), "root=UUID=x quiet ociboot=default/a.0");
        assert!(check_init(&d.root, "img").is_err());
        std::fs::remove_file(d.root.join(INIT_IN_IMAGE)).unwrap();
        // A static ELF (no PT_INTERP) is the init.
        let elf = crate::lint::elf::tests::fake_elf(&[1]);
        std::fs::write(d.root.join(INIT_IN_IMAGE), elf).unwrap();
        // Not bootable yet: no kernel.
        let e = check_init(&d.root, "img").unwrap_err().to_string();
        assert!(e.starts_with("img: ") && e.contains("kernel"), "{e}");
        let k = d.root.join("usr/lib/modules/6.1.0-1");
        std::fs::create_dir_all(&k).unwrap();
        std::fs::write(k.join("vmlinuz"), "k").unwrap();
        std::fs::write(k.join("initramfs.img"), "i").unwrap();
        check_init(&d.root, "img").unwrap();
        std::fs::write(
            d.root.join("usr/etc/os-release"),
            "PRETTY_NAME=\"Debian 12\"\n",
        )
        .unwrap();
        d.origin.version = Some("7".into());
        let o = options(&d);
        assert_eq!(cmdline::deployment_key(&o), Some("default/a.0"));
        assert_eq!(
            cmdline::parse(&o).get("init"),
            Some("/ociboot/deploy/default/deploy/a.0/usr/bin/ociboot")
        );
        assert_eq!(title(&d, 0), "Debian 12 7 (ociboot:default:0)");
        // A version label that would add lines to the entry, and an overlong name.
        d.origin.version = Some("7\ninitrd /evil\r\x1b[31m".into());
        let t = title(&d, 0);
        assert_eq!(t, "Debian 12 7 initrd /evil [31m (ociboot:default:0)");
        d.origin.version = Some("x".repeat(1000));
        assert!(title(&d, 0).len() < bls::MAX_TITLE + 40);
    }

    #[test]
    fn recorded_kernel_is_used_while_present() {
        let (_d, s) = fake_sysroot(&["a.0"]);
        let mut d = s.deployment("default/a.0").unwrap();
        let k = BootFiles {
            linux: "/ociboot/default-x/vmlinuz-6.1".into(),
            initrd: None,
        };
        d.origin.kernel = Some(k.clone());
        // Gone from /boot, and the deployment has no kernel to install again.
        assert!(s.boot_files(&d).is_err());
        std::fs::create_dir_all(s.boot.join("ociboot/default-x")).unwrap();
        std::fs::write(s.boot.join("ociboot/default-x/vmlinuz-6.1"), "k").unwrap();
        assert_eq!(s.boot_files(&d).unwrap(), k);
    }
}
