//! The update algorithms of `upgrade` and `switch`: which image a host follows (the staged
//! deployment's, else the booted one's), `upgrade --check` (the manifest, and the config of a
//! new image; the result cached in the booted origin; an update already staged is reported as
//! such), a staged update already present (a download-only one unlocked), and otherwise pull,
//! stage and collect garbage. Whether anything changed is decided from the manifest alone.
//!
//! These decide and return what happened; they must never print, prompt or reboot (the CLI
//! does, from the result), and never stage without the [`SysrootLock`].

use ociboot_oci::{fetch_config, fetch_manifest, open_source, ImageReference, RegistryOptions};
use ociboot_store::PullProgress;

use super::{Deployment, State, Sysroot, SysrootLock};
use crate::error::{Error, Result};
use crate::origin::CachedUpdate;

/// The registry options, loaded only by the paths that reach a registry.
pub type RegistryLoader<'a> = &'a dyn Fn() -> ociboot_oci::Result<RegistryOptions>;

/// What `upgrade` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeMode {
    /// Pull and stage an update; with `download_only` it is not applied at shutdown.
    Stage {
        /// `--download-only`: not applied at shutdown until `--from-downloaded` unlocks it.
        download_only: bool,
    },
    /// `--check`: only find out whether there is an update.
    Check,
    /// `--from-downloaded`: let a download-only update be applied; no network.
    FromDownloaded,
}

/// What `upgrade` did.
#[derive(Debug, Clone)]
pub enum UpgradeOutcome {
    /// `--from-downloaded`: whether a download-only update was staged (and is now unlocked).
    Unlocked(bool),
    /// `--check`: the followed image is what is booted.
    NoChanges {
        /// The followed image (the staged deployment's, else the booted one's).
        image: ImageReference,
    },
    /// `--check`: the followed image changed (recorded in the booted origin).
    Available {
        /// The followed image (the staged deployment's, else the booted one's).
        image: ImageReference,
        /// What its source serves now: manifest digest, version, timestamp, architecture.
        update: CachedUpdate,
    },
    /// `--check`: what the followed image's source serves now is the deployment already
    /// staged: nothing newer to fetch.
    StagedCurrent {
        /// The followed image (the staged deployment's).
        image: ImageReference,
        /// The staged deployment.
        staged: Box<Deployment>,
        /// Staged by `--download-only`: not applied at shutdown until `--from-downloaded`.
        download_only: bool,
    },
    /// The update is the one already staged (unlocked unless `download_only`).
    AlreadyStaged,
    /// The followed image is what is booted.
    NoUpdate,
    /// What the source serves is an image whose deployment the boot loader gave up on (it
    /// failed its tries): not staged again until the source serves another one.
    GivenUp {
        /// The deployment given up on.
        deployment: Box<Deployment>,
        /// Its last health verdict, if one was recorded.
        health: Option<crate::health::Verdict>,
    },
    /// Pulled and staged for the next boot.
    Staged(Box<Deployment>),
}

/// What `switch` did.
#[derive(Debug, Clone)]
pub enum SwitchOutcome {
    /// The host already follows that image.
    Unchanged,
    /// Pulled and staged for the next boot.
    Staged(Box<Deployment>),
}

fn booted_for(state: &State, verb: &str) -> Result<Deployment> {
    state
        .booted()
        .cloned()
        .ok_or_else(|| Error::State(format!("{verb} needs a booted ociboot deployment")))
}

/// The boot order, as deployment keys: what a rollback run meanwhile would have changed.
fn boot_order(state: &State) -> Vec<String> {
    state.entries.iter().map(|(_, d)| d.key()).collect()
}

impl Sysroot {
    /// After a download, with the deployments lock now held: refuse to stage over a change
    /// made while the image downloaded (a `rollback` queued meanwhile would otherwise be
    /// undone at shutdown by the update made the default).
    fn unchanged_since(&self, before: &State, image: &ImageReference) -> Result<()> {
        let now = self.state()?;
        if boot_order(&now) != boot_order(before) {
            return Err(Error::State(format!(
                "the boot order changed while {image} was downloading (a rollback was \
                 queued?): nothing staged; the image is in the store, run the command again \
                 to stage it"
            )));
        }
        Ok(())
    }
}

/// The image the host follows: the staged deployment's, else the booted one's.
fn followed(state: &State, booted: &Deployment) -> ImageReference {
    state
        .staged
        .as_ref()
        .map(|(d, _)| d.origin.image.clone())
        .unwrap_or(booted.origin.image.clone())
}

