//! `install to-disk --via-loopback FILE`: a bootable disk image, built without mounting.
//!
//! ```text
//! FILE
//!   LBA 0         protective MBR
//!   LBA 1..33     GPT header and entries
//!   1 MiB         ESP (FAT32, type C12A7328-…): EFI/BOOT/BOOTX64.EFI and EFI/systemd/ (the
//!                 image's systemd-boot), loader/loader.conf,
//!                 loader/entries/ociboot-<stateroot>-<id>.conf, ociboot/<stateroot>-<bootcsum>/
//!                 {vmlinuz-<kver>,initramfs-<kver>.img} (the image's kernel)
//!   +512 MiB      root (ext4 with inline_data, type 4F68BCE3-… "root x86-64"): ociboot/store, the deployment,
//!                 the stateroot's var, empty dev/ proc/ sys/ run/ for the initramfs
//!   end - 33      backup GPT
//! ```
//!
//! Everything is staged in a directory next to FILE, then laid out into `FILE.partial`, which
//! is renamed over FILE only when complete: an error leaves FILE as it was.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ociboot_deploy::{Deployment, InstallOptions, Sysroot};
use ociboot_oci::{ImageReference, RegistryOptions};
use ociboot_store::PullProgress;

use crate::error::{Ctx, Error, Result};
use crate::fat;
use crate::gpt::{self, Guid, Partition, SECTOR};

const MIB: u64 = 1 << 20;
/// Where systemd-boot comes from, in the image.
const SYSTEMD_BOOT: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/// The filesystem of the root partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootFs {
    /// ext4, made by `mkfs.ext4 -d` from the staging directory. The only one that can be built.
    Ext4,
    /// XFS. Refused for now: `mkfs.xfs` cannot fill a filesystem from a directory, and nothing
    /// is mounted.
    Xfs,
}

/// What to install, and how to lay out the disk image.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    /// The image to pull and deploy.
    pub source: ImageReference,
    /// The image the installed system follows for upgrades, when not `source` (e.g. a registry
    /// name for an image installed from an `oci:` layout); `None` means `source`.
    pub target: Option<ImageReference>,
    /// Name of the stateroot the first deployment goes into; its `/var` lives there.
    pub stateroot: String,
    /// Kernel arguments for the boot entry, added after `root=`, `rw` and the image's own.
    pub kargs: Vec<String>,
    /// Filesystem of the root partition; only [`RootFs::Ext4`] can be built.
    pub filesystem: RootFs,
    /// Size of the root partition; default: twice the content plus 1 GiB, or the rest of an
    /// existing FILE.
    pub root_size: Option<u64>,
    /// Size of the EFI system partition in bytes; use a whole number of MiB so the root partition
    /// stays aligned. Its content may fill at most 90 % of it.
    pub esp_size: u64,
    /// Overwrite a FILE that already holds data.
    pub wipe: bool,
    /// authorized_keys for root, installed at boot through tmpfiles.d.
    pub root_ssh_authorized_keys: Option<String>,
}

/// What was written.
#[derive(Debug)]
pub struct DiskReport {
    /// The first deployment, as written to the root filesystem.
    pub deployment: Deployment,
    /// Size of the disk image in bytes.
    pub disk_size: u64,
    /// The EFI system partition.
    pub esp: Partition,
    /// The root partition.
    pub root: Partition,
    /// UUID of the root filesystem; the boot entry finds it by `root=UUID=…`.
    pub root_fs_uuid: Guid,
    /// Volume ID of the ESP's FAT32 filesystem as `XXXX-XXXX`, the form `/etc/fstab` uses.
    pub esp_volume_id: String,
    /// Estimated size of the root filesystem's content in bytes (each inode once, rounded up to
    /// 4 KiB blocks); the root partition was sized from it.
    pub content_bytes: u64,
    /// Time spent pulling, deploying and staging the content in directories.
    pub staging: Duration,
    /// Time spent writing the disk image: partition table, filesystems, fsync and rename.
    pub layout: Duration,
}

/// Bytes of a tree, each inode counted once (hardlinks share), rounded up to 4 KiB blocks.
fn tree_bytes(p: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !seen.insert((m.dev(), m.ino())) {
        return 0;
    }
    let own = m.len().div_ceil(4096) * 4096 + 256;
    if !m.is_dir() {
        return own;
    }
    own + std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| tree_bytes(&e.path(), seen)).sum())
        .unwrap_or(0)
}

