//! The merge against trees that changed since they were scanned, or that hold symlinks out:
//! it reads the live /etc and writes the new one only beneath them.

use std::os::unix::fs::symlink;

use super::*;

struct Trees {
    t: tempfile::TempDir,
}

impl Trees {
    /// `orig`, `live` and `new` /etc trees and an `outside` directory with a `conf` of its own.
    fn new() -> Trees {
        let t = tempfile::tempdir().unwrap();
        for d in ["orig/app", "live/app", "new/app", "outside"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("orig/app/conf"), "image\n").unwrap();
        std::fs::write(t.path().join("live/app/conf"), "admin\n").unwrap();
        std::fs::write(t.path().join("new/app/conf"), "image v2\n").unwrap();
        std::fs::write(t.path().join("outside/conf"), "host\n").unwrap();
        Trees { t }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.t.path().join(rel)
    }
}

#[test]
fn a_live_directory_swapped_for_a_link_after_the_scan_is_not_read_through() {
    let t = Trees::new();
    let o = fstree::scan(&t.p("orig")).unwrap();
    let m = fstree::scan(&t.p("live")).unwrap();
    // Between the scan (on its own thread at finalize) and the merge, /etc/app becomes a
    // symlink to a directory outside /etc.
    std::fs::remove_dir_all(t.p("live/app")).unwrap();
    symlink(t.p("outside"), t.p("live/app")).unwrap();
    let r = merge_scanned(&o, &m, &t.p("live"), &t.p("new"));
    let got = std::fs::read_to_string(t.p("new/app/conf")).unwrap_or_default();
    assert_ne!(
        got, "host\n",
        "the merge copied a file from outside /etc: {r:?}"
    );
    assert!(r.is_err(), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(t.p("outside/conf")).unwrap(),
        "host\n"
    );
}

#[test]
fn links_out_are_carried_as_links() {
    let t = Trees::new();
    symlink(t.p("outside"), t.p("live/app/out")).unwrap();
    symlink("../../outside/conf", t.p("live/app/rel")).unwrap();
    let s = merge(&t.p("orig"), &t.p("live"), &t.p("new")).unwrap();
    assert_eq!((s.added, s.modified, s.removed), (2, 1, 0));
    assert_eq!(
        std::fs::read_link(t.p("new/app/out")).unwrap(),
        t.p("outside")
    );
    assert_eq!(
        std::fs::read_link(t.p("new/app/rel")).unwrap(),
        Path::new("../../outside/conf")
    );
    assert_eq!(
        std::fs::read_to_string(t.p("new/app/conf")).unwrap(),
        "admin\n"
    );
    let names: Vec<_> = std::fs::read_dir(t.p("outside"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["conf"]);
}