impl Sysroot {
    /// `upgrade`: fetch the followed image's manifest, and stage it if it changed.
    pub fn upgrade(
        &self,
        lock: &SysrootLock,
        mode: UpgradeMode,
        reg: RegistryLoader<'_>,
        progress: &dyn PullProgress,
    ) -> Result<UpgradeOutcome> {
        // The network first, under the store's lock only; deployments after.
        let store = self.store_locked(lock)?;
        let deployments = || lock.lock_deployments(&|h| progress.waiting_for_lock(h));
        let state = self.state()?;
        let booted = booted_for(&state, "upgrade")?;
        if mode == UpgradeMode::FromDownloaded {
            deployments()?;
            return Ok(UpgradeOutcome::Unlocked(self.unlock_staged(lock)?));
        }
        let spec = followed(&state, &booted);
        let opts = reg()?;
        let mut src = open_source(&spec, &opts)?;
        // The manifest alone says whether anything changed: with no update, nothing more is
        // fetched (the timer's run costs one manifest).
        let m = fetch_manifest(src.as_mut())?;
        let staged = state
            .staged
            .as_ref()
            .filter(|(d, _)| d.origin.manifest_digest == m.digest);
        if let Some(d) = state.given_up(&m.digest) {
            return Ok(UpgradeOutcome::GivenUp {
                deployment: Box::new(d.clone()),
                health: state.health.get(&d.key()).cloned(),
            });
        }
        if let UpgradeMode::Stage { download_only } = mode {
            drop(src);
            if let Some((_, info)) = staged {
                if info.locked && !download_only {
                    deployments()?;
                    self.unlock_staged(lock)?;
                }
                return Ok(UpgradeOutcome::AlreadyStaged);
            }
            if m.digest == booted.origin.manifest_digest {
                return Ok(UpgradeOutcome::NoUpdate);
            }
            let pulled = store.pull(&spec, &opts, progress)?;
            deployments()?;
            self.unchanged_since(&state, &spec)?;
            let d = self.stage(lock, &spec, &pulled.manifest_digest, download_only)?;
            self.set_cached_update(lock, &booted, None)?;
            self.gc(lock, &[], false)?;
            return Ok(UpgradeOutcome::Staged(Box::new(d)));
        }
        // --check: only the booted origin's cached update changes; the config (for the
        // version) is fetched only for an update not yet staged.
        let outcome = if let Some((d, info)) = staged {
            UpgradeOutcome::StagedCurrent {
                image: spec,
                staged: Box::new(d.clone()),
                download_only: info.locked,
            }
        } else if m.digest == booted.origin.manifest_digest {
            UpgradeOutcome::NoChanges { image: spec }
        } else {
            let f = fetch_config(src.as_mut(), m)?;
            UpgradeOutcome::Available {
                image: spec,
                update: CachedUpdate {
                    manifest_digest: f.manifest_digest,
                    version: ociboot_oci::manifest::version_label(&f.config),
                    timestamp: ociboot_oci::manifest::created_timestamp(&f.config),
                    architecture: f.config.architecture().to_string(),
                },
            }
        };
        drop(src);
        deployments()?;
        let cached = match &outcome {
            UpgradeOutcome::Available { update, .. } => Some(update.clone()),
            _ => None,
        };
        self.set_cached_update(lock, &booted, cached)?;
        Ok(outcome)
    }

    /// `switch`: follow `target` from now on; pull and stage it. With `retain`, the booted
    /// image's reference stays in the store.
    pub fn switch(
        &self,
        lock: &SysrootLock,
        target: &ImageReference,
        retain: bool,
        reg: RegistryLoader<'_>,
        progress: &dyn PullProgress,
    ) -> Result<SwitchOutcome> {
        let store = self.store_locked(lock)?;
        let state = self.state()?;
        let booted = booted_for(&state, "switch")?;
        if followed(&state, &booted) == *target {
            return Ok(SwitchOutcome::Unchanged);
        }
        let opts = reg()?;
        let pulled = store.pull(target, &opts, progress)?;
        // The download done, the deployments lock: stage and GC hold both.
        lock.lock_deployments(&|h| progress.waiting_for_lock(h))?;
        self.unchanged_since(&state, target)?;
        let d = self.stage(lock, target, &pulled.manifest_digest, false)?;
        let retained: Vec<ImageReference> = if retain {
            vec![booted.origin.image.clone()]
        } else {
            vec![]
        };
        self.gc(lock, &retained, false)?;
        Ok(SwitchOutcome::Staged(Box::new(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{fake_sysroot, write_order};

    #[test]
    fn a_rollback_queued_during_the_download_is_not_staged_over() {
        let (_d, s) = fake_sysroot(&["a.0", "b.0"]);
        write_order(&s, &["a.0", "b.0"]);
        let before = s.state().unwrap();
        let image = "example.com/os:new".parse().unwrap();
        s.unchanged_since(&before, &image).unwrap();
        // What `rollback` does to the entries while the pull runs.
        write_order(&s, &["b.0", "a.0"]);
        let e = s.unchanged_since(&before, &image).unwrap_err().to_string();
        assert!(
            e.contains("boot order changed while example.com/os:new was downloading"),
            "{e}"
        );
        assert!(
            e.contains("(a rollback was queued?): nothing staged"),
            "{e}"
        );
    }
}
