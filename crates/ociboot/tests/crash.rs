//! Crash injection: the pull is aborted (like kill -9) at each of its named steps; the store
//! stays consistent, and the next pull finishes the job. Needs `--features ociboot/failpoints`.
#![cfg(feature = "failpoints")]

mod common;

use common::*;

const STEPS: &[&str] = &[
    "pull-manifest-fetched",
    "pull-layer-staged",
    "pull-layer-objects-committed",
    "pull-layer-committed",
    "pull-image-written",
    "pull-image-committed",
    "pull-ref-committed",
];

#[test]
fn steps_match_the_library() {
    assert_eq!(STEPS, ociboot_store::failpoint::PULL_STEPS);
}

#[test]
fn abort_at_every_pull_step() {
    let fx = fixtures();
    let oracle = scratch("crash-oracle");
    let oracle_root = oracle.path().join("rootfs");
    umoci_unpack(&fx.join("tricky"), "gzip", &oracle_root);
    let base = format!("oci:{}:v1", fx.join("base").display());
    let tricky = format!("oci:{}:gzip", fx.join("tricky").display());
    for step in STEPS {
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
            *step == "pull-ref-committed",
            "{step}: {list}"
        );
        // The next pull finishes the job.
        h.ok(&["image", "pull", &tricky]);
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
