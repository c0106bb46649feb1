//! A hostile tree: symlinks to the outside, absolute and relative, at the end and in the
//! middle of paths, and `..`. Nothing outside the root may be read, changed or removed.

use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;

/// `outside/secret` beside `root/`, and in the root symlinks that lead to it.
fn hostile() -> (tempfile::TempDir, Root) {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"host").unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("etc/real")).unwrap();
    std::fs::write(root.join("etc/real/x"), b"image").unwrap();
    symlink(&outside, root.join("etc/abs")).unwrap();
    symlink("../../outside", root.join("etc/rel")).unwrap();
    symlink(outside.join("secret"), root.join("etc/file-link")).unwrap();
    let r = Root::open(&root).unwrap();
    (t, r)
}

fn secret_is_there(t: &tempfile::TempDir) -> bool {
    std::fs::read(t.path().join("outside/secret")).is_ok_and(|d| d == b"host")
}

#[test]
fn a_symlink_in_the_middle_of_a_path_is_never_followed() {
    let (t, r) = hostile();
    for p in ["etc/abs/secret", "etc/rel/secret", "/etc/abs/secret"] {
        let e = r.read(p, 100).unwrap_err();
        assert!(e.to_string().contains("etc/"), "{e}");
        assert_eq!(r.stat(p).unwrap(), None, "{p}: stat went through a symlink");
        assert!(r.remove(p).is_err(), "{p}: remove went through a symlink");
        assert!(r.create_dir_all(format!("{p}/new"), 0o755).is_err());
        assert!(r.symlink("x", format!("{p}-new")).is_err());
    }
    assert!(secret_is_there(&t));
    assert!(!t.path().join("outside/secret/new").exists());
}

#[test]
fn a_symlink_at_the_end_is_acted_on_itself() {
    let (t, r) = hostile();
    assert_eq!(r.stat("etc/file-link").unwrap(), Some(Kind::Symlink));
    assert!(
        r.read("etc/file-link", 100).is_err(),
        "read followed the link"
    );
    assert_eq!(
        r.read_link("etc/abs").unwrap(),
        t.path().join("outside"),
        "the target as written"
    );
    r.remove("etc/abs").unwrap();
    r.remove("etc/file-link").unwrap();
    assert_eq!(r.stat("etc/abs").unwrap(), None);
    assert!(secret_is_there(&t));
}

#[test]
fn dot_dot_is_refused_before_the_kernel_sees_it() {
    let (t, r) = hostile();
    let e = r.remove("etc/../../outside/secret").unwrap_err();
    assert!(e.to_string().contains(".."), "{e}");
    assert!(r.read("../outside/secret", 100).is_err());
    assert!(secret_is_there(&t));
}

#[test]
fn removing_a_tree_removes_links_inside_it_not_what_they_point_at() {
    let (t, r) = hostile();
    r.remove("etc").unwrap();
    assert_eq!(r.stat("etc").unwrap(), None);
    assert!(secret_is_there(&t));
    // Gone already: not an error.
    r.remove("etc").unwrap();
    r.remove("no/such/path").unwrap();
}

#[test]
fn directories_are_created_beneath_and_a_file_in_the_way_is_an_error() {
    let (_t, r) = hostile();
    r.create_dir_all("/var/lib/app", 0o755).unwrap();
    assert_eq!(r.stat("var/lib/app").unwrap(), Some(Kind::Dir));
    r.create_dir_all("var/lib/app", 0o755).unwrap();
    let e = r.create_dir_all("etc/real/x/y", 0o755).unwrap_err();
    assert!(e.to_string().contains("etc/real/x"), "{e}");
    let sub = r.open_dir("var/lib").unwrap();
    sub.symlink("/etc/passwd", "pw").unwrap();
    assert_eq!(r.read_link("var/lib/pw").unwrap(), Path::new("/etc/passwd"));
    assert!(r.open_dir("etc/abs").is_err());
}

#[test]
fn reads_are_bounded_and_name_the_file() {
    let (_t, r) = hostile();
    assert_eq!(r.read("etc/real/x", 5).unwrap(), b"image");
    let e = r.read("etc/real/x", 4).unwrap_err();
    assert!(
        e.to_string().contains("etc/real/x") && e.to_string().contains("4 bytes"),
        "{e}"
    );
    assert!(r.stat("/").is_err(), "the root has no last name");
}

