//! `ociboot install to-filesystem` and `install to-disk`: flags checked and turned into
//! `Sysroot::install` and `ociboot_install::install_to_disk` calls, results printed.

use std::path::Path;

use anyhow::{bail, Context, Result};
use ociboot_deploy::{InstallOptions, Sysroot};
use ociboot_oci::{ImageReference, RegistryOptions};

use crate::cli::{Bootloader, Filesystem, Global, InstallCommand, InstallImage};
use crate::host::{lock, say};
use crate::progress::Reporter;

/// The image to install and the one to follow for updates.
fn install_refs(i: &InstallImage) -> Result<(ImageReference, Option<ImageReference>)> {
    let source: ImageReference = i.source_imgref.parse()?;
    let target = match (&i.target_imgref, i.target_transport) {
        (Some(t), Some(tr)) => Some(ImageReference::new(tr.into(), t)?),
        (Some(t), None) => Some(t.parse()?),
        (None, _) => None,
    };
    Ok((source, target))
}

/// `4G`, `2500M`, `512K` or bytes.
fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => bail!("bad size {s:?}: use a number with K, M, G or T"),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("bad size {s:?}: use a number with K, M, G or T"))?;
    n.checked_mul(mult)
        .with_context(|| format!("size {s:?} is too large"))
}

pub fn run(g: &Global, rep: &Reporter, cmd: InstallCommand) -> Result<()> {
    match cmd {
        InstallCommand::ToFilesystem {
            image,
            root_mount_spec,
            bootloader,
            root,
        } => to_filesystem(g, rep, image, root_mount_spec, bootloader, &root),
        InstallCommand::ToDisk {
            image,
            via_loopback,
            wipe,
            filesystem,
            root_size,
            root_ssh_authorized_keys,
            bootloader,
            device,
        } => {
            if !via_loopback {
                bail!(
                    "{}: installing onto a block device is not supported yet; pass \
                     --via-loopback to build a disk image file",
                    device.display()
                );
            }
            check_disk_bootloader(bootloader)?;
            let (source, target) = install_refs(&image)?;
            let opts = ociboot_install::DiskOptions {
                source,
                target,
                stateroot: image.stateroot,
                kargs: image.kargs,
                filesystem: match filesystem {
                    Filesystem::Ext4 => ociboot_install::RootFs::Ext4,
                    Filesystem::Xfs => ociboot_install::RootFs::Xfs,
                },
                root_size: root_size.as_deref().map(parse_size).transpose()?,
                esp_size: 512 << 20,
                wipe,
                root_ssh_authorized_keys: root_ssh_authorized_keys
                    .map(|p| {
                        std::fs::read_to_string(&p)
                            .with_context(|| format!("reading {}", p.display()))
                    })
                    .transpose()?,
            };
            to_disk(g, rep, &device, &opts)
        }
    }
}

fn to_filesystem(
    g: &Global,
    rep: &Reporter,
    image: InstallImage,
    root_mount_spec: Option<String>,
    bootloader: Bootloader,
    root: &Path,
) -> Result<()> {
    if bootloader != Bootloader::None {
        bail!("--bootloader {bootloader:?} is not supported yet; use --bootloader none (entries and kernels only)");
    }
    if !root.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let (source, target) = install_refs(&image)?;
    let sysroot = Sysroot::new(root);
    let lock = lock(&sysroot, rep)?;
    let opts = RegistryOptions::from_env()?;
    let d = sysroot.install(
        &lock,
        &InstallOptions {
            source: Some(source),
            target,
            stateroot: image.stateroot,
            kargs: image.kargs,
            root_mount_spec,
        },
        &opts,
        rep,
    )?;
    say(
        g,
        format_args!(
            "Installed {} as {} in {}",
            d.origin.image,
            d.key(),
            root.display()
        ),
    );
    Ok(())
}

fn check_disk_bootloader(bootloader: Bootloader) -> Result<()> {
    match bootloader {
        Bootloader::Systemd => Ok(()),
        Bootloader::Grub => bail!(
            "--bootloader grub is not supported yet (building GRUB's EFI image needs \
             grub-mkimage); use --bootloader systemd"
        ),
        Bootloader::None => bail!(
            "--bootloader none makes no bootable disk; use install to-filesystem for \
             entries and kernels only"
        ),
    }
}

fn to_disk(
    g: &Global,
    rep: &Reporter,
    device: &Path,
    opts: &ociboot_install::DiskOptions,
) -> Result<()> {
    let r = ociboot_install::install_to_disk(device, opts, &RegistryOptions::from_env()?, rep)?;
    say(
        g,
        format_args!(
            "Installed {} as {} on {} ({} MiB)\n  ESP:  {} MiB, FAT32 {}, partition {}\n  \
             root: {} MiB, ext4 UUID {}, partition {}\n  content {} MiB; staged in {:.1} s, \
             laid out in {:.1} s",
            r.deployment.origin.image,
            r.deployment.key(),
            device.display(),
            r.disk_size >> 20,
            r.esp.size() >> 20,
            r.esp_volume_id,
            r.esp.guid,
            r.root.size() >> 20,
            r.root_fs_uuid,
            r.root.guid,
            r.content_bytes >> 20,
            r.staging.as_secs_f64(),
            r.layout.as_secs_f64(),
        ),
    );
    Ok(())
}
