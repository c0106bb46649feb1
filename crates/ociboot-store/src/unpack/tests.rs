//! Tests of unpack: a tree as deep as the store allows is written, in both modes, by threads
//! with half the stack a spawned thread has by default.

use super::*;
use crate::limits::MAX_DEPTH;
use crate::store::testutil::one_image;

#[test]
fn the_deepest_tree_unpacks_on_a_small_stack_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let deepest = format!("{}/f", vec!["d"; MAX_DEPTH - 1].join("/"));
    let (store, _, d) = one_image(dir.path(), "deep", &[(&deepest, b"deepest\n")]);
    let tree = store.tree(&d).unwrap();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn_scoped(s, || {
                for (mode, dest) in [(Mode::Copy, "copy"), (Mode::Hardlink, "hardlink")] {
                    let dest = dir.path().join(dest);
                    let st = unpack_with(&store, &tree, &dest, mode).unwrap();
                    assert_eq!(st.entries, MAX_DEPTH as u64);
                    assert_eq!(std::fs::read(dest.join(&deepest)).unwrap(), b"deepest\n");
                }
            })
            .unwrap()
            .join()
            .unwrap()
    });
}
