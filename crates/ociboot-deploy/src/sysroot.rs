//! A sysroot's deployments and the operations on them: install, stage, finalize, rollback,
//! pin, garbage collection.
//!
//! ```text
//! <sysroot>/ociboot/deploy/<stateroot>/
//!   var/                       the stateroot's one /var, seeded from the first image
//!   deploy/<id>/               a deployment: hardlinks into the store, own etc/, usr/etc pristine
//!   deploy/<id>.origin         JSON: image, digests, kargs, pinned, cached update
//! <run>/staged.json            the staged deployment (run = /run/ociboot on a real system)
//! <sysroot>/boot/…             BLS entries and kernels, see bls.rs
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ociboot_oci::{ImageReference, RegistryOptions, Sha256Digest};
use ociboot_store::{Content, PullProgress, Store, Tree, UnpackMode};
use serde::{Deserialize, Serialize};

use crate::bls::{self, Entry};
use crate::error::{Ctx, Error, Result};
use crate::etcmerge;
use crate::fstree;
use crate::kargs;
use crate::origin::{BootFiles, CachedUpdate, Origin};

fn hit(step: &str) {
    ociboot_store::failpoint::hit(step);
}

/// Every named step where a test build can abort, in order of the operations.
pub const STEPS: &[&str] = &[
    "stage-deployed",
    "stage-staged-written",
    "finalize-unlinked",
    "finalize-etc-merged",
    "finalize-entries-synced",
    "finalize-entries-swapped",
    "rollback-entries-synced",
    "gc-deployments-removed",
    "gc-store-pruned",
];

/// A physical root holding deployments.
#[derive(Debug, Clone)]
pub struct Sysroot {
    pub root: PathBuf,
    pub boot: PathBuf,
    /// Runtime state (gone at reboot on a real system).
    pub run: PathBuf,
}

/// A deployment and its origin.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub stateroot: String,
    pub id: String,
    pub root: PathBuf,
    pub origin: Origin,
}

impl Deployment {
    /// The `ociboot=` value: `<stateroot>/<id>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.stateroot, self.id)
    }
}

/// `<run>/staged.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StagedInfo {
    pub stateroot: String,
    pub id: String,
    /// `upgrade --download-only`: not applied at shutdown.
    pub locked: bool,
}

/// What is on disk now.
#[derive(Debug, Clone)]
pub struct State {
    /// Deployments in boot order (default first), with their entries.
    pub entries: Vec<(Entry, Deployment)>,
    pub staged: Option<(Deployment, StagedInfo)>,
    /// The `ociboot=` value on the running kernel's command line, if it names an entry.
    pub booted: Option<String>,
}

impl State {
    pub fn booted_index(&self) -> Option<usize> {
        let b = self.booted.as_ref()?;
        self.entries.iter().position(|(_, d)| &d.key() == b)
    }

    pub fn booted(&self) -> Option<&Deployment> {
        self.booted_index().map(|i| &self.entries[i].1)
    }

    pub fn rollback_index(&self) -> Option<usize> {
        let b = self.booted_index();
        self.entries
            .iter()
            .position(|(_, d)| Some(d.key()) != self.booted && b.is_some())
    }

    pub fn rollback(&self) -> Option<&Deployment> {
        self.rollback_index().map(|i| &self.entries[i].1)
    }

    /// The rollback deployment sorts before the booted one.
    pub fn rollback_queued(&self) -> bool {
        matches!((self.rollback_index(), self.booted_index()), (Some(r), Some(b)) if r < b)
    }
}

/// Options of `install to-filesystem`.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    pub source: Option<ImageReference>,
    pub target: Option<ImageReference>,
    pub stateroot: String,
    pub kargs: Vec<String>,
    /// `root=` value; empty for none.
    pub root_mount_spec: Option<String>,
}

/// The kernel command line as the bootloader passed it: `OCIBOOT_PROC_CMDLINE=FILE` (like
/// systemd's SYSTEMD_PROC_CMDLINE) or /proc/cmdline.
pub fn proc_cmdline() -> String {
    let path = std::env::var_os("OCIBOOT_PROC_CMDLINE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/proc/cmdline".into());
    std::fs::read_to_string(path).unwrap_or_default()
}

pub(crate) fn cmdline_key(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|a| a.strip_prefix("ociboot="))
        .map(str::to_string)
}

pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !s.starts_with('.')
}

impl Sysroot {
    /// The sysroot at `root`. Run-time state goes to `$OCIBOOT_RUN_DIR`, else `/run/ociboot`
    /// for the real system (`/` or `/sysroot`), else `<root>/run/ociboot`.
    pub fn new(root: &Path) -> Sysroot {
        let run = match std::env::var_os("OCIBOOT_RUN_DIR") {
            Some(r) => PathBuf::from(r),
            None if root == Path::new("/") || root == Path::new("/sysroot") => {
                PathBuf::from("/run/ociboot")
            }
            None => root.join("run/ociboot"),
        };
        // A booted system with its boot partition (the ESP) mounted at /boot.
        let boot = if root == Path::new("/sysroot") && is_mount_point(Path::new("/boot")) {
            PathBuf::from("/boot")
        } else {
            root.join("boot")
        };
        Sysroot {
            root: root.to_path_buf(),
            boot,
            run,
        }
    }

    /// A sysroot whose boot filesystem is elsewhere (the ESP's staging directory when
    /// installing to a disk).
    pub fn with_boot(root: &Path, boot: &Path) -> Sysroot {
        Sysroot {
            boot: boot.to_path_buf(),
            ..Sysroot::new(root)
        }
    }

    fn stateroot_dir(&self, s: &str) -> PathBuf {
        self.root.join("ociboot/deploy").join(s)
    }

    fn deploy_dir(&self, s: &str) -> PathBuf {
        self.stateroot_dir(s).join("deploy")
    }

    pub fn var_dir(&self, s: &str) -> PathBuf {
        self.stateroot_dir(s).join("var")
    }

    fn origin_path(&self, s: &str, id: &str) -> PathBuf {
        self.deploy_dir(s).join(format!("{id}.origin"))
    }

    fn staged_file(&self) -> PathBuf {
        self.run.join("staged.json")
    }

    /// Load a deployment by `<stateroot>/<id>`.
    pub fn deployment(&self, key: &str) -> Result<Deployment> {
        let (s, id) = key
            .split_once('/')
            .filter(|(s, id)| valid_name(s) && valid_name(id))
            .ok_or_else(|| Error::Invalid(format!("bad deployment name {key:?}")))?;
        let root = self.deploy_dir(s).join(id);
        if !root.is_dir() {
            return Err(Error::State(format!(
                "deployment {key} is missing ({})",
                root.display()
            )));
        }
        Ok(Deployment {
            stateroot: s.to_string(),
            id: id.to_string(),
            origin: Origin::read(&self.origin_path(s, id))?,
            root,
        })
    }

    /// Read entries, staged state and the booted deployment.
    pub fn state(&self) -> Result<State> {
        let mut entries = Vec::new();
        for e in bls::read_entries(&self.boot)? {
            let Some(key) = e.deployment_key().map(str::to_string) else {
                continue;
            };
            let d = self.deployment(&key)?;
            entries.push((e, d));
        }
        let staged = match std::fs::read(self.staged_file()) {
            Ok(data) => {
                let info: StagedInfo = serde_json::from_slice(&data).map_err(|e| {
                    Error::Invalid(format!("{}: {e}", self.staged_file().display()))
                })?;
                self.deployment(&format!("{}/{}", info.stateroot, info.id))
                    .ok()
                    .map(|d| (d, info))
            }
            Err(_) => None,
        };
        let booted =
            cmdline_key(&proc_cmdline()).filter(|k| entries.iter().any(|(_, d)| &d.key() == k));
        Ok(State {
            entries,
            staged,
            booted,
        })
    }

