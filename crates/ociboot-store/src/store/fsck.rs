//! Checking the store: every reference has its image, every image its `image.json`, tree and
//! layer records, every layer record its objects; on request, every recorded object re-hashed
//! with its owner, mode and xattrs and compared with its name.
//!
//! fsck only reads and reports: it must never repair, remove or rewrite anything. Problems
//! come back as lines, one each, rather than as an error at the first (only references that
//! cannot be read at all stop it).

use std::collections::{BTreeMap, BTreeSet};

use super::Store;
use crate::error::Result;
use crate::objects::ObjectId;
use crate::tree::{Content, LayerOp};

impl Store {
    /// Check the store: every reference has its image, every image its tree and layers, every
    /// layer its objects; with `contents`, re-hash every object and check its metadata.
    pub fn fsck(&self, contents: bool) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut needed: BTreeMap<ObjectId, String> = BTreeMap::new();
        let mut images = BTreeSet::new();
        for r in self.refs()? {
            if !self.image_dir(&r.manifest_digest).is_dir() {
                problems.push(format!(
                    "reference {} points to missing image {}",
                    r.reference, r.manifest_digest
                ));
            } else {
                images.insert(r.manifest_digest);
            }
        }
        for d in &images {
            let rec = match self.image_record(d) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            if let Err(e) = self.tree(d) {
                problems.push(e.to_string());
            }
            for l in &rec.layers {
                match self.read_layer(&l.digest) {
                    Ok((_, ops)) => {
                        for op in ops {
                            if let LayerOp::Put(p, n) = op {
                                if let Content::File { object, .. } = n.content {
                                    needed.entry(object).or_insert_with(|| {
                                        format!("{} in layer {}", crate::tree::show(&p), l.digest)
                                    });
                                }
                            }
                        }
                    }
                    Err(e) => problems.push(format!("image {d}: {e}")),
                }
            }
        }
        for (id, what) in &needed {
            let p = self.object_path(id);
            if std::fs::symlink_metadata(&p).is_err() {
                problems.push(format!("object {} ({what}) is missing", id.hex()));
            }
        }
        if contents {
            // Objects no layer record refers to may be torn leftovers of an interrupted pull
            // (the next writer removes them): only the recorded ones must be intact.
            for id in needed.keys() {
                let path = self.object_path(id);
                if !path.exists() {
                    continue;
                }
                match crate::objects::verify_object(&path) {
                    Ok(actual) if actual == *id => {}
                    Ok(actual) => problems.push(format!(
                        "object {} has the content and metadata of {}",
                        id.hex(),
                        actual.hex()
                    )),
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::testutil::one_image;
    use super::*;

    /// A store with one pulled image of one file; the file's object.
    fn one_file_store(dir: &std::path::Path) -> (Store, ObjectId) {
        let (store, _, _) = one_image(dir, "a", &[("usr/bin/tool", b"#!/bin/sh\necho hi\n")]);
        let ids: Vec<ObjectId> = store.recorded_objects(None).unwrap().into_iter().collect();
        assert_eq!(ids.len(), 1);
        (store, ids[0])
    }

    #[test]
    fn a_freshly_pulled_store_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = one_file_store(dir.path());
        assert_eq!(store.fsck(false).unwrap(), Vec::<String>::new());
        assert_eq!(store.fsck(true).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn changed_content_is_found_only_when_contents_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = one_file_store(dir.path());
        std::fs::write(store.object_path(&id), b"#!/bin/sh\necho pwned\n").unwrap();
        assert_eq!(store.fsck(false).unwrap(), Vec::<String>::new());
        let problems = store.fsck(true).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!("object {} has the content", id.hex())),
            "{problems:?}"
        );
    }

    #[test]
    fn changed_mode_is_corruption_too() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = one_file_store(dir.path());
        let p = store.object_path(&id);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let problems = store.fsck(true).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn missing_objects_and_images_are_reported_with_what_needs_them() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = one_file_store(dir.path());
        std::fs::remove_file(store.object_path(&id)).unwrap();
        let problems = store.fsck(false).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains(&id.hex()), "{problems:?}");
        assert!(problems[0].contains("usr/bin/tool"), "{problems:?}");
        assert!(problems[0].ends_with("is missing"), "{problems:?}");

        let d = store.refs().unwrap()[0].manifest_digest;
        std::fs::remove_dir_all(store.image_dir(&d)).unwrap();
        let problems = store.fsck(true).unwrap();
        assert_eq!(
            problems,
            vec![format!(
                "reference {} points to missing image {d}",
                store.refs().unwrap()[0].reference
            )]
        );
    }

    #[test]
    fn a_torn_tree_record_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = one_file_store(dir.path());
        let d = store.refs().unwrap()[0].manifest_digest;
        let tree = store.image_dir(&d).join("tree");
        let data = std::fs::read(&tree).unwrap();
        std::fs::write(&tree, &data[..data.len() / 2]).unwrap();
        let problems = store.fsck(false).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(&tree.display().to_string()),
            "{problems:?}"
        );
    }
}
