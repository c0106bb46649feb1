//! Snapshot tests of the three status outputs (human, with and without `-v`; YAML; JSON) for
//! states built in memory, so every slot, flag and odd value is covered without a sysroot:
//! snapshots in `src/status/snapshots/`, rewritten with `OCIBOOT_UPDATE_SNAPSHOTS=1`.
//! The CLI's `tests/status_output.rs` does the same with the real binary on real sysroots.

use std::path::{Path, PathBuf};

use ociboot_oci::{ImageReference, Transport};

use super::testkit::{assert_snapshot, yaml_to_value};
use super::*;
use crate::bls::Entry;
use crate::origin::{CachedUpdate, Origin};
use crate::sysroot::{Deployment, StagedInfo, State};

fn digest(c: char) -> ociboot_oci::Sha256Digest {
    format!("sha256:{}", c.to_string().repeat(64))
        .parse()
        .unwrap()
}

struct Image<'a> {
    transport: Transport,
    name: &'a str,
    digest: char,
    version: Option<&'a str>,
    timestamp: Option<&'a str>,
}

const V1: Image = Image {
    transport: Transport::Registry,
    name: "quay.io/example/os:stable",
    digest: 'a',
    version: Some("1.0"),
    timestamp: Some("2026-01-01T00:00:00Z"),
};

const V2: Image = Image {
    transport: Transport::Registry,
    name: "quay.io/example/os:stable",
    digest: 'b',
    version: Some("2.0"),
    // Sub-second precision: the human layout cuts it to seconds.
    timestamp: Some("2026-02-01T12:34:56.789012345Z"),
};

const LOCAL: Image = Image {
    transport: Transport::OciArchive,
    name: "/var/tmp/my os.tar:latest",
    digest: 'c',
    version: None,
    timestamp: Some("2026-03-01T00:00:00Z"),
};

fn deployment(id: &str, serial: u32, img: &Image) -> Deployment {
    let origin = Origin {
        image: ImageReference {
            transport: img.transport,
            image: img.name.to_string(),
        },
        manifest_digest: digest(img.digest),
        config_digest: digest('f'),
        version: img.version.map(str::to_string),
        timestamp: img.timestamp.map(str::to_string),
        architecture: "amd64".into(),
        stateroot: "default".into(),
        id: id.into(),
        serial,
        kargs: vec![
            "root=UUID=0a1b2c3d".into(),
            "rw".into(),
            "console=ttyS0,115200".into(),
        ],
        image_kargs: vec!["console=ttyS0,115200".into()],
        pinned: false,
        cached_update: None,
        deployed_at: "2026-05-01T00:00:00Z".into(),
        kernel: None,
    };
    Deployment {
        stateroot: "default".into(),
        id: id.into(),
        root: PathBuf::from(format!("/sysroot/ociboot/deploy/default/deploy/{id}")),
        origin,
    }
}

fn entry(d: &Deployment) -> (Entry, Deployment) {
    let e = Entry {
        title: d.origin.image.to_string(),
        version: d.origin.serial,
        linux: "/ociboot/vmlinuz".into(),
        initrd: None,
        options: format!("ociboot={}", d.key()),
        counter: None,
    };
    (e, d.clone())
}

fn state(entries: &[&Deployment], staged: Option<(&Deployment, bool)>, booted: &str) -> State {
    State {
        entries: entries.iter().map(|d| entry(d)).collect(),
        staged: staged.map(|(d, locked)| {
            let info = StagedInfo {
                stateroot: d.stateroot.clone(),
                id: d.id.clone(),
                locked,
            };
            (d.clone(), info)
        }),
        booted: (!booted.is_empty()).then(|| booted.to_string()),
        health: Default::default(),
    }
}

/// Every output of one state, in one file with a heading per output.
fn render(state: &State, booted_only: bool) -> (String, String, String, String) {
    let h = Host::new(state, booted_only);
    (h.human(false), h.human(true), h.to_yaml(), h.to_json())
}

fn check(name: &str, state: &State, booted_only: bool) {
    let (human, human_v, yaml, json) = render(state, booted_only);
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        yaml_to_value(&yaml),
        parsed,
        "YAML and JSON differ for {name}"
    );
    let all = format!(
        "==> human <==\n{human}==> human -v <==\n{human_v}==> yaml <==\n{yaml}==> json <==\n{json}\n"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/status/snapshots");
    assert_snapshot(&dir.join(format!("{name}.txt")), &all);
}

