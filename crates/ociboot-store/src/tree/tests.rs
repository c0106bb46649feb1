//! Tests of the merged tree: layer semantics, confinement of symlinked parents, limits.

use super::*;
use crate::limits::Limits;

fn file(b: u8) -> Node {
    Node {
        meta: Meta {
            mode: 0o644,
            ..Default::default()
        },
        content: Content::File {
            object: ObjectId([b; 32]),
            size: b as u64,
            link: None,
        },
    }
}
fn dir() -> Node {
    Node {
        meta: Meta {
            mode: 0o755,
            ..Default::default()
        },
        content: Content::Dir(BTreeMap::new()),
    }
}
fn link(t: &str) -> Node {
    Node {
        meta: Meta {
            mode: 0o777,
            ..Default::default()
        },
        content: Content::Symlink(t.as_bytes().to_vec()),
    }
}
fn put(p: &str, n: Node) -> LayerOp {
    LayerOp::Put(p.as_bytes().to_vec(), n)
}

#[test]
fn whiteouts_and_opaque() {
    let mut t = Tree::new();
    t.apply_layer(&[
        put("a", dir()),
        put("a/x", file(1)),
        put("a/y", file(2)),
        put("b/c/d", file(3)),
    ])
    .unwrap();
    assert!(t.lookup(b"b/c").unwrap().is_dir(), "implicit parents");
    t.apply_layer(&[
        LayerOp::Whiteout(b"a/x".to_vec()),
        LayerOp::Whiteout(b"b".to_vec()),
    ])
    .unwrap();
    assert!(t.lookup(b"a/x").is_none());
    assert!(t.lookup(b"a/y").is_some());
    assert!(t.lookup(b"b").is_none());
    // opaque after the new file in the same layer still keeps the new file
    t.apply_layer(&[put("a/new", file(4)), LayerOp::Opaque(b"a".to_vec())])
        .unwrap();
    assert!(t.lookup(b"a/y").is_none());
    assert!(t.lookup(b"a/new").is_some());
}

#[test]
fn symlink_parents_are_confined() {
    let mut t = Tree::new();
    t.apply_layer(&[
        put("evil", link("/../../etc")),
        put("rel", link("../../../../tmp")),
    ])
    .unwrap();
    t.apply_layer(&[put("evil/pwned", file(1)), put("rel/x", file(2))])
        .unwrap();
    // resolved inside the tree: /etc/pwned and /tmp/x
    assert!(t.lookup(b"etc/pwned").is_some());
    assert!(t.lookup(b"tmp/x").is_some());
    assert!(matches!(
        t.lookup(b"evil").unwrap().content,
        Content::Symlink(_)
    ));
}

#[test]
fn replacements_and_hardlinks() {
    let mut t = Tree::new();
    t.apply_layer(&[put("f", file(1)), put("d", dir()), put("d/x", file(2))])
        .unwrap();
    t.apply_layer(&[
        put("f", dir()),
        put("d", link("f")),
        LayerOp::Hardlink(b"h".to_vec(), b"f".to_vec()),
    ])
    .unwrap_err();
    let mut t = Tree::new();
    t.apply_layer(&[put("f", file(1)), put("d", dir()), put("d/x", file(2))])
        .unwrap();
    t.apply_layer(&[
        put("f", dir()),
        put("d", link("f")),
        LayerOp::Hardlink(b"h".to_vec(), b"d/x".to_vec()),
    ])
    .unwrap_err();
    let mut t = Tree::new();
    t.apply_layer(&[put("f", file(1)), put("g", file(5))])
        .unwrap();
    t.apply_layer(&[LayerOp::Hardlink(b"h".to_vec(), b"f".to_vec())])
        .unwrap();
    match &t.lookup(b"h").unwrap().content {
        Content::File { object, link, .. } => {
            assert_eq!(*object, ObjectId([1; 32]));
            assert_eq!(link.as_deref(), Some(&b"f"[..]));
        }
        _ => panic!(),
    }
    assert!(t
        .apply_layer(&[LayerOp::Hardlink(b"z".to_vec(), b"missing".to_vec())])
        .is_err());
    t.apply_layer(&[put("g", dir()), put("g/in", file(6))])
        .unwrap();
    assert!(t.lookup(b"g/in").is_some());
    t.apply_layer(&[put("g", file(7))]).unwrap();
    assert!(t.lookup(b"g/in").is_none());
}

