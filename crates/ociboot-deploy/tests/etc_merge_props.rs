//! Property test of the /etc three-way merge against a model: a path the admin changed keeps
//! the local state (content, mode, deletion, addition), everything else follows the new image,
//! and a directory the admin deleted stays deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ociboot_deploy::etcmerge;
use proptest::prelude::*;

/// A small /etc: directories d0..d2, files d*/f0..f2 with (content, mode).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Etc {
    dirs: BTreeSet<String>,
    files: BTreeMap<String, (u8, u32)>,
}

fn etc() -> impl Strategy<Value = Etc> {
    (
        prop::collection::btree_set(0..3u8, 0..=3),
        prop::collection::btree_map(
            (0..3u8, 0..3u8),
            (0..4u8, prop::sample::select(vec![0o644u32, 0o600, 0o755])),
            0..9,
        ),
    )
        .prop_map(|(dirs, files)| {
            let mut e = Etc::default();
            for d in dirs {
                e.dirs.insert(format!("d{d}"));
            }
            for ((d, f), v) in files {
                if e.dirs.contains(&format!("d{d}")) {
                    e.files.insert(format!("d{d}/f{f}"), v);
                }
            }
            e
        })
}

/// An edit of a tree: drop some dirs and files, change or add some files and dirs.
fn edited(base: Etc) -> impl Strategy<Value = Etc> {
    (
        etc(),
        prop::collection::vec(any::<bool>(), 12),
        prop::collection::vec(any::<bool>(), 12),
    )
        .prop_map(move |(other, keep, take)| {
            let mut e = base.clone();
            for (i, d) in base.dirs.iter().enumerate() {
                if !keep[i % 12] && i % 2 == 0 {
                    e.dirs.remove(d);
                    e.files.retain(|f, _| !f.starts_with(&format!("{d}/")));
                }
            }
            for (i, (f, v)) in other.files.iter().enumerate() {
                if take[i % 12] {
                    let d = f.split('/').next().unwrap().to_string();
                    e.dirs.insert(d);
                    e.files.insert(f.clone(), *v);
                }
            }
            for (i, f) in base.files.keys().enumerate() {
                if !keep[(i + 5) % 12] && e.files.contains_key(f) && i % 3 == 0 {
                    e.files.remove(f);
                }
            }
            e
        })
}

fn write(root: &Path, e: &Etc) {
    std::fs::create_dir_all(root).unwrap();
    for d in &e.dirs {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (f, (c, m)) in &e.files {
        let p = root.join(f);
        std::fs::write(&p, vec![*c; *c as usize + 1]).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*m)).unwrap();
    }
}

fn read(root: &Path) -> Etc {
    let mut e = Etc::default();
    for d in std::fs::read_dir(root).unwrap() {
        let d = d.unwrap();
        let dn = d.file_name().to_string_lossy().to_string();
        e.dirs.insert(dn.clone());
        for f in std::fs::read_dir(d.path()).unwrap() {
            let f = f.unwrap();
            let data = std::fs::read(f.path()).unwrap();
            let mode = f.metadata().unwrap().permissions().mode() & 0o7777;
            e.files.insert(
                format!("{dn}/{}", f.file_name().to_string_lossy()),
                (data[0], mode),
            );
        }
    }
    e
}

fn model(orig: &Etc, modified: &Etc, new: &Etc) -> Etc {
    let mut r = Etc::default();
    let removed_dirs: BTreeSet<&String> = orig
        .dirs
        .iter()
        .filter(|d| !modified.dirs.contains(*d))
        .collect();
    let all_files: BTreeSet<&String> = orig
        .files
        .keys()
        .chain(modified.files.keys())
        .chain(new.files.keys())
        .collect();
    for f in all_files {
        let d = f.split('/').next().unwrap().to_string();
        if removed_dirs.contains(&d) {
            continue;
        }
        let local_changed = orig.files.get(f) != modified.files.get(f);
        let v = if local_changed {
            modified.files.get(f)
        } else {
            new.files.get(f)
        };
        if let Some(v) = v {
            r.files.insert(f.clone(), *v);
            r.dirs.insert(d);
        }
    }
    for d in &new.dirs {
        if !removed_dirs.contains(d) {
            r.dirs.insert(d.clone());
        }
    }
    for d in &modified.dirs {
        if !orig.dirs.contains(d) {
            r.dirs.insert(d.clone());
        }
    }
    r
}

proptest! {
    #[test]
    fn merge_matches_the_model((orig, modified, new) in etc().prop_flat_map(|o| (Just(o.clone()), edited(o.clone()), edited(o)))) {
        let t = tempfile::tempdir().unwrap();
        let (o, m, n) = (t.path().join("orig"), t.path().join("mod"), t.path().join("new"));
        write(&o, &orig);
        write(&m, &modified);
        write(&n, &new);
        etcmerge::merge(&o, &m, &n).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(read(&n), model(&orig, &modified, &new));
    }
}

#[test]
fn a_local_file_where_the_image_now_has_a_directory_is_a_conflict() {
    let t = tempfile::tempdir().unwrap();
    let (o, m, n) = (
        t.path().join("orig"),
        t.path().join("mod"),
        t.path().join("new"),
    );
    for p in [&o, &m, &n] {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(m.join("thing"), "local").unwrap();
    std::fs::create_dir(n.join("thing")).unwrap();
    std::fs::write(n.join("thing/x"), "image").unwrap();
    let e = etcmerge::merge(&o, &m, &n).unwrap_err();
    assert!(e.to_string().contains("/etc/thing"), "{e}");
    assert!(n.join("thing/x").exists(), "nothing may change on conflict");
}

#[test]
fn a_local_change_below_an_image_symlink_is_a_conflict() {
    let t = tempfile::tempdir().unwrap();
    let (o, m, n) = (
        t.path().join("orig"),
        t.path().join("mod"),
        t.path().join("new"),
    );
    for p in [&o, &m, &n] {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::create_dir(o.join("d")).unwrap();
    std::fs::create_dir(m.join("d")).unwrap();
    std::fs::write(m.join("d/local"), "x").unwrap();
    std::os::unix::fs::symlink("/tmp", n.join("d")).unwrap();
    let e = etcmerge::merge(&o, &m, &n).unwrap_err();
    assert!(e.to_string().contains("symlink"), "{e}");
}
