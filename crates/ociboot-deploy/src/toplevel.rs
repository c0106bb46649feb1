//! Where the writable top-level directories live.
//!
//! A booted deployment is read-only everywhere except `/etc` and `/var` (and the API and
//! scratch filesystems mounted at boot). Files in the image are hardlinks to the store's
//! objects, shared by every deployment: a write through one of them would change them all. So
//! the directories that hold users' state are symlinks into the stateroot's `/var`, as bootc
//! and ostree lay them out:
//!
//! | path    | is                 | mode |
//! |---------|--------------------|------|
//! | `/home` | `var/home`         | 0755 |
//! | `/root` | `var/roothome`     | 0700 |
//! | `/srv`  | `var/srv`          | 0755 |
//! | `/mnt`  | `var/mnt`          | 0755 |
//! | `/tmp`  | a tmpfs, made at boot (mode 1777) | |
//!
//! At checkout an image's plain directory at one of these paths becomes the symlink (an image
//! that already ships a symlink there keeps it). What the image shipped inside seeds the
//! stateroot's `/var` only when that is created (the first deployment, as with `/var` itself);
//! later, it is reported, never silently hidden. The root set-up at boot creates the targets
//! that are missing ([`ensure_state_dirs`]).

use std::path::Path;

use ociboot_store::{Content, Meta, Node, Tree};

use crate::error::{Ctx, Error, Result};

/// The top-level directories that live in `/var`: (path, name under `/var`, mode).
pub const STATE_DIRS: &[(&str, &str, u32)] = &[
    ("home", "home", 0o755),
    ("root", "roothome", 0o700),
    ("srv", "srv", 0o755),
    ("mnt", "mnt", 0o755),
];

/// Directories whose image content is hidden at runtime (a tmpfs is mounted over them).
pub const SCRATCH_DIRS: &[&str] = &["tmp"];