fn check_target(file: &Path, wipe: bool) -> Result<Option<u64>> {
    let m = match std::fs::metadata(file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ociboot_fs::IoError::at("reading", file, e).into()),
    };
    if !m.is_file() {
        return Err(Error::Invalid(format!(
            "{}: not a regular file (installing onto a block device is not supported yet; \
             use --via-loopback with an image file)",
            file.display()
        )));
    }
    if m.len() == 0 {
        return Ok(None);
    }
    let mut head = vec![0u8; MIB.min(m.len()) as usize];
    File::open(file)
        .and_then(|mut f| f.read_exact(&mut head))
        .at("reading", file)?;
    if !wipe && head.iter().any(|&b| b != 0) {
        return Err(Error::Invalid(format!(
            "{}: already holds data (a partition table or filesystem); pass --wipe to overwrite it",
            file.display()
        )));
    }
    Ok(Some(m.len()))
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .ctx(|| format!("{what}: running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(Error::Invalid(format!(
            "{what}: {:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Local /etc additions the installed system needs: the ESP on /boot, root's SSH keys.
fn configure_etc(d: &Deployment, esp_id: &str, ssh: Option<&str>) -> Result<()> {
    let etc = d.root.join("etc");
    let fstab = etc.join("fstab");
    let mut text = std::fs::read_to_string(&fstab).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "# The EFI system partition: boot entries and kernels (written by ociboot install)\n\
         UUID={esp_id} /boot vfat umask=0077,shortname=winnt 0 0\n"
    ));
    std::fs::write(&fstab, text).at("writing", &fstab)?;
    if let Some(keys) = ssh {
        let dir = etc.join("tmpfiles.d");
        std::fs::create_dir_all(&dir).at("creating", &dir)?;
        let mut arg = String::new();
        for c in keys.trim_end().chars() {
            match c {
                '\n' => arg.push_str("\\n"),
                '\\' => arg.push_str("\\\\"),
                c => arg.push(c),
            }
        }
        arg.push_str("\\n");
        let conf = format!(
            "# root's SSH keys, from ociboot install --root-ssh-authorized-keys\n\
             d /root/.ssh 0700 root root -\n\
             f+ /root/.ssh/authorized_keys 0600 root root - {arg}\n"
        );
        let p = dir.join("ociboot-root-ssh.conf");
        std::fs::write(&p, conf).at("writing", &p)?;
    }
    Ok(())
}

fn copy(src: &Path, dst: &Path) -> Result<()> {
    if let Some(p) = dst.parent() {
        std::fs::create_dir_all(p).at("creating", p)?;
    }
    Ok(std::fs::copy(src, dst)
        .map(|_| ())
        .ctx(|| format!("copying {} to {}", src.display(), dst.display()))?)
}

