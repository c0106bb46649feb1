//! `ociboot container lint`: checks of an image's root filesystem, for the last line of a
//! Containerfile (`RUN ociboot container lint`), in the manner of bootc's lints.
//!
//! Every lint has a stable kebab-case name (bootc's where bootc has the same check), a level
//! and a description ([`LINTS`]). [`run`] runs them on a root directory: first the lints that
//! look at a few known paths, in name order, then one shared walk of the whole tree for the
//! others. The walk never follows a symlink, does not cross into other filesystems nor into
//! `/proc`, `/sys`, `/dev`, `/run`, `/tmp` and `/sysroot`, goes at most [`MAX_DEPTH`]
//! directories deep, and each lint keeps at most [`MAX_ITEMS`] paths (and counts the rest).
//!
//! [`check_bootable`] is the part that decides whether an image can boot at all (one kernel with
//! its initramfs, a static `/usr/bin/ociboot`); installing and staging ask it too.

mod bootable;
mod checks;
pub mod elf;
mod paths;
mod walk;

use std::path::Path;

pub use bootable::{
    check_bootable, one_kernel, static_init, Bootable, KernelFiles, NotBootable, MODULES_DIR,
};
pub use elf::{elf_linking, is_static_elf, ElfError, ElfLinking};
pub use paths::display_rel;

use crate::error::{Ctx, Error, Result};

/// Paths a lint keeps for its report; beyond this it only counts them.
pub const MAX_ITEMS: usize = 1000;
/// How many directories deep the tree walk goes.
pub const MAX_DEPTH: usize = 256;

/// How serious a lint's finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The image will not work as it should: the lint fails.
    Fatal,
    /// Worth a look; fails only with `--fatal-warnings`.
    Warning,
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Level::Fatal => "fatal",
            Level::Warning => "warning",
        })
    }
}

/// One lint: its name, level and what it checks.
#[derive(Debug)]
pub struct Lint {
    /// The stable kebab-case name, as `--skip` takes it and `--list` shows it.
    pub name: &'static str,
    /// How serious a finding of this lint is.
    pub level: Level,
    /// What the lint checks and why, as `--list` shows it.
    pub description: &'static str,
    check: Check,
}

#[derive(Debug, Clone, Copy)]
enum Check {
    /// Looks at a few paths.
    Paths(fn(&Path) -> Result<Option<Problem>>),
    /// Part of the shared tree walk.
    Walk(walk::WalkLint),
}

/// Every lint, in name order.
pub const LINTS: &[Lint] = &[
    Lint {
        name: "bootc-kargs",
        level: Level::Fatal,
        description: "The files in /usr/lib/bootc/kargs.d/*.toml parse: kargs = [strings], \
                      optional match-architectures = [strings], no other key.",
        check: Check::Paths(checks::bootc_kargs),
    },
    Lint {
        name: "etc-usretc",
        level: Level::Fatal,
        description: "Not both /etc and /usr/etc: a deployment keeps the image's /etc at \
                      /usr/etc, so configuration belongs in /etc.",
        check: Check::Paths(checks::etc_usretc),
    },
    Lint {
        name: "kernel",
        level: Level::Fatal,
        description: "Exactly one kernel, /usr/lib/modules/<kver>/vmlinuz, with initramfs.img \
                      beside it.",
        check: Check::Paths(checks::kernel),
    },
    Lint {
        name: "os-release",
        level: Level::Fatal,
        description: "/usr/lib/os-release exists (/etc/os-release alone is not enough).",
        check: Check::Paths(checks::os_release),
    },
    Lint {
        name: "setuid",
        level: Level::Warning,
        description: "Lists the setuid and setgid files, for review.",
        check: Check::Walk(walk::WalkLint::Setuid),
    },
    Lint {
        name: "static-ociboot",
        level: Level::Fatal,
        description: "/usr/bin/ociboot is a regular file and a statically linked ELF \
                      executable: the kernel starts it as init= before any library is \
                      reachable.",
        check: Check::Paths(checks::static_ociboot),
    },
    Lint {
        name: "utf8",
        level: Level::Fatal,
        description: "No file names that are not valid UTF-8.",
        check: Check::Walk(walk::WalkLint::Utf8),
    },
    Lint {
        name: "var-content",
        level: Level::Warning,
        description: "Content in /var: the image's /var is copied only at the first install; \
                      later the host's /var hides it. Create it at boot (tmpfiles.d, \
                      StateDirectory=) instead. Empty files, the usual empty directories \
                      (/var/lib, /var/cache/…, /var/log/…) and /var/run, /var/lock are not \
                      reported.",
        check: Check::Walk(walk::WalkLint::Var),
    },
    Lint {
        name: "var-run",
        level: Level::Fatal,
        description: "/var/run and /var/lock, if present, are symlinks to /run and /run/lock.",
        check: Check::Paths(checks::var_run),
    },
];

