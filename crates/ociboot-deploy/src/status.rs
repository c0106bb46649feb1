//! `status`: bootc's `org.containers.bootc/v1` `BootcHost` object as typed structs, built from
//! a [`State`], and its three renderings: JSON (compact, keys sorted, like bootc's canonical
//! JSON), YAML (`yaml.rs`, over the same JSON value) and bootc's human layout (`human.rs`).
//!
//! Field names follow bootc's `spec.rs` (camelCase); `ociboot` in a [`BootEntry`] is ours
//! (the deployment's identity, where bootc has `ostree` or `composefs`).

mod human;
mod yaml;

use ociboot_oci::{ImageReference, Sha256Digest};
use serde::Serialize;
use serde_json::Value;

use crate::origin::CachedUpdate;
use crate::sysroot::{Deployment, State};

/// A field of bootc's schema that ociboot never fills (another backend's identity, a state
/// it does not track): always serialised as `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Null;

/// The whole object: `apiVersion`, `kind`, `metadata`, `spec`, `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    /// Always `org.containers.bootc/v1`.
    pub api_version: String,
    /// Always `BootcHost`.
    pub kind: String,
    /// Always `{name: host}`.
    pub metadata: Metadata,
    /// The desired state: the image to run and the boot order.
    pub spec: HostSpec,
    /// The observed state: the deployment in each slot and the host's flags.
    pub status: HostStatus,
}

/// The object's `metadata`, as in a Kubernetes-style object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Metadata {
    /// Always `host`.
    pub name: String,
}

/// What the host should run: the staged image if any, else the booted one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostSpec {
    /// The image the host should run: the staged deployment's, else the booted one's; `null`
    /// when neither exists.
    pub image: Option<ImageReference>,
    /// Which deployment boots next (`bootOrder`).
    pub boot_order: BootOrder,
}

/// `spec.bootOrder`: which deployment the next boot picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BootOrder {
    /// No rollback queued: the default entry (the staged deployment, once finalized) boots next.
    Default,
    /// A rollback is queued: the rollback deployment boots next.
    Rollback,
}

/// `status.type`: what kind of host this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HostType {
    /// Booted into a deployment (serialised as `bootcHost`).
    BootcHost,
}

/// The slots and flags of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    /// The deployment staged for the next boot, if any.
    pub staged: Option<BootEntry>,
    /// The running deployment; `null` when not booted into one.
    pub booted: Option<BootEntry>,
    /// The first deployment in boot order other than the booted one; `null` when not booted.
    pub rollback: Option<BootEntry>,
    /// Deployments in no slot (pinned ones, say); the key is left out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_deployments: Vec<BootEntry>,
    /// The rollback deployment sorts before the booted one, so it boots next.
    pub rollback_queued: bool,
    /// `bootcHost` when booted into a deployment, else `null`.
    #[serde(rename = "type")]
    pub host_type: Option<HostType>,
    /// bootc's transient `/usr` overlay: ociboot has none, so always `null`.
    pub usr_overlay: Null,
    /// The physical root is on read-only media (a live ISO in bootc); always false here.
    pub read_only: bool,
}

/// One deployment in a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootEntry {
    /// The image this deployment was made from.
    pub image: ImageStatus,
    /// What `upgrade --check` found, when it differs from `image`.
    pub cached_update: Option<ImageStatus>,
    /// bootc's flag for an origin with rpm-ostree layering or overrides; always false here.
    pub incompatible: bool,
    /// Pinned: kept by garbage collection whatever its slot.
    pub pinned: bool,
    /// Whether a soft reboot could switch to this deployment; ociboot never claims so.
    pub soft_reboot_capable: bool,
    /// Staged by `upgrade --download-only`: not applied at shutdown.
    pub download_only: bool,
    /// The storage backend holding the deployment.
    pub store: Store,
    /// bootc's ostree deployment identity: always `null` (see `ociboot`).
    pub ostree: Null,
    /// bootc's composefs deployment identity: always `null` (see `ociboot`).
    pub composefs: Null,
    /// ociboot's identity of the deployment, in place of `ostree` or `composefs`.
    pub ociboot: OcibootDeployment,
}

/// The storage backend of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// ociboot's own store of hardlinked deployments (serialised as `ociboot`).
    Ociboot,
}

/// An image as a deployment (or a cached update) records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStatus {
    /// The image reference updates come from.
    pub image: ImageReference,
    /// The `org.opencontainers.image.version` label, else the legacy `version` label.
    pub version: Option<String>,
    /// When the image was built (RFC 3339): the `org.opencontainers.image.created` label, else the
    /// config's `created`.
    pub timestamp: Option<String>,
    /// The manifest digest.
    pub image_digest: Sha256Digest,
    /// The OCI config's architecture, such as `amd64`.
    pub architecture: String,
}