    fn next_id(&self, stateroot: &str, digest: &Sha256Digest) -> Result<(String, u32)> {
        let prefix = &digest.hex()[..16];
        let mut serial = 0;
        if let Ok(rd) = std::fs::read_dir(self.deploy_dir(stateroot)) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if let Some(rest) = n.strip_prefix(&format!("{prefix}.")) {
                    let num: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    if let Ok(s) = num.parse::<u32>() {
                        serial = serial.max(s + 1);
                    }
                }
            }
        }
        Ok((format!("{prefix}.{serial}"), serial))
    }

    /// Check out an image as a new deployment: files hardlinked from the store, the image's
    /// /etc kept pristine at usr/etc and copied to a writable etc, /var seeded into the
    /// stateroot if it is new. Written under `<id>.partial` and renamed when complete.
    ///
    /// Without `with_etc` (staging) the writable etc is left out: finalize makes it from the
    /// /etc of that moment, and nothing boots a deployment before that.
    fn deploy(
        &self,
        store: &Store,
        digest: &Sha256Digest,
        stateroot: &str,
        with_etc: bool,
    ) -> Result<(String, u32, PathBuf, Option<String>)> {
        let mut tree = store.tree(digest)?;
        let kernel_sum = bls::kernel_sum(&tree);
        let (id, serial) = self.next_id(stateroot, digest)?;
        let dir = self.deploy_dir(stateroot);
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let Content::Dir(top) = &mut tree.root.content else {
            return Err(Error::Invalid("image root is not a directory".into()));
        };
        let etc = top.remove(&b"etc"[..]);
        let var = top.remove(&b"var"[..]);
        if let Some(etc) = etc {
            let usr = top
                .entry(b"usr".to_vec())
                .or_insert_with(ociboot_store::Node::implicit_dir);
            let Content::Dir(u) = &mut usr.content else {
                return Err(Error::Invalid("the image's /usr is not a directory".into()));
            };
            if u.contains_key(&b"etc"[..]) {
                return Err(Error::Invalid(
                    "the image has both /etc and /usr/etc".into(),
                ));
            }
            u.insert(b"etc".to_vec(), etc);
        }
        let partial = dir.join(format!("{id}.partial"));
        ociboot_store::fsutil::remove_any(&partial)?;
        ociboot_store::unpack_with(store, &tree, &partial, UnpackMode::Hardlink)?;
        if with_etc {
            let usr_etc = partial.join("usr/etc");
            if usr_etc.is_dir() {
                fstree::copy_path(&usr_etc, &partial.join("etc"))?;
            } else {
                std::fs::create_dir(partial.join("etc"))
                    .ctx(|| format!("creating {}/etc", partial.display()))?;
            }
        }
        std::fs::create_dir_all(partial.join("var"))
            .ctx(|| format!("creating {}/var", partial.display()))?;
        std::fs::create_dir_all(partial.join("sysroot"))
            .ctx(|| format!("creating {}/sysroot", partial.display()))?;
        // /var: seeded only when the stateroot has none yet.
        let var_dir = self.var_dir(stateroot);
        let empty = std::fs::read_dir(&var_dir)
            .map(|mut r| r.next().is_none())
            .unwrap_or(true);
        if empty {
            let var_tree = Tree {
                root: var.unwrap_or_else(ociboot_store::Node::implicit_dir),
            };
            if var_tree.root.is_dir() {
                ociboot_store::fsutil::remove_any(&var_dir)?;
                ociboot_store::unpack(store, &var_tree, &var_dir)?;
            }
        }
        ociboot_store::fsutil::syncfs(&dir)?;
        let final_dir = dir.join(&id);
        std::fs::rename(&partial, &final_dir)
            .ctx(|| format!("renaming {} to {}", partial.display(), final_dir.display()))?;
        ociboot_store::fsutil::fsync_dir(&dir)?;
        Ok((id, serial, final_dir, kernel_sum))
    }

    /// The deployment's kernel in /boot: as recorded in its origin when it is still there
    /// (no need to read and hash it again), else installed now.
    fn boot_files(&self, d: &Deployment) -> Result<BootFiles> {
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
        let pretty = os_pretty_name(&d.root).unwrap_or_else(|| d.origin.image.to_string());
        let title = match &d.origin.version {
            Some(v) => format!("{pretty} {v} (ociboot:{}:{index})", d.stateroot),
            None => format!("{pretty} (ociboot:{}:{index})", d.stateroot),
        };
        let mut options = d.origin.kargs.join(" ");
        if !options.is_empty() {
            options.push(' ');
        }
        options.push_str(&format!("ociboot={}", d.key()));
        // The deployment's own static ociboot sets up the root at boot (see rootsetup.rs).
        if d.root.join(INIT_IN_IMAGE).is_file() {
            options.push_str(&format!(
                " init=/ociboot/deploy/{}/deploy/{}/{INIT_IN_IMAGE}",
                d.stateroot, d.id
            ));
        }
        Ok(Entry {
            title,
            version: 0,
            linux: k.linux,
            initrd: k.initrd,
            options,
        })
    }

    /// Write the entry set for these deployments, in this order.
    fn write_entries(&self, order: &[&Deployment], before_swap: &str) -> Result<()> {
        let entries = order
            .iter()
            .enumerate()
            .map(|(i, d)| self.entry_for(d, i))
            .collect::<Result<Vec<_>>>()?;
        bls::write_entries(&self.boot, &entries, || hit(before_swap))
    }

    /// `install to-filesystem`: pull, deploy, write the first entry.
    pub fn install(
        &self,
        store: &Store,
        opts: &InstallOptions,
        reg: &RegistryOptions,
        progress: &dyn PullProgress,
    ) -> Result<Deployment> {
        if !valid_name(&opts.stateroot) {
            return Err(Error::Invalid(format!(
                "bad stateroot name {:?}",
                opts.stateroot
            )));
        }
        if !bls::read_entries(&self.boot)?.is_empty() || self.root.join("ociboot/deploy").exists() {
            return Err(Error::State(format!(
                "{} already has deployments",
                self.root.display()
            )));
        }
        let source = opts.source.clone().ok_or_else(|| {
            Error::Invalid(
                "--source-imgref is required (ociboot cannot find its own image yet)".into(),
            )
        })?;
        let pulled = store.pull(&source, reg, progress)?;
        let (id, serial, root, kernel_sum) =
            self.deploy(store, &pulled.manifest_digest, &opts.stateroot, true)?;
        let kernel =
            bls::install_kernel(&self.boot, &opts.stateroot, &root, kernel_sum.as_deref())?;
        // Where the initramfs moves /dev, /proc, /sys and /run before running init=.
        for api in ["dev", "proc", "sys", "run"] {
            let p = self.root.join(api);
            std::fs::create_dir_all(&p).ctx(|| format!("creating {}", p.display()))?;
        }
        let image_kargs = kargs::image_kargs(&root)?;
        let mut all = Vec::new();
        if let Some(spec) = opts.root_mount_spec.as_deref().filter(|s| !s.is_empty()) {
            all.push(format!("root={spec}"));
            all.push("rw".to_string());
        }
        all.extend(image_kargs.iter().cloned());
        all.extend(opts.kargs.iter().cloned());
        let mut origin = self.make_origin(
            store,
            opts.target.clone().unwrap_or(source),
            &pulled.manifest_digest,
            &opts.stateroot,
            &id,
            serial,
            all,
            image_kargs,
        )?;
        origin.kernel = Some(kernel.into());
        origin.write(&self.origin_path(&opts.stateroot, &id))?;
        let d = Deployment {
            stateroot: opts.stateroot.clone(),
            id,
            root,
            origin,
        };
        self.write_entries(&[&d], "install-entries-synced")?;
        Ok(d)
    }

    #[allow(clippy::too_many_arguments)]
    fn make_origin(
        &self,
        store: &Store,
        image: ImageReference,
        digest: &Sha256Digest,
        stateroot: &str,
        id: &str,
        serial: u32,
        kargs: Vec<String>,
        image_kargs: Vec<String>,
    ) -> Result<Origin> {
        let rec = store.image_record(digest)?;
        Ok(Origin {
            image,
            manifest_digest: *digest,
            config_digest: rec.config_digest,
            version: rec.version,
            timestamp: rec.created,
            architecture: rec.architecture,
            stateroot: stateroot.to_string(),
            id: id.to_string(),
            serial,
            kargs,
            image_kargs,
            pinned: false,
            cached_update: None,
            deployed_at: ociboot_store::time::now(),
            kernel: None,
        })
    }

    /// Stage `image` (already in the store as `digest`) for the next boot, merging /etc from
    /// the booted deployment now so that conflicts are reported before anything is staged.
    pub fn stage(
        &self,
        store: &Store,
        image: &ImageReference,
        digest: &Sha256Digest,
        locked: bool,
    ) -> Result<Deployment> {
        let state = self.state()?;
        let booted = state.booted().cloned().ok_or_else(not_booted)?;
        let stateroot = booted.stateroot.clone();
        // The booted /etc and its pristine copy are read while the checkout runs.
        let (orig, live) = (booted.root.join("usr/etc"), booted.root.join("etc"));
        let (scans, deployed) = std::thread::scope(|s| {
            let scans = s.spawn(|| Ok::<_, Error>((fstree::scan(&orig)?, fstree::scan(&live)?)));
            let deployed = self.deploy(store, digest, &stateroot, false);
            let scans = scans
                .join()
                .unwrap_or_else(|_| Err(Error::State("scanning /etc panicked".into())));
            (scans, deployed)
        });
        let (id, serial, root, kernel_sum) = deployed?;
        let cleanup = |e: Error| {
            let _ = fstree::remove_path(&root);
            e
        };
        // The merge itself happens at finalize, with /etc as it is then; conflicts now.
        let (o, m) = scans.map_err(cleanup)?;
        etcmerge::check_scanned(&o, &m, &root.join("usr/etc")).map_err(cleanup)?;
        let new_image_kargs = kargs::image_kargs(&root).map_err(cleanup)?;
        let kargs = kargs::upgrade_kargs(
            &booted.origin.kargs,
            &booted.origin.image_kargs,
            &new_image_kargs,
        );
        let mut origin = self
            .make_origin(
                store,
                image.clone(),
                digest,
                &stateroot,
                &id,
                serial,
                kargs,
                new_image_kargs,
            )
            .map_err(cleanup)?;
        // The kernel goes to /boot now, so finalizing at shutdown only writes entries.
        let k = bls::install_kernel(&self.boot, &stateroot, &root, kernel_sum.as_deref())
            .map_err(cleanup)?;
        origin.kernel = Some(k.into());
        origin
            .write(&self.origin_path(&stateroot, &id))
            .map_err(cleanup)?;
        hit("stage-deployed");
        std::fs::create_dir_all(&self.run).ctx(|| format!("creating {}", self.run.display()))?;
        let info = StagedInfo {
            stateroot: stateroot.clone(),
            id: id.clone(),
            locked,
        };
        let data = serde_json::to_vec(&info).map_err(|e| Error::Invalid(e.to_string()))?;
        ociboot_store::fsutil::write_atomic(&self.staged_file(), &data)?;
        hit("stage-staged-written");
        if self.run == Path::new("/run/ociboot") {
            let _ = std::fs::write(
                "/run/reboot-required",
                format!("ociboot: Reboot required for image: {digest}\n"),
            );
        }
        Ok(Deployment {
            stateroot,
            id,
            root,
            origin,
        })
    }

    /// Unlock a staged deployment made with `--download-only`.
    pub fn unlock_staged(&self) -> Result<bool> {
        let state = self.state()?;
        let Some((_, mut info)) = state.staged else {
            return Ok(false);
        };
        if !info.locked {
            return Ok(false);
        }
        info.locked = false;
        let data = serde_json::to_vec(&info).map_err(|e| Error::Invalid(e.to_string()))?;
        ociboot_store::fsutil::write_atomic(&self.staged_file(), &data)?;
        Ok(true)
    }

    /// What the shutdown unit runs: merge /etc as it is now into the staged deployment and
    /// make it the default. Returns the finalized deployment, if any.
    pub fn finalize_staged(&self) -> Result<Option<Deployment>> {
        let state = self.state()?;
        let Some((staged, info)) = state.staged.clone() else {
            return Ok(None);
        };
        if info.locked {
            return Ok(None);
        }
        let booted = state.booted().cloned().ok_or_else(not_booted)?;
        // Never retried: if this is interrupted, the old deployment boots.
        std::fs::remove_file(self.staged_file())
            .ctx(|| format!("removing {}", self.staged_file().display()))?;
        ociboot_store::fsutil::fsync_dir(&self.run)?;
        hit("finalize-unlinked");
        // /etc as it is at this moment, into a fresh copy of the new pristine /etc, swapped in.
        let new_etc = staged.root.join("etc.merged");
        fstree::remove_path(&new_etc)?;
        let usr_etc = staged.root.join("usr/etc");
        let (orig, live) = (booted.root.join("usr/etc"), booted.root.join("etc"));
        // The shutdown waits for this: read the booted /etc and its pristine copy on a
        // second thread while the new pristine /etc is copied.
        let (scans, copied) = std::thread::scope(|s| {
            let scans = s.spawn(|| Ok::<_, Error>((fstree::scan(&orig)?, fstree::scan(&live)?)));
            let copied = if usr_etc.is_dir() {
                fstree::copy_path(&usr_etc, &new_etc)
            } else {
                std::fs::create_dir(&new_etc).ctx(|| format!("creating {}", new_etc.display()))
            };
            let scans = scans
                .join()
                .unwrap_or_else(|_| Err(Error::State("scanning /etc panicked".into())));
            (scans, copied)
        });
        copied?;
        let (o, m) = scans?;
        etcmerge::merge_scanned(&o, &m, &live, &new_etc)?;
        ociboot_store::fsutil::syncfs(&staged.root)?;
        // Staging leaves etc out; the merged one appears by one rename.
        let etc = staged.root.join("etc");
        fstree::remove_path(&etc)?;
        std::fs::rename(&new_etc, &etc).ctx(|| format!("renaming {} to etc", new_etc.display()))?;
        ociboot_store::fsutil::fsync_dir(&staged.root)?;
        hit("finalize-etc-merged");
        let mut order: Vec<&Deployment> = vec![&staged, &booted];
        for (_, d) in &state.entries {
            if d.origin.pinned && d.key() != booted.key() {
                order.push(d);
            }
        }
        self.write_entries(&order, "finalize-entries-synced")?;
        hit("finalize-entries-swapped");
        Ok(Some(staged))
    }

    /// Make the rollback deployment the default (or undo a queued rollback). Drops a staged
    /// deployment. Returns true if a queued rollback was reverted.
    pub fn rollback(&self) -> Result<bool> {
        let state = self.state()?;
        let booted = state.booted().ok_or_else(not_booted)?;
        let rollback = state
            .rollback()
            .ok_or_else(|| Error::State("no rollback deployment to switch to".into()))?;
        let reverting = state.rollback_queued();
        let mut order: Vec<&Deployment> = if reverting {
            vec![booted, rollback]
        } else {
            vec![rollback, booted]
        };
        for (_, d) in &state.entries {
            if d.key() != booted.key() && d.key() != rollback.key() {
                order.push(d);
            }
        }
        // A staged deployment is dropped (the GC removes its directory later).
        if state.staged.is_some() {
            std::fs::remove_file(self.staged_file())
                .ctx(|| format!("removing {}", self.staged_file().display()))?;
        }
        self.write_entries(&order, "rollback-entries-synced")?;
        Ok(reverting)
    }

    /// Pin or unpin the deployment at `which` (its index in boot order, or its id).
    pub fn set_pinned(&self, which: &str, pinned: bool) -> Result<Deployment> {
        let state = self.state()?;
        let d = match which.parse::<usize>() {
            Ok(i) => state.entries.get(i).map(|(_, d)| d.clone()),
            Err(_) => state
                .entries
                .iter()
                .map(|(_, d)| d)
                .find(|d| d.id == which || d.key() == which)
                .cloned(),
        }
        .ok_or_else(|| {
            Error::Invalid(format!(
                "no deployment {which:?} in the boot entries (staged deployments cannot be pinned)"
            ))
        })?;
        let mut o = d.origin.clone();
        o.pinned = pinned;
        o.write(&self.origin_path(&d.stateroot, &d.id))?;
        Ok(Deployment { origin: o, ..d })
    }

    /// Record what `upgrade --check` found on the booted deployment.
    pub fn set_cached_update(&self, d: &Deployment, cached: Option<CachedUpdate>) -> Result<()> {
        let mut o = d.origin.clone();
        o.cached_update = cached;
        o.write(&self.origin_path(&d.stateroot, &d.id))
    }

    /// Remove deployments no entry, staged state or pin needs, kernels no entry uses, and
    /// store content no kept deployment uses (refs in `retain` stay).
    ///
    /// The store is pruned only when this removed a deployment or a reference (or `full`):
    /// walking every object is the expensive part, and there is nothing new to free otherwise.
    pub fn gc(&self, store: &Store, retain: &[ImageReference], full: bool) -> Result<GcReport> {
        let state = self.state()?;
        let mut keep: BTreeSet<String> = state.entries.iter().map(|(_, d)| d.key()).collect();
        if let Some((d, _)) = &state.staged {
            keep.insert(d.key());
        }
        let mut report = GcReport::default();
        let base = self.root.join("ociboot/deploy");
        let mut live_digests = BTreeSet::new();
        let mut live_refs = BTreeSet::new();
        for sr in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let stateroot = sr.file_name().to_string_lossy().to_string();
            let dir = self.deploy_dir(&stateroot);
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                let id = n.strip_suffix(".origin").unwrap_or(&n).to_string();
                let key = format!("{stateroot}/{id}");
                if keep.contains(&key) && !n.ends_with(".partial") {
                    if n.ends_with(".origin") {
                        if let Ok(o) = Origin::read(&e.path()) {
                            live_digests.insert(o.manifest_digest);
                            live_refs.insert(o.image.clone());
                        }
                    }
                    continue;
                }
                if !n.ends_with(".origin") {
                    report.deployments += 1;
                }
                fstree::remove_path(&e.path())?;
            }
        }
        hit("gc-deployments-removed");
        let entries: Vec<Entry> = state.entries.iter().map(|(e, _)| e.clone()).collect();
        let mut kernel_users = entries;
        if let Some((d, _)) = &state.staged {
            if let Ok(k) = self.boot_files(d) {
                kernel_users.push(Entry {
                    title: String::new(),
                    version: 0,
                    linux: k.linux,
                    initrd: k.initrd,
                    options: String::new(),
                });
            }
        }
        for k in bls::unused_kernel_dirs(&self.boot, &kernel_users)? {
            fstree::remove_path(&k)?;
            report.kernels += 1;
        }
        // Store: refs no kept deployment uses go (unless retained), then unreferenced content.
        for r in store.refs()? {
            if !live_refs.contains(&r.reference)
                && !live_digests.contains(&r.manifest_digest)
                && !retain.contains(&r.reference)
            {
                store.remove_ref(&r.reference)?;
                report.refs += 1;
            }
        }
        if !(full || report.deployments > 0 || report.refs > 0) {
            hit("gc-store-pruned");
            return Ok(report);
        }
        let digests: Vec<Sha256Digest> = live_digests.into_iter().collect();
        let p = store.prune(&digests)?;
        hit("gc-store-pruned");
        report.images = p.images;
        report.bytes = p.bytes;
        Ok(report)
    }
}

