//! Reading a sysroot's [`State`] back from disk: the entries in boot order (as loader.conf
//! records them) with their deployments, the staged deployment (`<run>/staged.json`) and the
//! booted one (`ociboot=` on the running kernel's command line). Also the one writer of
//! `staged.json`.
//!
//! State is never cached or kept in memory across operations: every operation reads it again.
//! Reading must never change anything on disk.

use super::{split_key, Deployment, StagedInfo, Sysroot};
use crate::bls::{self, Entry};
use crate::cmdline;
use crate::error::{Ctx, Error, Result};
use crate::origin::Origin;

/// What is on disk now.
#[derive(Debug, Clone)]
pub struct State {
    /// Deployments in boot order (default first), with their entries.
    pub entries: Vec<(Entry, Deployment)>,
    /// The deployment staged for the next boot and its `staged.json` record, if any.
    pub staged: Option<(Deployment, StagedInfo)>,
    /// The `ociboot=` value on the running kernel's command line, if it names an entry.
    pub booted: Option<String>,
    /// The last health verdict of each deployment that has one, by `<stateroot>/<id>`.
    pub health: std::collections::BTreeMap<String, crate::health::Verdict>,
}

impl State {
    /// The position of the booted deployment in `entries`, if booted into one of them.
    pub fn booted_index(&self) -> Option<usize> {
        let b = self.booted.as_ref()?;
        self.entries.iter().position(|(_, d)| &d.key() == b)
    }

    /// The booted deployment, if it has an entry.
    pub fn booted(&self) -> Option<&Deployment> {
        self.booted_index().map(|i| &self.entries[i].1)
    }

    /// The position of the rollback deployment: the first entry other than the booted one. `None`
    /// when not booted into an entry.
    pub fn rollback_index(&self) -> Option<usize> {
        let b = self.booted_index();
        self.entries
            .iter()
            .position(|(_, d)| Some(d.key()) != self.booted && b.is_some())
    }

    /// The rollback deployment (see [`State::rollback_index`]).
    pub fn rollback(&self) -> Option<&Deployment> {
        self.rollback_index().map(|i| &self.entries[i].1)
    }

    /// The entry of a deployment, if it has one.
    pub fn entry_of(&self, d: &Deployment) -> Option<&Entry> {
        let k = d.key();
        self.entries
            .iter()
            .find(|(_, x)| x.key() == k)
            .map(|(e, _)| e)
    }

    /// A deployment of this image that the loader gave up on (its entry has no tries left):
    /// an update to the same digest is not staged again.
    pub fn given_up(&self, digest: &ociboot_oci::Sha256Digest) -> Option<&Deployment> {
        self.entries
            .iter()
            .find(|(e, d)| {
                e.counter.is_some_and(|c| c.given_up()) && d.origin.manifest_digest == *digest
            })
            .map(|(_, d)| d)
    }

    /// The rollback deployment sorts before the booted one.
    pub fn rollback_queued(&self) -> bool {
        matches!((self.rollback_index(), self.booted_index()), (Some(r), Some(b)) if r < b)
    }
}

impl Sysroot {
    /// Load a deployment by `<stateroot>/<id>`.
    pub fn deployment(&self, key: &str) -> Result<Deployment> {
        let (s, id) =
            split_key(key).ok_or_else(|| Error::Invalid(format!("bad deployment name {key:?}")))?;
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
        self.state_booted_by(&cmdline::proc_cmdline())
    }

    /// [`Sysroot::state`] with `cmdline` as the running kernel's command line.
    pub(crate) fn state_booted_by(&self, cmdline: &str) -> Result<State> {
        let mut entries = Vec::new();
        for e in bls::read_entries(&self.boot)? {
            let Some(key) = e.deployment_key().map(str::to_string) else {
                continue;
            };
            let d = self.deployment(&key)?;
            entries.push((e, d));
        }
        let staged = self.read_staged()?.and_then(|info| {
            self.deployment(&format!("{}/{}", info.stateroot, info.id))
                .ok()
                .map(|d| (d, info))
        });
        let booted = cmdline::deployment_key(cmdline)
            .filter(|k| entries.iter().any(|(_, d)| d.key() == *k))
            .map(str::to_string);
        let health = entries
            .iter()
            .map(|(_, d)| d)
            .chain(staged.as_ref().map(|(d, _)| d))
            .filter_map(|d| self.health(d).map(|v| (d.key(), v)))
            .collect();
        Ok(State {
            entries,
            staged,
            booted,
            health,
        })
    }

