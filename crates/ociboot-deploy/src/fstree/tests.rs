//! Copies and scans of trees with symlinks that lead outside: the links are copied as links,
//! and a symlink on the way to a tree is refused, never read or written through.

use std::os::unix::fs::{symlink, PermissionsExt};

use super::*;

/// `outside/etc/secret` beside `deploy/`; `deploy/usr/etc` a real directory with a file, an
/// absolute and a relative link out, and a directory.
fn fixture() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir_all(outside.join("etc")).unwrap();
    std::fs::write(outside.join("etc/secret"), b"host").unwrap();
    let etc = t.path().join("deploy/usr/etc");
    std::fs::create_dir_all(etc.join("app")).unwrap();
    std::fs::write(etc.join("app/conf"), b"image").unwrap();
    std::fs::set_permissions(etc.join("app/conf"), std::fs::Permissions::from_mode(0o640)).unwrap();
    symlink(&outside, etc.join("abs")).unwrap();
    symlink("../../../outside/etc", etc.join("rel")).unwrap();
    t
}

fn outside_untouched(t: &tempfile::TempDir) {
    let names: Vec<_> = std::fs::read_dir(t.path().join("outside/etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secret"]);
    assert_eq!(
        std::fs::read(t.path().join("outside/etc/secret")).unwrap(),
        b"host"
    );
}

#[test]
fn a_copy_keeps_links_as_links_and_reads_nothing_outside() {
    let t = fixture();
    let d = t.path().join("deploy");
    copy_pristine_etc(&d, "etc").unwrap();
    let etc = d.join("etc");
    assert_eq!(std::fs::read(etc.join("app/conf")).unwrap(), b"image");
    let mode = std::fs::symlink_metadata(etc.join("app/conf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
    assert_eq!(
        std::fs::read_link(etc.join("abs")).unwrap(),
        t.path().join("outside")
    );
    assert_eq!(
        std::fs::read_link(etc.join("rel")).unwrap(),
        Path::new("../../../outside/etc")
    );
    assert_eq!(scan(&etc).unwrap(), scan(&d.join("usr/etc")).unwrap());
    outside_untouched(&t);
}

#[test]
fn a_copy_from_behind_a_symlink_is_refused() {
    let t = fixture();
    let d = t.path().join("deploy");
    // The image's usr is a symlink to a host directory that has an etc.
    std::fs::rename(d.join("usr"), t.path().join("old-usr")).unwrap();
    symlink(t.path().join("outside"), d.join("usr")).unwrap();
    let e = copy_pristine_etc(&d, "etc").unwrap_err();
    assert!(
        e.to_string()
            .contains("deploy/usr: a symlink, not a directory"),
        "{e}"
    );
    assert!(!d.join("etc").exists(), "something was copied");
    let r = Root::open(&d).unwrap();
    let e = scan_in(&r, Path::new("usr/etc")).unwrap_err();
    assert!(e.to_string().contains("symlink"), "{e}");
    assert!(dir_in(&r, Path::new("usr/etc")).is_err());
    outside_untouched(&t);
}

#[test]
fn a_copy_into_a_symlinked_directory_is_refused() {
    let t = fixture();
    let d = t.path().join("deploy");
    std::fs::create_dir(d.join("etc")).unwrap();
    symlink(t.path().join("outside/etc"), d.join("etc/app")).unwrap();
    let r = Root::open(&d).unwrap();
    let e = copy_in(
        &r,
        Path::new("usr/etc/app/conf"),
        &r,
        Path::new("etc/app/conf"),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("etc/app: a symlink, not a directory"),
        "{e}"
    );
    outside_untouched(&t);
}

#[test]
fn a_scan_does_not_descend_into_links() {
    let t = fixture();
    let s = scan(&t.path().join("deploy/usr/etc")).unwrap();
    let names: Vec<_> = s.keys().map(|p| p.display().to_string()).collect();
    assert_eq!(names, ["abs", "app", "app/conf", "rel"]);
    assert!(matches!(s[Path::new("abs")].kind, Kind::Symlink(_)));
    assert!(scan(&t.path().join("missing")).unwrap().is_empty());
    let r = Root::open(t.path().join("deploy")).unwrap();
    assert!(scan_in(&r, Path::new("etc")).unwrap().is_empty());
}
