//! `ociboot container …`: commands for building images.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use ociboot_deploy::lint::{self, Level, Outcome, Problem, Report};

use crate::cli::{ContainerCommand, Global};

/// Paths shown per lint unless --no-truncate (as bootc).
const SHOWN_ITEMS: usize = 5;

pub fn run(g: &Global, cmd: ContainerCommand) -> Result<()> {
    match cmd {
        ContainerCommand::Lint {
            rootfs,
            fatal_warnings,
            list,
            skip,
            no_truncate,
        } => {
            if list {
                print!("{}", list_yaml());
                return Ok(());
            }
            let report = lint::run(&rootfs, &skip)?;
            print!("{}", render(&report, no_truncate, g.quiet));
            if !report.ok(fatal_warnings) {
                let n = report.failed() + if fatal_warnings { report.warnings() } else { 0 };
                bail!("Checks failed: {n}");
            }
            Ok(())
        }
    }
}

/// Every lint as YAML (the description as a double-quoted scalar, which JSON strings are).
fn list_yaml() -> String {
    let mut out = String::new();
    for l in lint::LINTS {
        let desc = serde_json::to_string(l.description).unwrap_or_default();
        let _ = writeln!(
            out,
            "- name: {}\n  level: {}\n  description: {desc}",
            l.name, l.level
        );
    }
    out
}

/// bootc's report: `Failed lint: NAME: MSG` / `Lint warning: NAME: MSG`, the paths indented
/// below, then the counts.
fn render(report: &Report, no_truncate: bool, quiet: bool) -> String {
    let mut out = String::new();
    for r in &report.results {
        if let Outcome::Found(p) = &r.outcome {
            let head = match r.lint.level {
                Level::Fatal => "Failed lint",
                Level::Warning => "Lint warning",
            };
            let _ = writeln!(out, "{head}: {}: {}", r.lint.name, p.message);
            render_items(&mut out, p, no_truncate);
        }
    }
    for n in &report.notes {
        let _ = writeln!(out, "Note: {n}");
    }
    if quiet {
        return out;
    }
    let _ = writeln!(out, "Checks passed: {}", report.passed());
    for (what, n) in [
        ("Checks skipped", report.skipped()),
        ("Warnings", report.warnings()),
        ("Checks failed", report.failed()),
    ] {
        if n > 0 {
            let _ = writeln!(out, "{what}: {n}");
        }
    }
    out
}

fn render_items(out: &mut String, p: &Problem, no_truncate: bool) {
    let shown = if no_truncate {
        p.items.len()
    } else {
        p.items.len().min(SHOWN_ITEMS)
    };
    for item in &p.items[..shown] {
        // An item of several lines (a TOML parse error) stays one indented block.
        let _ = writeln!(out, "  {}", item.trim_end().replace('\n', "\n    "));
    }
    let more = p.total_items.saturating_sub(shown);
    if more > 0 && shown < p.items.len() {
        let _ = writeln!(out, "  ...and {more} more");
    } else if more > 0 {
        let _ = writeln!(
            out,
            "  ...and {more} more (only the first {} are kept)",
            lint::MAX_ITEMS
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_yaml_of_every_lint() {
        let y = list_yaml();
        for l in lint::LINTS {
            assert!(
                y.contains(&format!("- name: {}\n  level: {}\n", l.name, l.level)),
                "{y}"
            );
        }
        assert!(y.contains("level: fatal") && y.contains("level: warning"));
    }

    #[test]
    fn items_are_truncated() {
        let p = Problem {
            message: "m".into(),
            items: (0..8).map(|i| format!("/p{i}")).collect(),
            total_items: 8,
        };
        let mut out = String::new();
        render_items(&mut out, &p, false);
        assert_eq!(out, "  /p0\n  /p1\n  /p2\n  /p3\n  /p4\n  ...and 3 more\n");
        out.clear();
        render_items(&mut out, &p, true);
        assert_eq!(out.lines().count(), 8);
        let p = Problem {
            total_items: 2000,
            ..p
        };
        out.clear();
        render_items(&mut out, &p, true);
        assert!(
            out.ends_with("  ...and 1992 more (only the first 1000 are kept)\n"),
            "{out}"
        );
    }
}
