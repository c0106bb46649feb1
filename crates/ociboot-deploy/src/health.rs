//! Health checks of the booted deployment, and the verdict that decides whether a counted boot
//! is given another try.
//!
//! ```text
//! /usr/lib/ociboot/health.d/NAME   required checks from the image
//! /etc/ociboot/health.d/NAME       required checks from the admin; the same NAME overrides the
//!                                  image's, a symlink to /dev/null disables it
//! /usr/lib/ociboot/wanted.d/NAME,  wanted checks: a failure is only a warning
//! /etc/ociboot/wanted.d/NAME
//! /etc/ociboot/health.toml         [health] check-timeout-seconds, reboot-delay-seconds
//!                                  (else /usr/lib/ociboot/health.toml, else the defaults)
//! ```
//!
//! `ociboot-health.service` (before `boot-complete.target`, required by it) runs the checks in
//! name order, each with a timeout, stopping at the first required failure; units an image or
//! admin makes required by `boot-complete.target` count as required checks through systemd
//! itself. `ociboot-health-assess.service` (after the target) records the verdict next to the
//! deployment's origin, and when the target was not reached on a counted try, reboots after a
//! delay so that the loader counts the try down. This module decides; the CLI asks systemd and
//! reboots.

mod run;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use run::run_checks;

/// Directories of required checks, image first: a later one's NAME overrides an earlier one's.
pub const REQUIRED_DIRS: [&str; 2] = ["usr/lib/ociboot/health.d", "etc/ociboot/health.d"];
/// Directories of wanted checks, in the same order.
pub const WANTED_DIRS: [&str; 2] = ["usr/lib/ociboot/wanted.d", "etc/ociboot/wanted.d"];
/// The configuration: the admin's, else the image's.
pub const CONFIG_FILES: [&str; 2] = ["etc/ociboot/health.toml", "usr/lib/ociboot/health.toml"];

/// The most checks read from one directory.
const MAX_CHECKS: usize = 256;

/// How checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The longest one check may run; past it the check is killed and has failed.
    pub check_timeout: Duration,
    /// How long a failed counted boot waits before it reboots (time to log in and stop it).
    pub reboot_delay: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            check_timeout: Duration::from_secs(300),
            reboot_delay: Duration::from_secs(30),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    health: Option<ConfigSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigSection {
    check_timeout_seconds: Option<u64>,
    reboot_delay_seconds: Option<u64>,
}

impl Config {
    /// The configuration of the system rooted at `root`: the first of [`CONFIG_FILES`] there.
    /// A file that does not parse, an unknown key or a value out of range is an error naming
    /// the file.
    pub fn load(root: &Path) -> Result<Config> {
        for rel in CONFIG_FILES {
            let p = root.join(rel);
            let text = match std::fs::read(&p) {
                Ok(t) if t.len() > 64 * 1024 => {
                    return Err(Error::Invalid(format!(
                        "{}: larger than 64 KiB",
                        p.display()
                    )))
                }
                Ok(t) => String::from_utf8_lossy(&t).into_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::Invalid(format!("{}: {e}", p.display()))),
            };
            return Config::parse(&text, &p.display().to_string());
        }
        Ok(Config::default())
    }

    fn parse(text: &str, what: &str) -> Result<Config> {
        let f: ConfigFile =
            toml::from_str(text).map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
        let mut c = Config::default();
        let Some(h) = f.health else { return Ok(c) };
        let secs = |v: Option<u64>, key: &str, min: u64, d: Duration| match v {
            None => Ok(d),
            Some(s) if (min..=86_400).contains(&s) => Ok(Duration::from_secs(s)),
            Some(s) => Err(Error::Invalid(format!(
                "{what}: {key} = {s} is out of range ({min} to 86400)"
            ))),
        };
        c.check_timeout = secs(
            h.check_timeout_seconds,
            "check-timeout-seconds",
            1,
            c.check_timeout,
        )?;
        c.reboot_delay = secs(
            h.reboot_delay_seconds,
            "reboot-delay-seconds",
            0,
            c.reboot_delay,
        )?;
        Ok(c)
    }
}

/// One check to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Its file name: what status and the journal call it.
    pub name: String,
    /// The executable.
    pub path: PathBuf,
    /// Required (its failure fails the boot) or wanted (only a warning).
    pub required: bool,
}