/// What a lint found: a message and the paths (or other items) it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, as the report prints it after the lint's name.
    pub message: String,
    /// At most [`MAX_ITEMS`] items.
    pub items: Vec<String>,
    /// How many items there were in all.
    pub total_items: usize,
}

impl Problem {
    /// A finding with `message` and no items.
    pub fn new(message: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            items: Vec::new(),
            total_items: 0,
        }
    }

    fn with_items(message: impl Into<String>, items: Items) -> Problem {
        Problem {
            message: message.into(),
            items: items.kept,
            total_items: items.total,
        }
    }
}

/// A bounded list of items and the count of all of them.
#[derive(Debug, Default)]
pub(crate) struct Items {
    kept: Vec<String>,
    total: usize,
}

impl Items {
    fn push(&mut self, item: impl FnOnce() -> String) {
        if self.kept.len() < MAX_ITEMS {
            self.kept.push(item());
        }
        self.total += 1;
    }

    fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// How one lint ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The lint ran and found nothing.
    Passed,
    /// The lint did not run: it was named in `skip`.
    Skipped,
    /// A finding; fatal or a warning by the lint's level.
    Found(Problem),
}

/// One lint and how it ended.
#[derive(Debug)]
pub struct LintResult {
    /// The lint that ran (or was skipped).
    pub lint: &'static Lint,
    /// What it found.
    pub outcome: Outcome,
}

/// The results of [`run`], in the order the lints ran.
#[derive(Debug)]
pub struct Report {
    /// One result per lint, skipped ones included.
    pub results: Vec<LintResult>,
    /// What the walk left out that a reader should know (directories too deep).
    pub notes: Vec<String>,
}

impl Report {
    fn count(&self, f: impl Fn(&LintResult) -> bool) -> usize {
        self.results.iter().filter(|r| f(r)).count()
    }

    /// Lints that found nothing.
    pub fn passed(&self) -> usize {
        self.count(|r| r.outcome == Outcome::Passed)
    }

    /// Lints that did not run because `skip` named them.
    pub fn skipped(&self) -> usize {
        self.count(|r| r.outcome == Outcome::Skipped)
    }

    /// Lints of level fatal that found something.
    pub fn failed(&self) -> usize {
        self.count(|r| matches!(r.outcome, Outcome::Found(_)) && r.lint.level == Level::Fatal)
    }

    /// Lints of level warning that found something.
    pub fn warnings(&self) -> usize {
        self.count(|r| matches!(r.outcome, Outcome::Found(_)) && r.lint.level == Level::Warning)
    }

    /// No failure, and no warning either when warnings are fatal.
    pub fn ok(&self, fatal_warnings: bool) -> bool {
        self.failed() == 0 && (!fatal_warnings || self.warnings() == 0)
    }
}

/// The lint named `name`.
pub fn lint(name: &str) -> Option<&'static Lint> {
    LINTS.iter().find(|l| l.name == name)
}

/// Run every lint but those in `skip` on the image rooted at `root`. An unknown name in `skip`
/// is an error; so is a failure to read the tree (a finding is not an error: see [`Report`]).
pub fn run(root: &Path, skip: &[String]) -> Result<Report> {
    if let Some(bad) = skip.iter().find(|s| lint(s).is_none()) {
        return Err(Error::Invalid(format!(
            "--skip {bad}: no lint of that name (see --list)"
        )));
    }
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::Invalid(format!(
                "{}: not a directory",
                root.display()
            )))
        }
        Err(e) => return Ok(Err(e).at("reading", root)?),
    }
    let skipped = |l: &Lint| skip.iter().any(|s| s == l.name);
    let mut results = Vec::new();
    for l in LINTS {
        if let Check::Paths(f) = l.check {
            let outcome = if skipped(l) {
                Outcome::Skipped
            } else {
                f(root)?.map_or(Outcome::Passed, Outcome::Found)
            };
            results.push(LintResult { lint: l, outcome });
        }
    }
    let wanted: Vec<walk::WalkLint> = LINTS
        .iter()
        .filter_map(|l| match l.check {
            Check::Walk(w) if !skipped(l) => Some(w),
            _ => None,
        })
        .collect();
    let mut notes = Vec::new();
    let mut found = if wanted.is_empty() {
        Vec::new()
    } else {
        walk::walk(root, &wanted, &mut notes)?
    };
    for l in LINTS {
        if let Check::Walk(w) = l.check {
            let outcome = match found.iter().position(|(fw, _)| *fw == w) {
                _ if skipped(l) => Outcome::Skipped,
                Some(i) => found
                    .swap_remove(i)
                    .1
                    .map_or(Outcome::Passed, Outcome::Found),
                None => Outcome::Passed,
            };
            results.push(LintResult { lint: l, outcome });
        }
    }
    Ok(Report { results, notes })
}

#[cfg(test)]
mod tests;