impl Sysroot {
    /// How the stateroot's /var differs from the image's /var (which seeded it). The image's
    /// /var is unpacked to a scratch directory under the run directory to compare.
    pub fn var_drift(&self, d: &Deployment) -> Result<etcmerge::EtcDiff> {
        let store = Store::open_read(&self.root, &|_| {})?;
        let mut tree = store.tree(&d.origin.manifest_digest)?;
        let Content::Dir(top) = &mut tree.root.content else {
            return Err(Error::Invalid("image root is not a directory".into()));
        };
        let var = top
            .remove(&b"var"[..])
            .unwrap_or_else(ociboot_store::Node::implicit_dir);
        std::fs::create_dir_all(&self.run).ctx(|| format!("creating {}", self.run.display()))?;
        let scratch = self.run.join(format!("var-image-{}", std::process::id()));
        fstree::remove_path(&scratch)?;
        let res = (|| {
            if var.is_dir() {
                ociboot_store::unpack(&store, &Tree { root: var }, &scratch)?;
            }
            let image = fstree::scan(&scratch)?;
            let live = fstree::scan(&self.var_dir(&d.stateroot))?;
            Ok(etcmerge::diff(&image, &live))
        })();
        fstree::remove_path(&scratch)?;
        res
    }
}

/// What garbage collection removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct GcReport {
    pub deployments: u64,
    pub refs: u64,
    pub kernels: u64,
    pub images: u64,
    pub bytes: u64,
}

impl From<bls::Kernel> for BootFiles {
    fn from(k: bls::Kernel) -> BootFiles {
        BootFiles {
            linux: k.linux,
            initrd: k.initrd,
        }
    }
}

/// Where an image carries the ociboot binary that sets up the root at boot.
pub const INIT_IN_IMAGE: &str = "usr/bin/ociboot";

pub(crate) fn is_mount_point(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(m), Some(Ok(parent))) => m.dev() != parent.dev(),
        _ => false,
    }
}

fn not_booted() -> Error {
    Error::State(
        "not booted into an ociboot deployment (no ociboot= on the kernel command line that names a boot entry)".into(),
    )
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
