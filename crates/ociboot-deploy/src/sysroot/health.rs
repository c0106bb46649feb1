//! The health verdicts of deployments: the checks' verdict handed from `ociboot-health.service`
//! to `ociboot-health-assess.service` through `<run>/health-checks.json`, the boot's verdict
//! recorded beside the deployment's origin (`<id>.health`, shown by `status`), and the
//! decision to reboot a failed counted try.
//!
//! Records are written without the deployments lock: only the booted deployment's, which no
//! GC removes, and each by one rename.

use super::{not_booted, Deployment, Sysroot};
use crate::error::{Error, Result};
use crate::health::{self, Config, Failure, Next, Verdict};

/// A boot's assessment: the deployment, its verdict, and what happens next.
#[derive(Debug, Clone)]
pub struct Assessment {
    /// The booted deployment (`<stateroot>/<id>`).
    pub deployment: String,
    /// The verdict, as recorded.
    pub verdict: Verdict,
    /// Whether the booted entry is still being tried by the loader, and its tries.
    pub counter: Option<crate::bls::Counter>,
    /// What follows.
    pub next: Next,
}

/// The file that marks this boot as having asked for its automatic reboot.
const REBOOTED: &str = "health-rebooted";

impl Sysroot {
    fn checks_file(&self) -> std::path::PathBuf {
        self.run.join("health-checks.json")
    }

    /// Keep the checks' verdict for the assessment after `boot-complete.target`.
    pub fn save_checks_verdict(&self, v: &Verdict) -> Result<()> {
        std::fs::create_dir_all(&self.run)
            .map_err(|e| Error::Invalid(format!("{}: {e}", self.run.display())))?;
        let data = serde_json::to_vec(v).map_err(ociboot_store::Error::serialize("verdict"))?;
        ociboot_fs::write_atomic(&self.checks_file(), &data)?;
        Ok(())
    }

    /// The last recorded verdict of a deployment; `None` when there is none or it does not
    /// read (status must not fail on it).
    pub fn health(&self, d: &Deployment) -> Option<Verdict> {
        let p = self.health_path(&d.stateroot, &d.id);
        let data = std::fs::read(&p).ok()?;
        match serde_json::from_slice(&data) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("{}: {e}", p.display());
                None
            }
        }
    }

    /// Assess the booted deployment's boot once `boot-complete.target` is settled: `reached`
    /// is whether it was reached, `units` the units it requires that failed (found by the
    /// caller through systemd). The checks' verdict comes from `ociboot-health.service`. The
    /// verdict is recorded; a failed counted try is marked as rebooting (once per boot).
    pub fn assess_boot(
        &self,
        reached: bool,
        units: Vec<Failure>,
        config: &Config,
    ) -> Result<Assessment> {
        self.assess_booted_by(&crate::cmdline::proc_cmdline(), reached, units, config)
    }

    fn assess_booted_by(
        &self,
        cmdline: &str,
        reached: bool,
        units: Vec<Failure>,
        config: &Config,
    ) -> Result<Assessment> {
        let state = self.state_booted_by(cmdline)?;
        let i = state.booted_index().ok_or_else(not_booted)?;
        let (entry, d) = &state.entries[i];
        let checks: Option<Verdict> = std::fs::read(self.checks_file())
            .ok()
            .and_then(|data| serde_json::from_slice(&data).ok());
        let (mut failed, warnings) = match checks {
            Some(v) => (v.failed, v.warnings),
            None => (Vec::new(), Vec::new()),
        };
        failed.extend(units);
        if !reached && failed.is_empty() {
            failed.push(Failure {
                check: "boot-complete.target".into(),
                reason: "not reached".into(),
            });
        }
        let verdict = Verdict::new(failed, warnings);
        let data =
            serde_json::to_vec(&verdict).map_err(ociboot_store::Error::serialize("verdict"))?;
        ociboot_fs::write_atomic(&self.health_path(&d.stateroot, &d.id), &data)?;
        let marker = self.run.join(REBOOTED);
        let next = health::next(&verdict, entry.counter.is_some(), marker.exists(), config);
        if let Next::Reboot(_) = next {
            ociboot_fs::write_atomic(&marker, d.key().as_bytes())?;
        }
        Ok(Assessment {
            deployment: d.key(),
            verdict,
            counter: entry.counter,
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{fake_sysroot, write_order};
    use super::*;
    use crate::bls;

    #[test]
    fn a_failed_counted_try_is_recorded_and_reboots_once() {
        let (_d, s) = fake_sysroot(&["a.0", "b.0"]);
        write_order(&s, &["b.0"]);
        // a.0 the new default, being tried (its counter in the file name).
        let mut e = super::super::testutil::entry("a.0", "k");
        e.counter = Some(bls::Counter { left: 2, done: 1 });
        let b = super::super::testutil::entry("b.0", "k");
        bls::write_entries(&s.boot, &[e, b], || {}).unwrap();
        let booted = |s: &Sysroot| s.state_booted_by("ociboot=default/a.0").unwrap();
        assert_eq!(booted(&s).booted.as_deref(), Some("default/a.0"));
        s.save_checks_verdict(&Verdict::new(
            vec![Failure {
                check: "50-app".into(),
                reason: "exit status 1: no app".into(),
            }],
            vec![],
        ))
        .unwrap();
        let c = Config::default();
        let a = s
            .assess_booted_by("ociboot=default/a.0", false, vec![], &c)
            .unwrap();
        assert_eq!(a.next, Next::Reboot(c.reboot_delay));
        assert_eq!(a.verdict.summary(), "50-app (exit status 1: no app)");
        let d = s.deployment("default/a.0").unwrap();
        assert_eq!(s.health(&d).unwrap().summary(), a.verdict.summary());
        // Assessed again in the same boot: no second automatic reboot.
        let a = s
            .assess_booted_by("ociboot=default/a.0", false, vec![], &c)
            .unwrap();
        assert_eq!(a.next, Next::AlreadyRebooted);
        // b.0 is not counted: a failure there is recorded, and nothing reboots.
        std::fs::remove_file(s.checks_file()).unwrap();
        std::fs::remove_file(s.run.join(REBOOTED)).unwrap();
        let unit = Failure {
            check: "app.service".into(),
            reason: "exit-code".into(),
        };
        let a = s
            .assess_booted_by("ociboot=default/b.0", false, vec![unit], &c)
            .unwrap();
        assert_eq!(a.next, Next::NotCounted);
        assert_eq!(a.verdict.summary(), "app.service (exit-code)");
        let a = s
            .assess_booted_by("ociboot=default/b.0", false, vec![], &c)
            .unwrap();
        assert_eq!(a.verdict.summary(), "boot-complete.target (not reached)");
        let a = s
            .assess_booted_by("ociboot=default/b.0", true, vec![], &c)
            .unwrap();
        assert_eq!(a.next, Next::Stay);
        let d = s.deployment("default/b.0").unwrap();
        assert_eq!(s.health(&d).unwrap().result, health::Outcome::Passed);
    }
}
