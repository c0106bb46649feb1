//! The bootc verbs: status, upgrade, switch, rollback, finalize-staged, pin, diff, install.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ociboot_deploy::{status, CachedUpdate, Sysroot};
use ociboot_oci::{fetch_image, open_source, ImageReference, RegistryOptions, Transport};
use ociboot_store::{PullProgress, Store};

use crate::cli::{
    Bootloader, Command, DiffWhat, Global, InstallCommand, StatusFormat, TransportArg,
};
use crate::progress::Reporter;

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Transport {
        match t {
            TransportArg::Registry => Transport::Registry,
            TransportArg::Oci => Transport::Oci,
            TransportArg::OciArchive => Transport::OciArchive,
        }
    }
}

/// The image to install and the one to follow for updates.
fn install_refs(i: &crate::cli::InstallImage) -> Result<(ImageReference, Option<ImageReference>)> {
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

/// The physical root: `--sysroot`, except that on a booted system `/` means `/sysroot`.
pub(crate) fn physical_root(g: &Global) -> PathBuf {
    if g.sysroot == Path::new("/")
        && !Path::new("/ociboot").exists()
        && Path::new("/sysroot/ociboot").exists()
    {
        PathBuf::from("/sysroot")
    } else {
        g.sysroot.clone()
    }
}

fn say(g: &Global, msg: impl std::fmt::Display) {
    if !g.quiet {
        println!("{msg}");
    }
}

fn open_store(root: &Path, rep: &Reporter) -> Result<Store> {
    Ok(Store::open_write(root, &|h| rep.waiting_for_lock(h))?)
}

fn reboot(g: &Global) -> Result<()> {
    say(g, "Rebooting");
    let st = std::process::Command::new("systemctl")
        .args(["reboot", "--message=Initiated by ociboot"])
        .status()
        .context("running systemctl reboot")?;
    if !st.success() {
        bail!("systemctl reboot failed: {st}");
    }
    Ok(())
}

fn print_queued(
    g: &Global,
    r: &ImageReference,
    version: Option<&str>,
    digest: &impl std::fmt::Display,
) {
    say(g, format_args!("Queued for next boot: {r}"));
    if let Some(v) = version {
        say(g, format_args!("  Version: {v}"));
    }
    say(g, format_args!("  Digest: {digest}"));
}

pub fn run(g: &Global, cmd: Command) -> Result<()> {
    let rep = Reporter::new(g.quiet);
    let root = physical_root(g);
    let sysroot = Sysroot::new(&root);
    match cmd {
        Command::Status {
            format,
            json,
            booted,
            ..
        } => {
            let state = sysroot.state()?;
            let v = status::host(&state, booted);
            let format = if json {
                StatusFormat::Json
            } else {
                format.unwrap_or(if std::io::stdout().is_terminal() {
                    StatusFormat::Humanreadable
                } else {
                    StatusFormat::Yaml
                })
            };
            match format {
                StatusFormat::Json => println!("{}", status::to_json(&v)),
                StatusFormat::Yaml => print!("{}", status::to_yaml(&v)),
                StatusFormat::Humanreadable => print!("{}", status::human(&v, g.verbose > 0)),
            }
        }
        Command::Upgrade {
            check,
            apply,
            download_only,
            from_downloaded,
        } => {
            let store = open_store(&root, &rep)?;
            let state = sysroot.state()?;
            let booted = state
                .booted()
                .cloned()
                .context("upgrade needs a booted ociboot deployment")?;
            if from_downloaded {
                if sysroot.unlock_staged()? {
                    say(g, "Staged update will be applied at the next shutdown");
                } else {
                    say(g, "No download-only update is staged");
                }
                return Ok(());
            }
            let spec = state
                .staged
                .as_ref()
                .map(|(d, _)| d.origin.image.clone())
                .unwrap_or(booted.origin.image.clone());
            let opts = RegistryOptions::from_env()?;
            let mut src = open_source(&spec, &opts)?;
            let f = fetch_image(src.as_mut())?;
            drop(src);
            let version = ociboot_oci::manifest::version_label(&f.config);
            if check {
                if f.manifest_digest == booted.origin.manifest_digest {
                    sysroot.set_cached_update(&booted, None)?;
                    say(g, format_args!("No changes in: {spec}"));
                } else {
                    sysroot.set_cached_update(
                        &booted,
                        Some(CachedUpdate {
                            manifest_digest: f.manifest_digest,
                            version: version.clone(),
                            timestamp: ociboot_oci::manifest::created_timestamp(&f.config),
                            architecture: f.config.architecture().to_string(),
                        }),
                    )?;
                    say(g, format_args!("Update available for: {spec}"));
                    if let Some(v) = &version {
                        say(g, format_args!("  Version: {v}"));
                    }
                    say(g, format_args!("  Digest: {}", f.manifest_digest));
                }
                return Ok(());
            }
            if let Some((d, info)) = &state.staged {
                if d.origin.manifest_digest == f.manifest_digest {
                    if info.locked && !download_only {
                        sysroot.unlock_staged()?;
                    }
                    say(g, "Staged update present, not changed");
                    if apply {
                        reboot(g)?;
                    }
                    return Ok(());
                }
            }
            if f.manifest_digest == booted.origin.manifest_digest {
                say(g, "No update available.");
                return Ok(());
            }
            let pulled = store.pull(&spec, &opts, &rep)?;
            let d = sysroot.stage(&store, &spec, &pulled.manifest_digest, download_only)?;
            sysroot.set_cached_update(&booted, None)?;
            sysroot.gc(&store, &[], false)?;
            print_queued(
                g,
                &spec,
                d.origin.version.as_deref(),
                &pulled.manifest_digest,
            );
            if apply {
                reboot(g)?;
            }
        }
        Command::Switch {
            target,
            transport,
            retain,
            apply,
        } => {
            let r = ImageReference::new(transport.into(), &target)?;
            let store = open_store(&root, &rep)?;
            let state = sysroot.state()?;
            let booted = state
                .booted()
                .cloned()
                .context("switch needs a booted ociboot deployment")?;
            let spec = state
                .staged
                .as_ref()
                .map(|(d, _)| d.origin.image.clone())
                .unwrap_or(booted.origin.image.clone());
            if spec == r {
                say(g, "Image specification is unchanged.");
                return Ok(());
            }
            let opts = RegistryOptions::from_env()?;
            let pulled = store.pull(&r, &opts, &rep)?;
            let d = sysroot.stage(&store, &r, &pulled.manifest_digest, false)?;
            let retained: Vec<ImageReference> = if retain {
                vec![booted.origin.image.clone()]
            } else {
                vec![]
            };
            sysroot.gc(&store, &retained, false)?;
            print_queued(g, &r, d.origin.version.as_deref(), &pulled.manifest_digest);
            if apply {
                reboot(g)?;
            }
        }
        Command::Rollback { apply } => {
            let store = open_store(&root, &rep)?;
            let reverted = sysroot.rollback()?;
            if reverted {
                say(g, "notice: Reverting queued rollback state");
                say(g, "Next boot: current deployment");
            } else {
                say(g, "Next boot: rollback deployment");
            }
            // Like bootc, no collection here: rollback only reorders entries, and must be fast.
            drop(store);
            if apply {
                reboot(g)?;
            }
        }
        Command::FinalizeStaged => {
            let store = open_store(&root, &rep)?;
            match sysroot.finalize_staged()? {
                Some(d) => {
                    sysroot.gc(&store, &[], false)?;
                    say(
                        g,
                        format_args!(
                            "Finalized {} ({}) as the next boot",
                            d.origin.image,
                            d.key()
                        ),
                    );
                }
                None => say(g, "No staged deployment to finalize"),
            }
        }
        Command::Cleanup => {
            let store = open_store(&root, &rep)?;
            let r = sysroot.gc(&store, &[], true)?;
            say(
                g,
                format_args!(
                    "Removed {} deployments, {} kernels, {} images; freed {}",
                    r.deployments,
                    r.kernels,
                    r.images,
                    crate::output::human_size(r.bytes)
                ),
            );
        }
        Command::Pin { deployment } => {
            let _store = open_store(&root, &rep)?;
            let d = sysroot.set_pinned(&deployment, true)?;
            say(g, format_args!("Pinned {} ({})", d.key(), d.origin.image));
        }
        Command::Unpin { deployment } => {
            let store = open_store(&root, &rep)?;
            let d = sysroot.set_pinned(&deployment, false)?;
            say(g, format_args!("Unpinned {} ({})", d.key(), d.origin.image));
            sysroot.gc(&store, &[], false)?;
        }
        Command::Diff { what } => {
            let state = sysroot.state()?;
            let booted = state
                .booted()
                .context("diff needs a booted ociboot deployment")?;
            let d = match what {
                DiffWhat::Etc => {
                    let o = ociboot_deploy::fstree::scan(&booted.root.join("usr/etc"))?;
                    let m = ociboot_deploy::fstree::scan(&booted.root.join("etc"))?;
                    ociboot_deploy::etcmerge::diff(&o, &m)
                }
                DiffWhat::Var => sysroot.var_drift(booted)?,
            };
            let base = if what == DiffWhat::Etc {
                "/etc"
            } else {
                "/var"
            };
            for p in &d.modified {
                println!("M {base}/{}", p.display());
            }
            for p in &d.added {
                println!("A {base}/{}", p.display());
            }
            for p in &d.removed {
                println!("D {base}/{}", p.display());
            }
            if d.is_empty() && !g.quiet {
                eprintln!("No changes in {base}");
            }
        }
        Command::Install(InstallCommand::ToFilesystem {
            image,
            root_mount_spec,
            bootloader,
            root,
        }) => {
            if bootloader != Bootloader::None {
                bail!("--bootloader {bootloader:?} is not supported yet; use --bootloader none (entries and kernels only)");
            }
            if !root.is_dir() {
                bail!("{} is not a directory", root.display());
            }
            let (source, target) = install_refs(&image)?;
            let sysroot = Sysroot::new(&root);
            let store = open_store(&root, &rep)?;
            let opts = RegistryOptions::from_env()?;
            let d = sysroot.install(
                &store,
                &ociboot_deploy::InstallOptions {
                    source: Some(source),
                    target,
                    stateroot: image.stateroot,
                    kargs: image.kargs,
                    root_mount_spec,
                },
                &opts,
                &rep,
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
        }
        Command::Install(InstallCommand::ToDisk {
            image,
            via_loopback,
            wipe,
            filesystem,
            root_size,
            root_ssh_authorized_keys,
            bootloader,
            device,
        }) => {
            if !via_loopback {
                bail!(
                    "{}: installing onto a block device is not supported yet; pass \
                     --via-loopback to build a disk image file",
                    device.display()
                );
            }
            match bootloader {
                Bootloader::Systemd => {}
                Bootloader::Grub => bail!(
                    "--bootloader grub is not supported yet (building GRUB's EFI image needs \
                     grub-mkimage); use --bootloader systemd"
                ),
                Bootloader::None => bail!(
                    "--bootloader none makes no bootable disk; use install to-filesystem for \
                     entries and kernels only"
                ),
            }
            let (source, target) = install_refs(&image)?;
            let root_size = root_size.as_deref().map(parse_size).transpose()?;
            let ssh = root_ssh_authorized_keys
                .map(|p| {
                    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
                })
                .transpose()?;
            let opts = ociboot_install::DiskOptions {
                source,
                target,
                stateroot: image.stateroot,
                kargs: image.kargs,
                filesystem: match filesystem {
                    crate::cli::Filesystem::Ext4 => ociboot_install::RootFs::Ext4,
                    crate::cli::Filesystem::Xfs => ociboot_install::RootFs::Xfs,
                },
                root_size,
                esp_size: 512 << 20,
                wipe,
                root_ssh_authorized_keys: ssh,
            };
            let r = ociboot_install::install_to_disk(
                &device,
                &opts,
                &RegistryOptions::from_env()?,
                &rep,
            )?;
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
        }
        Command::PrepareRoot {
            physical_root,
            cmdline,
        } => {
            let p = ociboot_deploy::rootsetup::prepare_root(&physical_root, &cmdline)?;
            say(
                g,
                format_args!("Prepared {} at {}", p.key, p.root.display()),
            );
        }
        Command::Image(_)
        | Command::Container(_)
        | Command::Completion { .. }
        | Command::Man { .. } => {
            unreachable!("dispatched in main")
        }
    }
    Ok(())
}
