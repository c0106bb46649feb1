//! `ociboot internals`: what ociboot's systemd units run at boot. The health checks and the
//! assessment after `boot-complete.target`; systemd is asked about units here, the decisions
//! are ociboot_deploy's (health.rs, sysroot/health.rs).

use std::process::Command;

use anyhow::{bail, Context, Result};
use ociboot_deploy::health::{self, Config, Failure, Next};
use ociboot_deploy::Sysroot;

use crate::cli::{Global, InternalsCommand};

/// The unit that runs the checks: its failure is the checks' verdict, not another unit's.
const HEALTH_UNIT: &str = "ociboot-health.service";

pub fn run(g: &Global, cmd: InternalsCommand) -> Result<()> {
    let sysroot = Sysroot::open(&g.sysroot);
    match cmd {
        InternalsCommand::HealthCheck { root } => {
            let config = Config::load(&root)?;
            let checks = health::checks(&root)?;
            println!(
                "ociboot: {} health checks ({} required), {} s each at most",
                checks.len(),
                checks.iter().filter(|c| c.required).count(),
                config.check_timeout.as_secs()
            );
            let v = health::run_checks(&checks, config.check_timeout, &mut |l| println!("{l}"));
            sysroot.save_checks_verdict(&v)?;
            if !v.failed.is_empty() {
                bail!("required health check failed: {}", v.summary());
            }
            Ok(())
        }
        InternalsCommand::HealthAssess { root } => assess(&sysroot, &Config::load(&root)?, g),
    }
}

/// `systemctl show -p PROP --value UNIT`.
fn show(unit: &str, prop: &str) -> Result<String> {
    let out = Command::new("systemctl")
        .args(["show", "-p", prop, "--value", unit])
        .output()
        .context("running systemctl show")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The units boot-complete.target requires that failed or are still starting (ours aside:
/// its checks are in its own verdict).
fn failed_units() -> Result<Vec<Failure>> {
    let mut out = Vec::new();
    for unit in show("boot-complete.target", "Requires")?.split_whitespace() {
        if unit == HEALTH_UNIT {
            continue;
        }
        let state = show(unit, "ActiveState")?;
        let reason = match state.as_str() {
            "failed" => show(unit, "Result")?,
            "activating" => "still starting".to_string(),
            _ => continue,
        };
        out.push(Failure {
            check: unit.to_string(),
            reason,
        });
    }
    Ok(out)
}

fn assess(sysroot: &Sysroot, config: &Config, g: &Global) -> Result<()> {
    let reached = Command::new("systemctl")
        .args(["is-active", "--quiet", "boot-complete.target"])
        .status()
        .context("running systemctl is-active")?
        .success();
    let a = sysroot.assess_boot(reached, failed_units()?, config)?;
    let tries = a
        .counter
        .map(|c| format!(" (try {} of {})", c.done, c.done + c.left))
        .unwrap_or_default();
    if a.verdict.failed.is_empty() {
        println!("ociboot: {} passed its health checks{tries}", a.deployment);
    } else {
        println!(
            "ociboot: {} FAILED its health checks{tries}: {}",
            a.deployment,
            a.verdict.summary()
        );
    }
    for w in &a.verdict.warnings {
        println!("ociboot: warning: wanted check {} ({})", w.check, w.reason);
    }
    match a.next {
        Next::Stay => Ok(()),
        Next::NotCounted => bail!(
            "{} is not being tried by the boot loader (blessed or not counted): not rebooting; \
             fix the failing check or run `ociboot rollback`",
            a.deployment
        ),
        Next::AlreadyRebooted => bail!("this boot already rebooted once on its own"),
        Next::Reboot(delay) => {
            println!(
                "ociboot: rebooting in {} s so that the boot loader counts this try \
                 (`systemctl stop ociboot-health-assess.service` stops it)",
                delay.as_secs()
            );
            std::thread::sleep(delay);
            crate::host::reboot(g)
        }
    }
}