#[test]
fn paths() {
    assert_eq!(normalize_entry_path(b"./a//b/./c/").unwrap(), b"a/b/c");
    assert_eq!(normalize_entry_path(b"/abs").unwrap(), b"abs");
    assert!(normalize_entry_path(b"a/../b").is_err());
    assert!(normalize_entry_path(b"../x").is_err());
}

#[test]
fn symlink_loops() {
    let mut t = Tree::new();
    t.apply_layer(&[put("a", link("b")), put("b", link("a"))])
        .unwrap();
    assert!(t.apply_layer(&[put("a/x", file(1))]).is_err());
}

fn chain(n: usize) -> String {
    vec!["d"; n].join("/")
}

#[test]
fn a_path_deeper_than_the_limit_once_symlinks_are_resolved_is_refused() {
    let mut t = Tree::new();
    t.apply_layer(&[put(&chain(200), dir()), put("s", link(&chain(200)))])
        .unwrap();
    // 1 + 56 components as written, 256 once `s` is resolved: the deepest allowed.
    t.apply_layer(&[put(&format!("s/{}/f", chain(55)), file(1))])
        .unwrap();
    assert!(t.lookup(format!("{}/f", chain(255)).as_bytes()).is_some());
    let err = t
        .apply_layer(&[put(&format!("s/{}/g", chain(56)), file(1))])
        .unwrap_err();
    assert!(
        matches!(&err, Error::Limit(m) if m.starts_with("/s/d/d") && m.contains("more than 256 components")),
        "{err}"
    );
    // Hardlinks resolve their path the same way.
    let err = t
        .apply_layer(&[LayerOp::Hardlink(
            format!("s/{}/g", chain(56)).into_bytes(),
            format!("{}/f", chain(255)).into_bytes(),
        )])
        .unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
}

#[test]
fn a_path_longer_than_the_limit_once_symlinks_are_resolved_is_refused() {
    let name = |c: &str| c.repeat(250);
    let long = vec![name("a"); 16].join("/");
    let mut t = Tree::new();
    t.apply_layer(&[put(&long, dir()), put("s", link(&long))])
        .unwrap();
    // 4015 bytes and 80 more: within the limit.
    t.apply_layer(&[put(&format!("s/{}", "b".repeat(79)), file(1))])
        .unwrap();
    let err = t
        .apply_layer(&[put(&format!("s/{}", "b".repeat(80)), file(1))])
        .unwrap_err();
    assert!(
        matches!(&err, Error::Limit(m) if m.contains("longer than 4095 bytes")),
        "{err}"
    );
}

#[test]
fn a_lookup_stepping_through_too_many_components_gives_up() {
    // 2000 `.` per hop, through 3 hops: more steps than any real path takes.
    let dots = "./".repeat(2000);
    let mut t = Tree::new();
    t.apply_layer(&[
        put("d", dir()),
        put("a", link(&format!("{dots}b"))),
        put("b", link(&format!("{dots}c"))),
        put("c", link(&format!("{dots}d"))),
    ])
    .unwrap();
    let err = t.apply_layer(&[put("a/f", file(1))]).unwrap_err();
    assert!(
        matches!(&err, Error::Limit(m) if m.contains("/a/f: resolving it takes more than")),
        "{err}"
    );
    t.apply_layer(&[put("b/f", file(1))]).unwrap();
    assert!(t.lookup(b"d/f").is_some());
}

