//! Crash injection for tests. With the `failpoints` feature, `OCIBOOT_FAILPOINT=NAME` makes the
//! process abort (no unwinding, no cleanup, like `kill -9`) when it reaches the step `NAME`.
//! Without the feature this compiles to nothing. Each crate that commits state names its steps
//! at its commit points; the crash tests find them in the sources and crash at every one.

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
