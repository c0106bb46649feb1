//! Crash injection for tests. With the `failpoints` feature, `OCIBOOT_FAILPOINT=NAME` makes the
//! process abort (no unwinding, no cleanup, like `kill -9`) when it reaches the step `NAME`.
//! Without the feature this compiles to nothing.

/// Abort here if the environment names this step.
#[inline]
pub fn hit(name: &str) {
    #[cfg(feature = "failpoints")]
    {
        if std::env::var("OCIBOOT_FAILPOINT").is_ok_and(|v| v == name) {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Every named step, in the order a pull reaches them.
pub const PULL_STEPS: &[&str] = &[
    "pull-manifest-fetched",
    "pull-layer-staged",
    "pull-layer-objects-committed",
    "pull-layer-committed",
    "pull-image-written",
    "pull-image-committed",
    "pull-ref-committed",
];