#[test]
fn the_size_of_a_tree_is_counted_exactly_as_layers_change_it() {
    let mut t = Tree::new();
    let mut size = t.size(Limits::DEFAULT);
    let mut xdir = dir();
    xdir.meta.xattrs = vec![(b"user.a".to_vec(), b"12345".to_vec())];
    let layers = [
        vec![
            put("a/b/c/f", file(1)),
            put("a/l", link("b/c")),
            put("a", xdir.clone()),
            LayerOp::Hardlink(b"a/h".to_vec(), b"a/b/c/f".to_vec()),
        ],
        vec![
            put("a/l/g", file(2)),
            put("a/b", file(3)),
            put("", xdir),
            put("a", dir()),
        ],
        vec![
            LayerOp::Whiteout(b"a/h".to_vec()),
            LayerOp::Opaque(b"a".to_vec()),
            put("a/new/x", file(4)),
        ],
        vec![LayerOp::Whiteout(b"a".to_vec()), put("z", link("/a"))],
    ];
    for ops in &layers {
        t.apply_layer_sized(ops.clone(), &mut size).unwrap();
        assert_eq!(size, t.size(Limits::DEFAULT), "after {ops:?}");
    }
}

#[test]
fn a_tree_beyond_its_limits_is_refused_and_replacements_do_not_count_twice() {
    let limits = Limits {
        entries: 10,
        directories: 9,
        metadata: 1000,
    };
    let mut t = Tree::new();
    let mut size = t.size(limits);
    // The root, 8 implicit directories and the file: 10 nodes.
    t.apply_layer_sized(vec![put(&format!("{}/f", chain(8)), file(1))], &mut size)
        .unwrap();
    // Replacing and deleting files again and again stays within.
    for i in 0..50 {
        t.apply_layer_sized(
            vec![LayerOp::Whiteout(b"d".to_vec()), put(&chain(9), file(i))],
            &mut size,
        )
        .unwrap();
    }
    assert_eq!((size.nodes, size.dirs), (10, 9));
    let err = t
        .apply_layer_sized(vec![put("x", file(1))], &mut size)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Limit(m) if m.contains("more than 10 entries")),
        "{err}"
    );
    let mut t = Tree::new();
    let few_dirs = Limits {
        entries: 100,
        ..limits
    };
    let mut size = t.size(few_dirs);
    let err = t
        .apply_layer_sized(vec![put(&format!("{}/f", chain(9)), file(1))], &mut size)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Limit(m) if m.contains("more than 9 directories")),
        "{err}"
    );
    let mut t = Tree::new();
    let mut size = t.size(limits);
    let err = t
        .apply_layer_sized(vec![put("l", link(&"t".repeat(1001)))], &mut size)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Limit(m) if m.contains("more than 1000 bytes of names")),
        "{err}"
    );
}

#[test]
fn trees_at_the_depth_limit_recurse_on_a_small_stack() {
    // Half the stack of a spawned thread: walk, clone, compare, records and drop, at the
    // depth limit, fit with room to spare (in a debug build, whose frames are the largest).
    let deepest = format!("{}/f", chain(MAX_DEPTH - 1));
    let t = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let mut t = Tree::new();
            t.apply_layer(&[put(&deepest, file(1))]).unwrap();
            let mut n = 0;
            t.walk(&mut |_, _| {
                n += 1;
                Ok(())
            })
            .unwrap();
            assert_eq!(n, MAX_DEPTH + 1);
            let rec = crate::record::encode_tree(&t, "tree").unwrap();
            let back = crate::record::decode_tree(&rec, "tree").unwrap();
            assert_eq!(back, t.clone());
            drop(back);
            t.stats()
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(t, (MAX_DEPTH as u64 + 1, 1));
    // A record deeper than any tree the store makes is corruption.
    let too_deep = (0..=MAX_DEPTH).map(|i| (chain(i + 1).into_bytes(), dir()));
    let err = Tree::from_entries(too_deep).unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
}