/// Build the disk image `file`.
pub fn install_to_disk(
    file: &Path,
    opts: &DiskOptions,
    reg: &RegistryOptions,
    progress: &dyn PullProgress,
) -> Result<DiskReport> {
    let t0 = Instant::now();
    if opts.filesystem == RootFs::Xfs {
        return Err(Error::Invalid(
            "--filesystem xfs: an XFS root cannot be built without mounting it (mkfs.xfs cannot \
             fill a filesystem from a directory); use ext4"
                .into(),
        ));
    }
    let existing = check_target(file, opts.wipe)?;
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{}: not a file name", file.display())))?;
    let staging = tempfile::Builder::new()
        .prefix(".ociboot-install-")
        .tempdir_in(&parent)
        .at("creating a staging directory in", &parent)?;
    let root = staging.path().join("root");
    let esp = staging.path().join("esp");
    for d in [&root, &esp] {
        std::fs::create_dir(d).at("creating", d)?;
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .at("chmod", d)?;
    }
    let root_uuid = Guid::random()?;
    let mut idb = [0u8; 4];
    gpt::random_bytes(&mut idb)?;
    let esp_id = u32::from_le_bytes(idb);
    let esp_id_s = fat::volume_id_string(esp_id);

    // 1. The physical root and the ESP as directories.
    let sysroot = Sysroot::with_boot(&root, &esp);
    let lock = sysroot.lock(&|h| progress.waiting_for_lock(h))?;
    let d = sysroot.install(
        &lock,
        &InstallOptions {
            source: Some(opts.source.clone()),
            target: opts.target.clone(),
            stateroot: opts.stateroot.clone(),
            kargs: opts.kargs.clone(),
            root_mount_spec: Some(format!("UUID={root_uuid}")),
        },
        reg,
        progress,
    )?;
    drop(lock);
    // One kernel with its initramfs, and the static ociboot the kernel starts as init=.
    ociboot_deploy::lint::check_bootable(&d.root)
        .map_err(|e| Error::Invalid(format!("{}: {e}", opts.source)))?;
    let sdboot = d.root.join(SYSTEMD_BOOT);
    if !sdboot.is_file() {
        return Err(Error::Invalid(format!(
            "{}: the image has no /{SYSTEMD_BOOT} (Debian: systemd-boot-efi) to boot with",
            opts.source
        )));
    }
    copy(&sdboot, &esp.join("EFI/systemd/systemd-bootx64.efi"))?;
    copy(&sdboot, &esp.join("EFI/BOOT/BOOTX64.EFI"))?;
    configure_etc(&d, &esp_id_s, opts.root_ssh_authorized_keys.as_deref())?;
    let staged = t0.elapsed();

    // 2. Sizes.
    let content = tree_bytes(&root, &mut HashSet::new());
    let esp_content = tree_bytes(&esp, &mut HashSet::new());
    if esp_content > opts.esp_size * 9 / 10 {
        return Err(Error::Invalid(format!(
            "the ESP content ({} MiB) does not fit a {} MiB ESP",
            esp_content / MIB,
            opts.esp_size / MIB
        )));
    }
    let min_root = (content + content / 4 + 64 * MIB).next_multiple_of(MIB);
    let overhead = 2 * MIB + opts.esp_size;
    let root_size = match (opts.root_size, existing) {
        (Some(r), _) => r.next_multiple_of(MIB),
        (None, Some(len)) => (len.saturating_sub(overhead)) / MIB * MIB,
        (None, None) => (2 * content + 1024 * MIB).next_multiple_of(MIB),
    };
    if root_size < min_root {
        return Err(Error::Invalid(format!(
            "{}: the root filesystem needs at least {} MiB (the image is {} MiB); the disk leaves \
             {} MiB for it",
            file.display(),
            min_root / MIB,
            content / MIB,
            root_size / MIB
        )));
    }
    let disk_size = match existing {
        Some(len) if len >= overhead + root_size => len / SECTOR * SECTOR,
        Some(len) => {
            return Err(Error::Invalid(format!(
                "{}: {} MiB is too small for a {} MiB ESP and a {} MiB root",
                file.display(),
                len / MIB,
                opts.esp_size / MIB,
                root_size / MIB
            )))
        }
        None => overhead + root_size,
    };
    let esp_part = Partition {
        type_guid: Guid::ESP,
        guid: Guid::random()?,
        first_lba: MIB / SECTOR,
        last_lba: (MIB + opts.esp_size) / SECTOR - 1,
        name: "ESP".into(),
    };
    let root_part = Partition {
        type_guid: Guid::ROOT_X86_64,
        guid: Guid::random()?,
        first_lba: esp_part.last_lba + 1,
        last_lba: esp_part.last_lba + root_size / SECTOR,
        name: "root-x86-64".into(),
    };

    // 3. The image, laid out in FILE.partial and renamed over FILE when complete.
    let t1 = Instant::now();
    let mut partial_name = name.to_os_string();
    partial_name.push(".partial");
    let partial = parent.join(partial_name);
    let _ = std::fs::remove_file(&partial);
    let mut disk = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&partial)
        .at("creating", &partial)?;
    let result = (|| -> Result<()> {
        disk.set_len(disk_size).at("sizing", &partial)?;
        gpt::write(
            &mut disk,
            disk_size,
            Guid::random()?,
            &[esp_part.clone(), root_part.clone()],
            &partial.display().to_string(),
        )?;
        run(
            // inline_data: small files and directories live in their inodes. A deployment is
            // mostly directories and links, so this is what makes a second deployment cost
            // little more than its changed files (bench/deploy.sh). Only the kernel reads this
            // filesystem (the bootloader reads the ESP), and Linux has supported it since 3.8.
            Command::new("mkfs.ext4")
                .args([
                    "-q",
                    "-F",
                    "-b",
                    "4096",
                    "-O",
                    "inline_data",
                    "-L",
                    "ociboot-root",
                    "-U",
                ])
                .arg(root_uuid.to_string())
                .arg("-d")
                .arg(&root)
                .arg("-E")
                .arg(format!("offset={},nodiscard", root_part.offset()))
                .arg(&partial)
                .arg(format!("{}k", root_part.size() / 1024)),
            &format!("{}: making the root filesystem", file.display()),
        )?;
        fat::write_esp(
            &disk,
            esp_part.offset(),
            esp_part.size(),
            esp_id,
            "ESP",
            &esp,
        )?;
        disk.sync_all().at("fsync", &partial)?;
        std::fs::rename(&partial, file)
            .ctx(|| format!("renaming {} to {}", partial.display(), file.display()))?;
        ociboot_fs::fsync_dir(&parent)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result?;
    Ok(DiskReport {
        deployment: d,
        disk_size,
        esp: esp_part,
        root: root_part,
        root_fs_uuid: root_uuid,
        esp_volume_id: esp_id_s,
        content_bytes: content,
        staging: staged,
        layout: t1.elapsed(),
    })
}
