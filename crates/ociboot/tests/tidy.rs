//! Tidiness rules of the workspace, checked by reading files only (no build, no root): short
//! files, a `//!` doc on every module, crate dependencies that follow the data flow of
//! ARCHITECTURE.md, and short functions in the CLI. Each failure lists every offender.

mod common;

use common::source::{crate_dirs, files_under, rel, rust_files};
use std::path::Path;

const MAX_FILE_LINES: usize = 600;
const MAX_CLI_FN_LINES: usize = 80;

/// The library crates in data-flow order, then the CLI: a crate may depend only on crates to
/// its left.
const FLOW: &[&str] = &[
    "ociboot-fs",
    "ociboot-oci",
    "ociboot-store",
    "ociboot-deploy",
    "ociboot-install",
    "ociboot",
];

fn assert_none(what: &str, offenders: Vec<String>) {
    assert!(
        offenders.is_empty(),
        "{what}:\n  {}",
        offenders.join("\n  ")
    );
}

fn long_files(sub: &str) -> Vec<String> {
    crate_dirs()
        .iter()
        .flat_map(|c| files_under(&c.join(sub)))
        .filter_map(|p| {
            let lines = std::fs::read(&p)
                .unwrap()
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            (lines > MAX_FILE_LINES).then(|| format!("{}: {lines} lines", rel(&p)))
        })
        .collect()
}

#[test]
fn source_files_are_short() {
    assert_none(
        &format!("files under crates/*/src over {MAX_FILE_LINES} lines"),
        long_files("src"),
    );
}

#[test]
fn test_files_are_short() {
    assert_none(
        &format!("files under crates/*/tests over {MAX_FILE_LINES} lines"),
        long_files("tests"),
    );
}

#[test]
fn every_module_has_a_doc() {
    let undocumented = rust_files("src")
        .into_iter()
        .filter(|(_, text)| {
            !text
                .lines()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.starts_with("//!"))
        })
        .map(|(p, _)| format!("{}: no `//!` doc at its top", rel(&p)))
        .collect();
    assert_none("modules without a doc", undocumented);
}

/// The package name and the `ociboot*` crates of the `[dependencies]` tables (also
/// `[dependencies.NAME]` and target-specific ones; not dev- or build-dependencies).
fn ociboot_dependencies(manifest: &Path) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(manifest).unwrap();
    let (mut name, mut deps) = (None, Vec::new());
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = h.trim().to_string();
            if let Some(dep) = section.strip_prefix("dependencies.") {
                deps.push(dep.trim_matches('"').to_string());
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if section == "package" && key == "name" {
            name = Some(value.trim().trim_matches('"').to_string());
        }
        let is_deps = section == "dependencies" || section.ends_with(".dependencies");
        if is_deps {
            deps.push(key.split('.').next().unwrap().trim_matches('"').to_string());
        }
    }
    deps.retain(|d| d.starts_with("ociboot"));
    (name.expect("no [package] name"), deps)
}

#[test]
fn crate_dependencies_follow_the_data_flow() {
    let mut broken = Vec::new();
    for dir in crate_dirs() {
        let manifest = dir.join("Cargo.toml");
        let (name, deps) = ociboot_dependencies(&manifest);
        let Some(pos) = FLOW.iter().position(|c| *c == name) else {
            broken.push(format!(
                "{}: crate {name} has no place in the data flow (tests/tidy.rs FLOW)",
                rel(&manifest)
            ));
            continue;
        };
        for d in deps {
            if !FLOW[..pos].contains(&d.as_str()) {
                broken.push(format!(
                    "{}: {name} must not depend on {d} (allowed: {:?})",
                    rel(&manifest),
                    &FLOW[..pos]
                ));
            }
        }
    }
    assert_none("dependencies against the data flow", broken);
}

/// Functions of a file at indentation 0 or 4 (free functions, methods): (line, name, lines),
/// from the `fn` line to the first `}` line at the same indentation.
fn function_lengths(text: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut v = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        if indent != 0 && indent != 4 {
            continue;
        }
        let mut rest = line.trim_start();
        for prefix in [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "async ",
            "unsafe ",
        ] {
            rest = rest.strip_prefix(prefix).unwrap_or(rest);
        }
        let Some(sig) = rest.strip_prefix("fn ") else {
            continue;
        };
        let name: String = sig
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{}}}", &line[..indent]);
        if line.trim_end().ends_with(';') || line.trim_end().ends_with('}') {
            continue;
        }
        if let Some(end) = lines[i + 1..].iter().position(|l| l.trim_end() == close) {
            v.push((i + 1, name, end + 2));
        }
    }
    v
}

#[test]
fn cli_functions_are_short() {
    let long = files_under(&common::repo_root().join("crates/ociboot/src"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .flat_map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            function_lengths(&text)
                .into_iter()
                .filter(|(_, _, n)| *n > MAX_CLI_FN_LINES)
                .map(move |(line, name, n)| format!("{}:{line}: fn {name}: {n} lines", rel(&p)))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_none(
        &format!("functions in crates/ociboot/src over {MAX_CLI_FN_LINES} lines"),
        long,
    );
}

/// The checks themselves catch what they are for.
#[test]
fn the_scanners_find_what_they_look_for() {
    let text = "pub fn a() {\n    x();\n}\nimpl T {\n    pub(crate) fn b(\n        y: u8,\n    ) -> u8 {\n        y\n    }\n    fn c() {}\n}\n";
    assert_eq!(
        function_lengths(text),
        vec![(1, "a".to_string(), 3), (5, "b".to_string(), 5)]
    );
    let dir = common::scratch("tidy");
    let manifest = dir.path().join("Cargo.toml");
    std::fs::write(
        &manifest,
        "[package]\nname = \"ociboot-oci\"\n[dependencies]\nociboot-store.workspace = true\n\
         serde = \"1\"\n[dependencies.ociboot-deploy]\npath = \"x\"\n\
         [dev-dependencies]\nociboot-install = \"1\"\n",
    )
    .unwrap();
    assert_eq!(
        ociboot_dependencies(&manifest),
        (
            "ociboot-oci".to_string(),
            vec!["ociboot-store".to_string(), "ociboot-deploy".to_string()]
        )
    );
}