/// ociboot's identity of a deployment: `ociboot=<stateroot>/<id>`, its serial, its root
/// directory and its kernel command line (without `ociboot=`), space-separated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OcibootDeployment {
    /// The stateroot holding the deployment.
    pub stateroot: String,
    /// The deployment id: `<first 16 hex digits of the manifest digest>.<serial>`.
    pub id: String,
    /// The serial that makes the id unique among deployments of the same image.
    pub deploy_serial: u32,
    /// The deployment directory.
    pub root: String,
    /// The kernel command line without `ociboot=`, space-separated.
    pub kargs: String,
    /// Boot counting: `null` when the entry is not being tried (blessed, or never counted).
    pub boot_counting: Option<BootCounting>,
    /// The last health verdict recorded on a boot of this deployment, if any.
    pub health: Option<crate::health::Verdict>,
}

/// The tries of an entry the loader is trying (UAPI boot counting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootCounting {
    /// Tries left; 0: the loader gave up on this deployment and boots the next one.
    pub tries_left: u32,
    /// Tries made.
    pub tries_done: u32,
}

impl ImageStatus {
    fn cached(d: &Deployment, c: &CachedUpdate) -> ImageStatus {
        ImageStatus {
            image: d.origin.image.clone(),
            version: c.version.clone(),
            timestamp: c.timestamp.clone(),
            image_digest: c.manifest_digest,
            architecture: c.architecture.clone(),
        }
    }
}

impl BootEntry {
    /// The entry of deployment `d`; `download_only` marks a staged deployment that finalize will
    /// not apply. A cached update is shown only when its digest differs from the deployment's.
    pub fn new(d: &Deployment, download_only: bool) -> BootEntry {
        let o = &d.origin;
        BootEntry {
            image: ImageStatus {
                image: o.image.clone(),
                version: o.version.clone(),
                timestamp: o.timestamp.clone(),
                image_digest: o.manifest_digest,
                architecture: o.architecture.clone(),
            },
            cached_update: o
                .cached_update
                .as_ref()
                .filter(|c| c.manifest_digest != o.manifest_digest)
                .map(|c| ImageStatus::cached(d, c)),
            incompatible: false,
            pinned: o.pinned,
            soft_reboot_capable: false,
            download_only,
            store: Store::Ociboot,
            ostree: Null,
            composefs: Null,
            ociboot: OcibootDeployment {
                stateroot: d.stateroot.clone(),
                id: d.id.clone(),
                deploy_serial: o.serial,
                root: d.root.display().to_string(),
                kargs: o.kargs.join(" "),
                boot_counting: None,
                health: None,
            },
        }
    }

    /// The entry of `d` with what `state` knows of its boots: its counter and health verdict.
    fn of(state: &State, d: &Deployment, download_only: bool) -> BootEntry {
        let mut b = BootEntry::new(d, download_only);
        b.ociboot.boot_counting = state
            .entry_of(d)
            .and_then(|e| e.counter)
            .map(|c| BootCounting {
                tries_left: c.left,
                tries_done: c.done,
            });
        b.ociboot.health = state.health.get(&d.key()).cloned();
        b
    }
}

impl Host {
    /// The host object. `booted_only` keeps only the booted slot (`--booted`).
    pub fn new(state: &State, booted_only: bool) -> Host {
        let booted = state.booted();
        let rollback = if booted_only { None } else { state.rollback() };
        let staged = if booted_only {
            None
        } else {
            state.staged.as_ref()
        };
        let in_slot = |d: &Deployment| {
            let k = Some(d.key());
            k == booted.map(Deployment::key) || k == rollback.map(Deployment::key)
        };
        let other_deployments = if booted_only {
            Vec::new()
        } else {
            state
                .entries
                .iter()
                .filter(|(_, d)| !in_slot(d))
                .map(|(_, d)| BootEntry::of(state, d, false))
                .collect()
        };
        let rollback_queued = state.rollback_queued();
        Host {
            api_version: "org.containers.bootc/v1".into(),
            kind: "BootcHost".into(),
            metadata: Metadata {
                name: "host".into(),
            },
            spec: HostSpec {
                image: staged
                    .map(|(d, _)| &d.origin.image)
                    .or(booted.map(|d| &d.origin.image))
                    .cloned(),
                boot_order: if rollback_queued {
                    BootOrder::Rollback
                } else {
                    BootOrder::Default
                },
            },
            status: HostStatus {
                staged: staged.map(|(d, i)| BootEntry::of(state, d, i.locked)),
                booted: booted.map(|d| BootEntry::of(state, d, false)),
                rollback: rollback.map(|d| BootEntry::of(state, d, false)),
                other_deployments,
                rollback_queued,
                host_type: booted.map(|_| HostType::BootcHost),
                usr_overlay: Null,
                read_only: false,
            },
        }
    }

    /// The object as a JSON value; its maps are sorted by key (serde_json without
    /// `preserve_order`), which is what makes the JSON and YAML outputs sorted.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("the status object has string keys only")
    }

    /// Compact JSON with sorted keys, as bootc's canonical JSON.
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    /// Block YAML of the same value.
    pub fn to_yaml(&self) -> String {
        yaml::to_yaml(&self.to_value())
    }

    /// bootc's human-readable layout; `verbose` (`-v`) adds ociboot's rows.
    pub fn human(&self, verbose: bool) -> String {
        human::human(self, verbose)
    }
}

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