#[test]
fn counted_and_given_up() {
    // v2 was tried three times and given up on (its required check failed); v1 boots again,
    // and a v3 is being tried.
    let a = deployment("a1", 0, &V1);
    let b = deployment("b2", 1, &V2);
    let mut st = state(&[&a, &b], None, "default/a1");
    st.entries[1].0.counter = Some(crate::bls::Counter { left: 0, done: 3 });
    st.health.insert(
        "default/b2".into(),
        crate::health::Verdict {
            result: crate::health::Outcome::Failed,
            failed: vec![crate::health::Failure {
                check: "50-app".into(),
                reason: "exit status 1: no app".into(),
            }],
            warnings: vec![crate::health::Failure {
                check: "90-disk".into(),
                reason: "exit status 1: disk 91% full".into(),
            }],
            at: "2026-12-02T17:00:00Z".into(),
        },
    );
    check("given-up", &st, false);
    let c = deployment("c3", 2, &LOCAL);
    let mut st = state(&[&c, &a], None, "default/c3");
    st.entries[0].0.counter = Some(crate::bls::Counter { left: 2, done: 1 });
    check("being-tried", &st, false);
}

#[test]
fn none() {
    check("none", &state(&[], None, ""), false);
}

#[test]
fn installed_not_booted() {
    let a = deployment("a1", 0, &V1);
    check("installed", &state(&[&a], None, ""), false);
}

#[test]
fn booted() {
    let a = deployment("a1", 0, &V1);
    check("booted", &state(&[&a], None, "default/a1"), false);
}

#[test]
fn staged_with_rollback() {
    let a = deployment("a1", 0, &V1);
    let b = deployment("b2", 1, &V2);
    let c = deployment("c3", 2, &LOCAL);
    check(
        "staged",
        &state(&[&b, &a], Some((&c, false)), "default/b2"),
        false,
    );
}

#[test]
fn booted_only_hides_staged_and_rollback() {
    let a = deployment("a1", 0, &V1);
    let b = deployment("b2", 1, &V2);
    let c = deployment("c3", 2, &LOCAL);
    check(
        "booted-only",
        &state(&[&b, &a], Some((&c, false)), "default/b2"),
        true,
    );
}

#[test]
fn download_only() {
    let a = deployment("a1", 0, &V1);
    let b = deployment("b2", 1, &V2);
    check(
        "download-only",
        &state(&[&a], Some((&b, true)), "default/a1"),
        false,
    );
}

#[test]
fn rollback_queued() {
    let a = deployment("a1", 0, &V1);
    let b = deployment("b2", 1, &V2);
    check(
        "rollback-queued",
        &state(&[&a, &b], None, "default/b2"),
        false,
    );
}

#[test]
fn pinned_and_other_deployments() {
    let mut a = deployment("a1", 0, &V1);
    a.origin.pinned = true;
    let b = deployment("b2", 1, &V2);
    let c = deployment("c3", 2, &LOCAL);
    check(
        "pinned-other",
        &state(&[&c, &b, &a], None, "default/c3"),
        false,
    );
}

#[test]
fn cached_update() {
    let mut a = deployment("a1", 0, &V1);
    a.origin.cached_update = Some(CachedUpdate {
        manifest_digest: digest('b'),
        version: Some("2.0".into()),
        timestamp: Some("2026-02-01T12:34:56.789012345Z".into()),
        architecture: "amd64".into(),
    });
    // An update without version nor timestamp, on the rollback.
    let mut b = deployment("b2", 1, &LOCAL);
    b.origin.cached_update = Some(CachedUpdate {
        manifest_digest: digest('d'),
        version: None,
        timestamp: None,
        architecture: "arm64".into(),
    });
    check(
        "cached-update",
        &state(&[&a, &b], None, "default/a1"),
        false,
    );
}

#[test]
fn cached_update_equal_to_the_image_is_not_shown() {
    let mut a = deployment("a1", 0, &V1);
    a.origin.cached_update = Some(CachedUpdate {
        manifest_digest: digest('a'),
        version: Some("1.0".into()),
        timestamp: None,
        architecture: "amd64".into(),
    });
    let (h, _, _, json) = render(&state(&[&a], None, "default/a1"), false);
    assert!(json.contains(r#""cachedUpdate":null"#), "{json}");
    assert!(!h.contains("Update"), "{h}");
}

#[test]
fn awkward_strings_survive_yaml() {
    let mut a = deployment("a1", 0, &V1);
    for (i, s) in [
        "",
        "true",
        "null",
        "1.5",
        "-dash",
        "a: b",
        "ends:",
        "quote\"back\\slash",
        "tab\tnew\nline",
        "ünïcode ☃",
        "#comment",
        "~",
    ]
    .iter()
    .enumerate()
    {
        a.origin.version = Some(s.to_string());
        a.origin.kargs = vec![s.to_string()];
        a.origin.architecture = s.to_string();
        let (_, _, yaml, json) = render(&state(&[&a], None, "default/a1"), false);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(yaml_to_value(&yaml), parsed, "case {i}: {s:?}\n{yaml}");
    }
}
