//! The bootc verbs on a host: status, upgrade, switch, rollback, finalize-staged, cleanup, pin,
//! diff, prepare-root. Each parses its flags into a call of `ociboot_deploy::Sysroot` and
//! prints the typed result; `install` is in install.rs.

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};
use ociboot_deploy::{
    status, Deployment, DriftKind, SwitchOutcome, Sysroot, SysrootLock, UpgradeMode, UpgradeOutcome,
};
use ociboot_oci::{ImageReference, RegistryOptions, Transport};
use ociboot_store::PullProgress;

use crate::cli::{Command, DiffWhat, Global, StatusFormat, TransportArg};
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

pub(crate) fn say(g: &Global, msg: impl std::fmt::Display) {
    if !g.quiet {
        println!("{msg}");
    }
}

/// Both of the sysroot's write locks (the store's, then the deployments'); waiting for one
/// is reported with who holds it.
pub(crate) fn lock(sysroot: &Sysroot, rep: &Reporter) -> Result<SysrootLock> {
    Ok(sysroot.lock(&|h| rep.waiting_for_lock(h))?)
}

/// The store's lock only: for `switch`, which takes the deployments lock itself once the
/// download is done.
fn lock_store(sysroot: &Sysroot, rep: &Reporter) -> Result<SysrootLock> {
    Ok(sysroot.lock_store(&|h| rep.waiting_for_lock(h))?)
}

pub(crate) fn reboot(g: &Global) -> Result<()> {
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

fn print_queued(g: &Global, d: &Deployment) {
    say(g, format_args!("Queued for next boot: {}", d.origin.image));
    if let Some(v) = &d.origin.version {
        say(g, format_args!("  Version: {v}"));
    }
    say(g, format_args!("  Digest: {}", d.origin.manifest_digest));
}

pub fn run(g: &Global, cmd: Command) -> Result<()> {
    let rep = Reporter::new(g.quiet);
    let sysroot = Sysroot::open(&g.sysroot);
    match cmd {
        Command::Status {
            format,
            json,
            booted,
            ..
        } => print_status(
            g,
            &sysroot,
            if json {
                Some(StatusFormat::Json)
            } else {
                format
            },
            booted,
        ),
        Command::Upgrade {
            check,
            apply,
            download_only,
            from_downloaded,
        } => {
            let mode = if from_downloaded {
                UpgradeMode::FromDownloaded
            } else if check {
                UpgradeMode::Check
            } else {
                UpgradeMode::Stage { download_only }
            };
            upgrade(g, &sysroot, &rep, mode, apply)
        }
        Command::Switch {
            target,
            transport,
            retain,
            apply,
        } => {
            let r = ImageReference::new(transport.into(), &target)?;
            switch(g, &sysroot, &rep, &r, retain, apply)
        }
        Command::Rollback { apply } => rollback(g, &sysroot, &rep, apply),
        Command::FinalizeStaged => finalize_staged(g, &sysroot, &rep),
        Command::Cleanup => cleanup(g, &sysroot, &rep),
        Command::Pin { deployment } => pin(g, &sysroot, &rep, &deployment, true),
        Command::Unpin { deployment } => pin(g, &sysroot, &rep, &deployment, false),
        Command::Diff { what } => diff(g, &sysroot, what),
        Command::Install(cmd) => crate::install::run(g, &rep, cmd),
        Command::PrepareRoot {
            physical_root,
            cmdline,
        } => {
            let p = ociboot_deploy::rootsetup::prepare_root(&physical_root, &cmdline)?;
            say(
                g,
                format_args!("Prepared {} at {}", p.key, p.root.display()),
            );
            Ok(())
        }
        Command::Image(_)
        | Command::Container(_)
        | Command::Internals(_)
        | Command::Completion { .. }
        | Command::Man { .. } => {
            unreachable!("dispatched in main")
        }
    }
}

fn print_status(
    g: &Global,
    sysroot: &Sysroot,
    format: Option<StatusFormat>,
    booted: bool,
) -> Result<()> {
    let host = status::Host::new(&sysroot.state()?, booted);
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        StatusFormat::Humanreadable
    } else {
        StatusFormat::Yaml
    });
    match format {
        StatusFormat::Json => println!("{}", host.to_json()),
        StatusFormat::Yaml => print!("{}", host.to_yaml()),
        StatusFormat::Humanreadable => print!("{}", host.human(g.verbose > 0)),
    }
    Ok(())
}

fn upgrade(
    g: &Global,
    sysroot: &Sysroot,
    rep: &Reporter,
    mode: UpgradeMode,
    apply: bool,
) -> Result<()> {
    // Two runs never overlap (the timer's and a manual one): another writer of the store
    // means this one gives up at once, naming it.
    let lock = sysroot.lock_store_unless_busy(&|h| rep.waiting_for_lock(h))?;
    let outcome = sysroot.upgrade(&lock, mode, &RegistryOptions::from_env, rep)?;
    if print_upgrade(g, outcome) && apply {
        reboot(g)?;
    }
    Ok(())
}

