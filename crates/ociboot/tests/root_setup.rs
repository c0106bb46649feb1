//! The root set-up at boot (what `init=…/usr/bin/ociboot` does as PID 1 before it starts the
//! image's init), run by `ociboot prepare-root` in a private mount namespace on a real
//! installed sysroot: the mounts a booted system sees, checked as a user would.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn setup() -> (Machine, String) {
    let m = Machine::new("rootsetup");
    m.ok(&[
        "install",
        "to-filesystem",
        "--source-imgref",
        &format!("oci:{}:v1", os_layout().display()),
        "--bootloader",
        "none",
        m.root().to_str().unwrap(),
    ]);
    let options = m.reboot();
    (m, options)
}

/// Run `script` in a new private mount namespace after `ociboot prepare-root`; `$D` is the
/// deployment directory, `$P` the physical root.
fn in_namespace(m: &Machine, cmdline: &str, script: &str) -> (bool, String) {
    let d = if cmdline.contains("ociboot=") {
        m.deployment_dir(cmdline)
    } else {
        PathBuf::from("/nonexistent")
    };
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "\"$OCIBOOT\" prepare-root --physical-root \"$P\" --cmdline \"$CMDLINE\" || exit 7\n{script}"
        ))
        .env("OCIBOOT", env!("CARGO_BIN_EXE_ociboot"))
        .env("P", m.root())
        .env("CMDLINE", cmdline)
        .env("D", d)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn deployment_becomes_a_read_only_root_with_writable_etc_and_var() {
    let (m, options) = setup();
    let d = m.deployment_dir(&options);
    let image_file = d.join("usr/bin/ociboot");
    let before = std::fs::read(&image_file).unwrap();
    let cmdline = format!("BOOT_IMAGE=/vmlinuz root=UUID=x rw {options} quiet");
    let (ok, out) = in_namespace(
        &m,
        &cmdline,
        r#"
set -e
if touch "$D/usr/x" 2>/dev/null; then echo "usr writable"; exit 1; fi
if touch "$D/new-top-level" 2>/dev/null; then echo "/ writable"; exit 1; fi
if sh -c 'echo x >> "$D/usr/bin/ociboot"' 2>/dev/null; then echo "an image file is writable"; exit 1; fi
echo local > "$D/etc/written-at-boot"
echo data > "$D/var/written-at-boot"
echo note > "$D/var/roothome/written-at-boot"
echo scratch > "$D/tmp/scratch"
test -d "$D/sysroot/ociboot/deploy"
test "$(readlink "$D/root")" = var/roothome || { echo "/root is $(readlink "$D/root")"; exit 1; }
test "$(stat -c %a "$D/var/roothome")" = 700 || { echo "/var/roothome not 0700"; exit 1; }
test "$(stat -f -c %T "$D/tmp")" = tmpfs || { echo "/tmp is not a tmpfs"; exit 1; }
test "$(stat -c %a "$D/tmp")" = 1777 || { echo "/tmp not 1777"; exit 1; }
grep -q " $D ro[, ]" /proc/self/mountinfo || { echo "/ not ro in mountinfo"; exit 1; }
echo ALL-OK
"#,
    );
    assert!(ok && out.contains("ALL-OK"), "{out}");
    assert_eq!(
        std::fs::read(&image_file).unwrap(),
        before,
        "image file untouched"
    );
    assert!(
        !d.join("tmp/scratch").exists(),
        "/tmp is a tmpfs, gone with it"
    );
    assert_eq!(
        std::fs::read_to_string(
            m.root()
                .join("ociboot/deploy/default/var/roothome/written-at-boot")
        )
        .unwrap(),
        "note\n",
        "/root lives in the stateroot's /var"
    );
    // Through the mounts, writes landed where a booted system keeps them.
    assert_eq!(
        std::fs::read_to_string(d.join("etc/written-at-boot")).unwrap(),
        "local\n"
    );
    let var = m.root().join("ociboot/deploy/default/var/written-at-boot");
    assert_eq!(std::fs::read_to_string(var).unwrap(), "data\n");
    assert!(
        !d.join("var/written-at-boot").exists(),
        "/var is the stateroot's"
    );
}

#[test]
fn missing_deployment_is_refused_loudly() {
    let (m, _) = setup();
    let (ok, out) = in_namespace(&m, "root=x ociboot=default/0123456789abcdef.9", "true");
    assert!(!ok, "{out}");
    assert!(
        out.contains("deployment default/0123456789abcdef.9") && out.contains("missing"),
        "{out}"
    );
    let (ok, out) = in_namespace(&m, "root=x quiet", "true");
    assert!(!ok && out.contains("no ociboot="), "{out}");
}