/// A check name fit for the journal and status: a plain file name, no control characters.
fn plain_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && !n.starts_with('.')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'+'))
}

/// The checks of the system rooted at `root`: required ones by name, then wanted ones.
/// A check in /etc replaces the image's of the same name; a symlink to /dev/null disables
/// it. Only executable files count; a name that is not a plain file name is refused.
pub fn checks(root: &Path) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    for (dirs, required) in [(REQUIRED_DIRS, true), (WANTED_DIRS, false)] {
        let mut found: std::collections::BTreeMap<String, Option<PathBuf>> = Default::default();
        for rel in dirs {
            let dir = root.join(rel);
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::Invalid(format!("{}: {e}", dir.display()))),
            };
            for (n, de) in rd.enumerate() {
                if n == MAX_CHECKS {
                    return Err(Error::Invalid(format!(
                        "{}: more than {MAX_CHECKS} checks",
                        dir.display()
                    )));
                }
                let de = de.map_err(|e| Error::Invalid(format!("{}: {e}", dir.display())))?;
                let name = de.file_name().to_string_lossy().into_owned();
                if !plain_name(&name) {
                    return Err(Error::Invalid(format!(
                        "{}: the check name {name:?} is not a plain file name",
                        dir.display()
                    )));
                }
                let p = dir.join(&name);
                let masked = std::fs::read_link(&p).is_ok_and(|t| t == Path::new("/dev/null"));
                found.insert(name, (!masked).then_some(p));
            }
        }
        for (name, path) in found {
            let Some(path) = path else { continue };
            if is_executable(&path) {
                out.push(Check {
                    name,
                    path,
                    required,
                });
            }
        }
    }
    Ok(out)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A check or unit that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The check's file name, or the systemd unit's name.
    pub check: String,
    /// `exit status 1: <its last line of output>`, `timed out after 300 s`, …
    pub reason: String,
}

/// Whether the boot was good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every required check passed and boot-complete.target was reached.
    Passed,
    /// A required check or unit failed or hung.
    Failed,
}

/// The verdict on one boot of a deployment, as recorded and shown by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Passed or failed.
    pub result: Outcome,
    /// The required checks and units that failed.
    pub failed: Vec<Failure>,
    /// The wanted checks that failed (warnings only).
    #[serde(default)]
    pub warnings: Vec<Failure>,
    /// When it was recorded (RFC 3339, UTC).
    pub at: String,
}

impl Verdict {
    /// The verdict from the failures found.
    pub fn new(failed: Vec<Failure>, warnings: Vec<Failure>) -> Verdict {
        Verdict {
            result: if failed.is_empty() {
                Outcome::Passed
            } else {
                Outcome::Failed
            },
            failed,
            warnings,
            at: ociboot_fs::time::now(),
        }
    }

    /// `check NAME (reason)`, the failures joined; empty when it passed.
    pub fn summary(&self) -> String {
        self.failed
            .iter()
            .map(|f| format!("{} ({})", f.check, f.reason))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a failed boot does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The boot passed: nothing (systemd-bless-boot marks it good).
    Stay,
    /// A counted try failed: reboot after the delay, so that the loader counts it.
    Reboot(Duration),
    /// The boot failed but is not a counted try (blessed, or uncounted): rebooting would only
    /// boot the same entry again.
    NotCounted,
    /// This boot already rebooted once on its own (at most one automatic reboot per boot).
    AlreadyRebooted,
}

/// Decide what follows `verdict` on this boot: `counted` is whether the booted entry still
/// carries a boot counter (the loader is trying it; systemd-bless-boot did not mark it good),
/// `rebooted` whether this boot already asked for an automatic reboot.
pub fn next(verdict: &Verdict, counted: bool, rebooted: bool, config: &Config) -> Next {
    match (verdict.result, counted, rebooted) {
        (Outcome::Passed, _, _) => Next::Stay,
        (Outcome::Failed, false, _) => Next::NotCounted,
        (Outcome::Failed, true, true) => Next::AlreadyRebooted,
        (Outcome::Failed, true, false) => Next::Reboot(config.reboot_delay),
    }
}

#[cfg(test)]
mod tests;