/// Say what `upgrade` did; whether it staged something to reboot into.
fn print_upgrade(g: &Global, outcome: UpgradeOutcome) -> bool {
    match outcome {
        UpgradeOutcome::Unlocked(true) => {
            say(g, "Staged update will be applied at the next shutdown");
            false
        }
        UpgradeOutcome::Unlocked(false) => {
            say(g, "No download-only update is staged");
            false
        }
        UpgradeOutcome::NoChanges { image } => {
            say(g, format_args!("No changes in: {image}"));
            false
        }
        UpgradeOutcome::Available { image, update } => {
            say(g, format_args!("Update available for: {image}"));
            if let Some(v) = &update.version {
                say(g, format_args!("  Version: {v}"));
            }
            say(g, format_args!("  Digest: {}", update.manifest_digest));
            false
        }
        UpgradeOutcome::StagedCurrent {
            image,
            staged,
            download_only,
        } => {
            say(g, format_args!("No changes in: {image}"));
            say(g, "Staged update present, not changed");
            if let Some(v) = &staged.origin.version {
                say(g, format_args!("  Version: {v}"));
            }
            say(
                g,
                format_args!("  Digest: {}", staged.origin.manifest_digest),
            );
            if download_only {
                say(
                    g,
                    "  Downloaded only: `ociboot upgrade --from-downloaded` lets the next \
                     shutdown apply it",
                );
            }
            false
        }
        UpgradeOutcome::AlreadyStaged => {
            say(g, "Staged update present, not changed");
            true
        }
        UpgradeOutcome::NoUpdate => {
            say(g, "No update available.");
            false
        }
        UpgradeOutcome::GivenUp { deployment, health } => {
            say(
                g,
                format_args!(
                    "No update available: {} is what deployment {} ran, and the boot loader \
                     gave up on it{}; waiting for a newer image",
                    deployment.origin.manifest_digest,
                    deployment.key(),
                    health
                        .filter(|h| !h.failed.is_empty())
                        .map(|h| format!(" (failed: {})", h.summary()))
                        .unwrap_or_default()
                ),
            );
            false
        }
        UpgradeOutcome::Staged(d) => {
            print_queued(g, &d);
            true
        }
    }
}

fn switch(
    g: &Global,
    sysroot: &Sysroot,
    rep: &Reporter,
    target: &ImageReference,
    retain: bool,
    apply: bool,
) -> Result<()> {
    let lock = lock_store(sysroot, rep)?;
    match sysroot.switch(&lock, target, retain, &RegistryOptions::from_env, rep)? {
        SwitchOutcome::Unchanged => say(g, "Image specification is unchanged."),
        SwitchOutcome::Staged(d) => {
            print_queued(g, &d);
            if apply {
                reboot(g)?;
            }
        }
    }
    Ok(())
}

fn rollback(g: &Global, sysroot: &Sysroot, rep: &Reporter, apply: bool) -> Result<()> {
    // Entries only: never waits for a pull that holds the store's lock.
    let lock = sysroot.lock_deployments(&|h| rep.waiting_for_lock(h))?;
    if sysroot.rollback(&lock)? {
        say(g, "notice: Reverting queued rollback state");
        say(g, "Next boot: current deployment");
    } else {
        say(g, "Next boot: rollback deployment");
    }
    // Like bootc, no collection here: rollback only reorders entries, and must be fast.
    drop(lock);
    if apply {
        reboot(g)?;
    }
    Ok(())
}

fn finalize_staged(g: &Global, sysroot: &Sysroot, rep: &Reporter) -> Result<()> {
    // At shutdown: never wait for a pull. Entries under the deployments lock; the collection
    // afterwards only if the store is free (the next writer collects otherwise).
    let lock = sysroot.lock_deployments(&|h| rep.waiting_for_lock(h))?;
    let finalized = sysroot.finalize_staged(&lock)?;
    drop(lock);
    match finalized {
        Some(d) => {
            match sysroot.try_lock_store()? {
                Some(lock) => {
                    lock.lock_deployments(&|h| rep.waiting_for_lock(h))?;
                    sysroot.gc(&lock, &[], false)?;
                }
                None => say(g, "The store is busy: old deployments are collected later"),
            }
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
    Ok(())
}

fn cleanup(g: &Global, sysroot: &Sysroot, rep: &Reporter) -> Result<()> {
    let lock = lock(sysroot, rep)?;
    let r = sysroot.gc(&lock, &[], true)?;
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
    Ok(())
}

fn pin(g: &Global, sysroot: &Sysroot, rep: &Reporter, which: &str, pinned: bool) -> Result<()> {
    let lock = lock(sysroot, rep)?;
    let d = sysroot.set_pinned(&lock, which, pinned)?;
    let verb = if pinned { "Pinned" } else { "Unpinned" };
    say(g, format_args!("{verb} {} ({})", d.key(), d.origin.image));
    if !pinned {
        sysroot.gc(&lock, &[], false)?;
    }
    Ok(())
}

fn diff(g: &Global, sysroot: &Sysroot, what: DiffWhat) -> Result<()> {
    let d = sysroot.drift(match what {
        DiffWhat::Etc => DriftKind::Etc,
        DiffWhat::Var => DriftKind::Var,
    })?;
    for (mark, paths) in [
        ("M", &d.diff.modified),
        ("A", &d.diff.added),
        ("D", &d.diff.removed),
    ] {
        for p in paths {
            println!("{mark} {}/{}", d.base, p.display());
        }
    }
    if d.diff.is_empty() && !g.quiet {
        eprintln!("No changes in {}", d.base);
    }
    Ok(())
}