#[test]
fn a_tree_deeper_than_the_limit_is_refused_not_recursed_into() {
    let t = tempfile::tempdir().unwrap();
    let r = Root::open(t.path()).unwrap();
    // Built one level at a time: a path this long is over PATH_MAX.
    let mut dir = Root::open(t.path()).unwrap();
    for _ in 0..MAX_DEPTH + 2 {
        dir.create_dir_all("d", 0o755).unwrap();
        dir = dir.open_dir("d").unwrap();
    }
    let e = r.remove("d").unwrap_err();
    assert!(e.to_string().contains("deep"), "{e}");
}

#[test]
fn only_regular_files_open_as_such_and_listings_are_sorted() {
    let (t, r) = hostile();
    r.open_regular("etc/real/x").unwrap();
    let e = r.open_regular("etc/file-link").unwrap_err();
    assert!(e.to_string().contains("etc/file-link"), "{e}");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        t.path().join("root/etc/fifo"),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let e = r.open_regular("etc/fifo").unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let names: Vec<String> = r
        .list("etc")
        .unwrap()
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["abs", "fifo", "file-link", "real", "rel"]);
    assert!(r.list("etc/abs").is_err(), "listed through a symlink");
}

#[test]
fn in_root_resolution_follows_links_as_a_chroot_would() {
    let (t, r) = hostile();
    // Inside the root: an absolute link is taken relative to the root.
    symlink("/etc/real/x", t.path().join("root/etc/inside")).unwrap();
    let mut s = String::new();
    use std::io::Read as _;
    r.open_in_root("etc/inside")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "image");
    // A link to the host's file resolves to the same path inside the root: not there.
    assert!(r.open_in_root("etc/file-link").is_err());
    assert!(r.open_in_root("etc/rel/secret").is_err());
    assert!(
        r.open_in_root("etc/real").is_err(),
        "a directory is not a file"
    );
    assert!(secret_is_there(&t));
}

#[test]
fn created_and_changed_only_beneath_never_through_a_link() {
    let (t, r) = hostile();
    for p in ["etc/abs/new", "etc/rel/new"] {
        assert!(r.create_file(p, 0o644).is_err(), "{p}");
        assert!(r.create_dir(p, 0o755).is_err(), "{p}");
        assert!(r.mknod(p, rustix::fs::FileType::Fifo, 0o600, 0).is_err());
    }
    for p in ["etc/abs/secret", "etc/rel/secret"] {
        assert!(r.set_mode(p, 0o777).is_err(), "{p}");
        assert!(r.set_owner(p, 0, 0).is_err(), "{p}");
        assert!(r.xattrs(p).is_err(), "{p}");
        assert!(r.lstat(p).unwrap().is_none(), "{p}");
    }
    // A link at the end: its mode is refused (chmod would follow it), its own owner and
    // times are set, the target's stay.
    use std::os::unix::fs::MetadataExt;
    let secret = t.path().join("outside/secret");
    let before = std::fs::metadata(&secret).unwrap();
    assert!(r.set_mode("etc/file-link", 0o777).is_err());
    r.set_owner("etc/file-link", before.uid(), before.gid())
        .unwrap();
    let zero = rustix::fs::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    r.set_times(
        "etc/file-link",
        &rustix::fs::Timestamps {
            last_access: zero,
            last_modification: zero,
        },
    )
    .unwrap();
    let after = std::fs::metadata(&secret).unwrap();
    assert_eq!(after.mode(), before.mode());
    assert_eq!(after.mtime(), before.mtime());
    assert_eq!(
        std::fs::symlink_metadata(r.show(Path::new("etc/file-link")))
            .unwrap()
            .mtime(),
        0
    );
    assert!(!t.path().join("outside/new").exists());
    assert!(secret_is_there(&t));
}

#[test]
fn new_files_directories_and_metadata_beneath() {
    let (_t, r) = hostile();
    use std::io::Write;
    r.create_file("etc/real/f", 0o600)
        .unwrap()
        .write_all(b"x")
        .unwrap();
    assert!(r.create_file("etc/real/f", 0o600).is_err(), "O_EXCL");
    r.create_dir("etc/real/d", 0o700).unwrap();
    r.set_mode("etc/real/d", 0o751).unwrap();
    let st = r.lstat("etc/real/d").unwrap().unwrap();
    assert_eq!(st.st_mode & 0o7777, 0o751);
    assert_eq!(r.read("etc/real/f", 10).unwrap(), b"x");
    // A filesystem without xattrs has none; one with them lists what was set.
    let _ = r.set_xattr("etc/real/f", b"user.ociboot-test", b"v");
    let x = r.xattrs("etc/real/f").unwrap();
    assert!(
        x.is_empty()
            || x.iter()
                .any(|(n, v)| n == b"user.ociboot-test" && v == b"v")
    );
}