    /// `<run>/staged.json`: `None` only when there is no such file; any other failure to read
    /// or parse it is an error naming it.
    fn read_staged(&self) -> Result<Option<StagedInfo>> {
        let p = self.staged_file();
        let data = match std::fs::read(&p) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Ok(Err(e).at("reading", &p)?),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))
    }

    /// Replace `<run>/staged.json` (new file, fsync, rename).
    pub(super) fn write_staged(&self, info: &StagedInfo) -> Result<()> {
        let data =
            serde_json::to_vec(info).map_err(ociboot_store::Error::serialize("staged.json"))?;
        ociboot_fs::write_atomic(&self.staged_file(), &data)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{fake_sysroot, write_order};
    use super::*;

    #[test]
    fn state_is_read_back_from_disk() {
        let (_d, s) = fake_sysroot(&["a.0", "b.0", "c.0", "d.0"]);
        write_order(&s, &["c.0", "a.0", "b.0"]);
        s.write_staged(&StagedInfo {
            stateroot: "default".into(),
            id: "d.0".into(),
            locked: true,
        })
        .unwrap();
        let st = s
            .state_booted_by("root=x ociboot=default/a.0 quiet\n")
            .unwrap();
        let keys: Vec<String> = st.entries.iter().map(|(_, d)| d.key()).collect();
        assert_eq!(keys, ["default/c.0", "default/a.0", "default/b.0"]);
        assert_eq!(st.booted.as_deref(), Some("default/a.0"));
        assert_eq!(st.booted().unwrap().origin.id, "a.0");
        // The first entry that is not the booted one, and it sorts first: queued.
        assert_eq!(st.rollback().unwrap().id, "c.0");
        assert!(st.rollback_queued());
        let (d, info) = st.staged.as_ref().unwrap();
        assert_eq!((d.id.as_str(), info.locked), ("d.0", true));
    }

    #[test]
    fn booted_only_when_an_entry_names_it() {
        let (_d, s) = fake_sysroot(&["a.0", "b.0"]);
        write_order(&s, &["a.0"]);
        // b.0 exists but no entry names it: not booted, no rollback.
        let st = s.state_booted_by("ociboot=default/b.0").unwrap();
        assert!(st.booted().is_none() && st.rollback().is_none());
        let st = s.state_booted_by("ociboot=default/a.0").unwrap();
        assert_eq!(st.booted().unwrap().id, "a.0");
        assert!(st.rollback().is_none() && !st.rollback_queued());
        assert!(st.staged.is_none());
    }

    #[test]
    fn only_a_missing_staged_json_means_nothing_staged() {
        let (_d, s) = fake_sysroot(&["a.0"]);
        write_order(&s, &["a.0"]);
        assert!(s.state_booted_by("").unwrap().staged.is_none());
        // Unreadable (a directory where the file should be): an error naming the file.
        std::fs::create_dir_all(s.staged_file()).unwrap();
        let err = s.state_booted_by("").unwrap_err();
        assert!(matches!(&err, Error::Io(_)), "{err}");
        assert_eq!(err.io_path(), Some(s.staged_file().as_path()));
        assert!(err.to_string().contains("staged.json"), "{err}");
        // Unparsable: an error naming the file too.
        std::fs::remove_dir(s.staged_file()).unwrap();
        std::fs::write(s.staged_file(), b"{not json").unwrap();
        let err = s.state_booted_by("").unwrap_err();
        assert!(err.to_string().contains("staged.json"), "{err}");
    }

    #[test]
    fn bad_deployment_names_are_refused() {
        let (_d, s) = fake_sysroot(&["a.0"]);
        for k in ["a.0", "default/../x", "default/.a", "/a.0", "default/"] {
            assert!(s.deployment(k).is_err(), "{k}");
        }
        assert!(s.deployment("default/missing.0").is_err());
        assert_eq!(s.deployment("default/a.0").unwrap().origin.serial, 0);
    }
}
