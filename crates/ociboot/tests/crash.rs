//! Crash injection: the pull is aborted (like kill -9) at each of its failpoints, as found in
//! the sources (a new one is tested without being listed here); the store stays consistent,
//! and the next pull finishes the job. Needs `--features ociboot/failpoints`.
#![cfg(feature = "failpoints")]

mod common;

use common::*;

/// The pull's failpoints, as found in the sources (see `common::source::failpoint_names`).
fn pull_steps() -> Vec<String> {
    common::source::failpoint_names()
        .into_iter()
        .filter(|s| s.starts_with("pull-"))
        .collect()
}

/// Object ids (hex) that some layer record of the store refers to.
fn recorded_objects(h: &Host) -> std::collections::HashSet<String> {
    let store = ociboot_store::Store::open_read(&h.sysroot(), &|_| {}).unwrap();
    let mut out = std::collections::HashSet::new();
    for f in h.store_files("layers") {
        let d: ociboot_oci::Sha256Digest =
            format!("sha256:{}", f.file_name().unwrap().to_string_lossy())
                .parse()
                .unwrap();
        for op in store.read_layer(&d).unwrap().1 {
            if let ociboot_store::LayerOp::Put(_, n) = op {
                if let ociboot_store::Content::File { object, .. } = n.content {
                    out.insert(object.hex());
                }
            }
        }
    }
    out
}

#[test]
fn steps_match_the_library() {
    let mut listed = ociboot_store::failpoint::PULL_STEPS.to_vec();
    listed.sort();
    assert_eq!(
        pull_steps(),
        listed,
        "failpoint::PULL_STEPS is not the pull's failpoints"
    );
}

#[test]
fn abort_at_every_pull_step() {
    let fx = fixtures();
    let oracle = scratch("crash-oracle");
    let oracle_root = oracle.path().join("rootfs");
    umoci_unpack(&fx.join("tricky"), "gzip", &oracle_root);
    let base = format!("oci:{}:v1", fx.join("base").display());
    let tricky = format!("oci:{}:gzip", fx.join("tricky").display());
    for step in pull_steps() {
        let step = step.as_str();
        let h = Host::new(&format!("crash-{step}"));
        h.ok(&["image", "pull", &base]);
        let (ok, _, err) = h.run_env(&["image", "pull", &tricky], &[("OCIBOOT_FAILPOINT", step)]);
        assert!(!ok, "{step}: the pull should have died");
        assert!(
            err.contains(&format!("failpoint {step}")),
            "{step}: never reached: {err}"
        );
        // After the crash: the store is consistent and what was there before still works.
        h.fsck();
        let list = h.ok(&["image", "list"]);
        assert!(list.contains("base:v1"), "{step}: {list}");
        let listed_tricky = list.contains("tricky:gzip");
        assert_eq!(
            listed_tricky,
            step == "pull-ref-committed",
            "{step}: {list}"
        );
        // Power loss can leave objects that were written but not synced empty or torn. Make
        // every object the store has not recorded yet look like that: the next writer must
        // not take any of them for good content.
        let dirty = h.store().join("dirty").exists();
        let expect_dirty = !["pull-manifest-fetched", "pull-ref-committed"].contains(&step);
        assert_eq!(dirty, expect_dirty, "{step}: dirty marker");
        if dirty {
            let recorded = recorded_objects(&h);
            for f in h.store_files("objects") {
                let name = format!(
                    "{}{}",
                    f.parent().unwrap().file_name().unwrap().to_string_lossy(),
                    f.file_name().unwrap().to_string_lossy()
                );
                if !recorded.contains(&name) {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&f)
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                }
            }
        }
        // The next pull finishes the job.
        h.ok(&["image", "pull", &tricky]);
        assert!(
            !h.store().join("dirty").exists(),
            "{step}: dirty marker left"
        );
        assert!(
            h.store_files("tmp").is_empty(),
            "{step}: staging left behind"
        );
        let dest = h.path("rootfs");
        h.ok(&["image", "unpack", &tricky, dest.to_str().unwrap()]);
        assert_same_tree(&dest, &oracle_root);
        h.fsck();
    }
}