/// What [`relocate`] took out of an image.
#[derive(Debug, Default)]
pub struct Relocated {
    /// The image's content of each relocated directory: (name under `/var`, directory node).
    pub content: Vec<(&'static str, Node)>,
    /// One line per state directory whose image content is not empty: it is not visible on
    /// the host unless it seeds a new `/var`.
    pub state_notes: Vec<String>,
    /// One line per scratch directory (`/tmp`) whose image content is hidden at runtime.
    pub scratch_notes: Vec<String>,
}

fn symlink(target: &str) -> Node {
    Node {
        meta: Meta {
            mode: 0o777,
            ..Meta::default()
        },
        content: Content::Symlink(target.as_bytes().to_vec()),
    }
}

/// Up to three names of a directory's entries, for a message.
fn some_names(children: &std::collections::BTreeMap<Vec<u8>, Node>) -> String {
    let mut names: Vec<String> = children
        .keys()
        .take(3)
        .map(|k| crate::bls::clean_title(&String::from_utf8_lossy(k)))
        .collect();
    if children.len() > 3 {
        names.push("…".to_string());
    }
    names.join(", ")
}

/// Replace the image's plain top-level state directories with symlinks into `/var` (see the
/// module's table) and return what the image had in them. `/tmp`'s content is only reported.
pub fn relocate(tree: &mut Tree) -> Result<Relocated> {
    let Content::Dir(top) = &mut tree.root.content else {
        return Err(Error::Invalid("image root is not a directory".into()));
    };
    let mut out = Relocated::default();
    for &(name, var_name, _) in STATE_DIRS {
        let key = name.as_bytes();
        match top.get(key).map(|n| &n.content) {
            // The image's own choice (a symlink, or a file where a directory is expected):
            // image content like any other, read-only at runtime.
            Some(c) if !matches!(c, Content::Dir(_)) => continue,
            _ => {}
        }
        let link = symlink(&format!("var/{var_name}"));
        if let Some(node) = top.insert(key.to_vec(), link) {
            if let Content::Dir(children) = &node.content {
                if !children.is_empty() {
                    out.state_notes.push(format!(
                        "the image's /{name} holds {} entries ({}): on the host /{name} is \
                         /var/{var_name}, which the image fills only on the first deployment",
                        children.len(),
                        some_names(children)
                    ));
                }
            }
            out.content.push((var_name, node));
        }
    }
    for name in SCRATCH_DIRS {
        if let Some(Content::Dir(children)) = top.get(name.as_bytes()).map(|n| &n.content) {
            if !children.is_empty() {
                out.scratch_notes.push(format!(
                    "the image's /{name} holds {} entries ({}): hidden at runtime by the tmpfs \
                     mounted on /{name}",
                    children.len(),
                    some_names(children)
                ));
            }
        }
    }
    Ok(out)
}

/// Put the relocated content into an image's `/var` tree (for seeding a new stateroot's
/// `/var`), where that `/var` has nothing of the same name, with the modes of the table.
pub fn seed_into(var: &mut Node, content: Vec<(&'static str, Node)>) {
    let Content::Dir(children) = &mut var.content else {
        return;
    };
    for (name, mut node) in content {
        // The table's mode, whatever the image had: /root is private.
        if let Some(&(_, _, mode)) = STATE_DIRS.iter().find(|d| d.1 == name) {
            node.meta.mode = mode;
        }
        children.entry(name.as_bytes().to_vec()).or_insert(node);
    }
}

/// Create the missing targets of the state directories in a stateroot's `/var` (at boot, and
/// for a `/var` made before they existed). An existing entry is left as it is.
pub fn ensure_state_dirs(var: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    for &(_, var_name, mode) in STATE_DIRS {
        let p = var.join(var_name);
        match std::fs::DirBuilder::new().mode(mode).create(&p) {
            Ok(()) => {
                // The umask may have cut the mode; the table is what a user expects.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                    .at("setting the mode of", &p)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ociboot_fs::IoError::at("creating", &p, e).into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(children: Vec<(&str, Node)>) -> Node {
        let mut n = Node::implicit_dir();
        if let Content::Dir(c) = &mut n.content {
            for (k, v) in children {
                c.insert(k.as_bytes().to_vec(), v);
            }
        }
        n
    }

    fn target(t: &Tree, name: &str) -> Option<String> {
        match &t.lookup(name.as_bytes())?.content {
            Content::Symlink(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }

    #[test]
    fn plain_directories_become_links_into_var_and_their_content_is_kept() {
        let mut t = Tree {
            root: dir(vec![
                ("root", dir(vec![(".bashrc", dir(vec![]))])),
                ("home", dir(vec![])),
                ("srv", symlink("/elsewhere")),
                ("tmp", dir(vec![("leftover", dir(vec![]))])),
            ]),
        };
        let r = relocate(&mut t).unwrap();
        assert_eq!(target(&t, "root").as_deref(), Some("var/roothome"));
        assert_eq!(target(&t, "home").as_deref(), Some("var/home"));
        assert_eq!(
            target(&t, "mnt").as_deref(),
            Some("var/mnt"),
            "made when absent"
        );
        assert_eq!(
            target(&t, "srv").as_deref(),
            Some("/elsewhere"),
            "the image's own"
        );
        assert_eq!(r.state_notes.len(), 1, "{:?}", r.state_notes);
        assert!(r.state_notes[0].contains("/root holds 1 entries (.bashrc)"));
        assert_eq!(r.scratch_notes.len(), 1, "{:?}", r.scratch_notes);
        assert!(r.scratch_notes[0].contains("/tmp holds 1 entries (leftover)"));
        let mut var = dir(vec![("home", dir(vec![("kept", dir(vec![]))]))]);
        seed_into(&mut var, r.content);
        let var = Tree { root: var };
        assert!(var.lookup(b"roothome/.bashrc").is_some());
        assert!(var.lookup(b"home/kept").is_some(), "the image's /var wins");
    }

    #[test]
    fn missing_targets_are_created_with_their_modes() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("home")).unwrap();
        std::fs::set_permissions(
            d.path().join("home"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        ensure_state_dirs(d.path()).unwrap();
        let mode = |n: &str| {
            std::fs::metadata(d.path().join(n))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(mode("roothome") & 0o7777, 0o700);
        assert_eq!(mode("srv") & 0o7777, 0o755);
        assert_eq!(
            mode("home") & 0o7777,
            0o750,
            "an existing one is left alone"
        );
    }
}
