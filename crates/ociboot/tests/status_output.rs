//! Snapshots of `ociboot status` (human, human `-v`, YAML, JSON) in every lifecycle state, from
//! the real binary on a directory sysroot whose bootloader the test plays: no deployment,
//! installed but not booted, booted, pinned, a cached update (`upgrade --check`), a
//! download-only staged update, a staged update (also with `--booted`), a rollback, a queued
//! rollback, and a pinned deployment kept as another deployment.
//!
//! Volatile parts are normalised before the comparison: the test's directories (`<tmp>`, the
//! fixture layout `<os>`), the fixture images' manifest digests (`sha256:<v1>` …) and
//! deployment ids (`<id1>` … in order of appearance). Snapshots live in `tests/snapshots/`;
//! a mismatch prints a diff, and `OCIBOOT_UPDATE_SNAPSHOTS=1` rewrites them. Every YAML output
//! is also read back and compared with the JSON as values.

mod common;
#[path = "../../ociboot-deploy/src/status/testkit.rs"]
mod testkit;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Replaces the volatile parts of one machine's status outputs, consistently across calls.
struct Normaliser {
    subs: Vec<(String, String)>,
    ids: Vec<String>,
}

impl Normaliser {
    fn new(m: &Machine) -> Normaliser {
        let fixtures: Value =
            serde_json::from_slice(&std::fs::read(os_layout().join("fixtures.json")).unwrap())
                .unwrap();
        let mut subs = vec![
            (m.h.dir.path().display().to_string(), "<tmp>".to_string()),
            (os_layout().display().to_string(), "<os>".to_string()),
        ];
        for (tag, t) in fixtures["tags"].as_object().unwrap() {
            let d = t["manifest"].as_str().unwrap().to_string();
            subs.push((d, format!("sha256:<{tag}>")));
        }
        Normaliser {
            subs,
            ids: Vec::new(),
        }
    }

    /// Learn the deployment ids a status JSON names, in order of appearance.
    fn learn(&mut self, status: &Value) {
        let st = &status["status"];
        let others = st["otherDeployments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let slots = ["booted", "rollback", "staged"].map(|s| st[s].clone());
        for e in slots.iter().chain(&others) {
            if let Some(id) = e["ociboot"]["id"].as_str() {
                if !self.ids.iter().any(|i| i == id) {
                    self.ids.push(id.to_string());
                }
            }
        }
    }

    fn apply(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (from, to) in &self.subs {
            s = s.replace(from, to);
        }
        for (n, id) in self.ids.iter().enumerate() {
            s = s.replace(id, &format!("<id{}>", n + 1));
        }
        let hex_run = s
            .split(|c: char| !c.is_ascii_hexdigit())
            .find(|w| w.len() >= 16);
        assert!(hex_run.is_none(), "unnormalised hex {hex_run:?} in:\n{s}");
        s
    }
}

/// Every status output of the machine now, normalised and compared with `tests/snapshots/`;
/// the YAML read back must equal the JSON.
fn snapshot(m: &Machine, n: &mut Normaliser, name: &str, extra: &[&str]) {
    let run = |pre: &[&str], format: &str| {
        let mut args: Vec<&str> = pre.to_vec();
        args.extend(["status", "--format", format]);
        args.extend(extra);
        m.ok(&args)
    };
    let json = run(&[], "json");
    assert_eq!(json.lines().count(), 1, "compact JSON on one line: {json}");
    let value: Value = serde_json::from_str(&json).unwrap();
    n.learn(&value);
    let yaml = run(&[], "yaml");
    assert_eq!(testkit::yaml_to_value(&yaml), value, "YAML and JSON differ");
    let mut plain = vec!["status"];
    plain.extend(extra);
    assert_eq!(
        m.ok(&plain),
        yaml,
        "YAML is the default when not on a terminal"
    );
    let mut legacy = vec!["status", "--json"];
    legacy.extend(extra);
    assert_eq!(m.ok(&legacy), json, "--json is --format json");
    let all = format!(
        "==> human <==\n{}==> human -v <==\n{}==> yaml <==\n{yaml}==> json <==\n{json}",
        run(&[], "humanreadable"),
        run(&["-v"], "humanreadable"),
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("status-{name}.txt"));
    testkit::assert_snapshot(&path, &n.apply(&all));
}

/// Point the machine's followed tag (`<tmp>/moving:latest`) at a fixture image.
fn publish(m: &Machine, tag: &str) -> String {
    let layout = m.h.path("moving");
    sh(Command::new("skopeo")
        .args(["copy", "--quiet", "--preserve-digests"])
        .arg(format!("oci:{}:{tag}", os_layout().display()))
        .arg(format!("oci:{}:latest", layout.display())));
    format!("oci:{}:latest", layout.display())
}

#[test]
fn status_in_every_lifecycle_state() {
    let m = Machine::new("status");
    let mut n = Normaliser::new(&m);
    snapshot(&m, &mut n, "none", &[]);
    let r = publish(&m, "v1");
    let root = m.root().display().to_string();
    m.ok(&[
        "install",
        "to-filesystem",
        "--source-imgref",
        &r,
        "--karg",
        "local.install=1",
        "--bootloader",
        "none",
        &root,
    ]);
    snapshot(&m, &mut n, "installed", &[]);
    m.reboot();
    snapshot(&m, &mut n, "booted", &[]);
    m.ok(&["pin", "0"]);
    snapshot(&m, &mut n, "pinned", &[]);
    m.ok(&["unpin", "0"]);
    publish(&m, "v2");
    m.ok(&["upgrade", "--check"]);
    snapshot(&m, &mut n, "cached-update", &[]);
    m.ok(&["upgrade", "--download-only"]);
    snapshot(&m, &mut n, "download-only", &[]);
    m.ok(&["upgrade", "--from-downloaded"]);
    snapshot(&m, &mut n, "staged", &[]);
    snapshot(&m, &mut n, "staged-booted-only", &["--booted"]);
    m.ok(&["finalize-staged"]);
    m.reboot();
    snapshot(&m, &mut n, "rollback", &[]);
    m.ok(&["rollback"]);
    snapshot(&m, &mut n, "rollback-queued", &[]);
    m.ok(&["rollback"]);
    m.ok(&["pin", "1"]);
    publish(&m, "v3");
    m.ok(&["upgrade"]);
    m.ok(&["finalize-staged"]);
    m.reboot();
    snapshot(&m, &mut n, "other-deployments", &[]);
}
