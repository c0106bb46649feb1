//! The merged file tree of an image, kept in memory as nested directories, and the rules
//! for applying a layer's changes to it (whiteouts, opaque directories, hardlinks,
//! replacements), with every path confined to the tree's root.
//!
//! A tree never touches the filesystem: layers are applied logically, so a hostile layer
//! cannot write outside anything. Symlinks met on the way to a parent directory are resolved
//! inside the tree, with `..` clamped at the root, exactly like a path lookup under chroot
//! (`apply`). A tree is never deeper than [`MAX_DEPTH`], so every recursion over one (walk,
//! unpack, clone, drop) is bounded; applying layers also keeps it within [`Limits`].

use std::collections::BTreeMap;

use crate::error::{Error, Result};
#[cfg(doc)]
use crate::limits::Limits;
use crate::limits::MAX_DEPTH;
use crate::objects::ObjectId;

mod apply;

pub use apply::TreeSize;

/// Owner, permission bits (including setuid, setgid and sticky), time and xattrs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// The low 12 bits of st_mode (no file type).
    pub mode: u32,
    /// Numeric owner user id.
    pub uid: u32,
    /// Numeric owner group id.
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A directory and its children, by name (one path component each).
    Dir(BTreeMap<Vec<u8>, Node>),
    /// A regular file, its content kept in the store as a file object.
    File {
        /// The object holding the content (and owner, mode and xattrs).
        object: ObjectId,
        /// Content size in bytes.
        size: u64,
        /// The path of the file this one is hardlinked with in the image, if any.
        link: Option<Vec<u8>>,
    },
    /// A symbolic link and its target, as stored (absolute or relative).
    Symlink(Vec<u8>),
    /// A named pipe.
    Fifo,
    /// A character device: major and minor number.
    CharDevice(u32, u32),
    /// A block device: major and minor number.
    BlockDevice(u32, u32),
}

/// A file system entry, in a tree or a layer: its metadata and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Owner, mode, mtime and xattrs.
    pub meta: Meta,
    /// The kind of entry and its payload (children, object, target, device numbers).
    pub content: Content,
}

impl Node {
    /// Whether the node is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir(_))
    }

    /// A directory as created implicitly for a parent that has no entry of its own.
    pub fn implicit_dir() -> Node {
        Node {
            meta: Meta {
                mode: 0o755,
                ..Meta::default()
            },
            content: Content::Dir(BTreeMap::new()),
        }
    }

    /// The kind of node in words, for messages ("directory", "regular file", …).
    pub fn type_name(&self) -> &'static str {
        match self.content {
            Content::Dir(_) => "directory",
            Content::File { .. } => "regular file",
            Content::Symlink(_) => "symlink",
            Content::Fifo => "fifo",
            Content::CharDevice(..) => "character device",
            Content::BlockDevice(..) => "block device",
        }
    }
}

/// One change a layer makes, in the order of the layer's tar stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerOp {
    /// Create or replace the node at a path (a directory here carries no children).
    Put(Vec<u8>, Node),
    /// `.wh.NAME`: delete the path.
    Whiteout(Vec<u8>),
    /// `.wh..wh..opq`: hide what lower layers had in this directory.
    Opaque(Vec<u8>),
    /// A hardlink at the first path to the second (a file of this or a lower layer).
    Hardlink(Vec<u8>, Vec<u8>),
}

/// Split a normalised path (no leading `/`, no `..`) into components.
pub fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

/// Normalise a path from a tar entry: strip leading `/` and `./`, drop `.` components, refuse
/// `..` and NUL. Returns the components joined by `/` (empty for the root).
pub fn normalize_entry_path(raw: &[u8]) -> Result<Vec<u8>> {
    if raw.contains(&0) {
        return Err(Error::HostilePath(format!(
            "{}: it contains a NUL byte",
            show(raw)
        )));
    }
    let mut out = Vec::with_capacity(raw.len());
    for c in raw.split(|&b| b == b'/') {
        if c.is_empty() || c == b"." {
            continue;
        }
        if c == b".." {
            return Err(Error::HostilePath(format!(
                "{}: it has a '..' component",
                show(raw)
            )));
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// Paths longer than this are shortened in messages.
const SHOW_MAX: usize = 512;

/// A path for messages. One longer than 512 bytes (a hostile one can be megabytes) shows its
/// first 200 bytes and its length.
pub fn show(p: &[u8]) -> String {
    if p.len() > SHOW_MAX {
        return format!(
            "/{}… ({} bytes)",
            String::from_utf8_lossy(&p[..200]),
            p.len()
        );
    }
    format!("/{}", String::from_utf8_lossy(p))
}

/// An image's merged file tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// The root directory; every other node is below it.
    pub root: Node,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            root: Node::implicit_dir(),
        }
    }
}

impl Tree {
    /// An empty tree: just a root directory with mode 0755, owned by root.
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self, comps: &[Vec<u8>]) -> Option<&Node> {
        let mut n = &self.root;
        for c in comps {
            match &n.content {
                Content::Dir(children) => n = children.get(c)?,
                _ => return None,
            }
        }
        Some(n)
    }

    fn get_dir_mut(&mut self, comps: &[Vec<u8>]) -> Option<&mut BTreeMap<Vec<u8>, Node>> {
        let mut n = &mut self.root;
        for c in comps {
            let Content::Dir(children) = &mut n.content else {
                return None;
            };
            n = children.get_mut(c)?;
        }
        match &mut n.content {
            Content::Dir(children) => Some(children),
            _ => None,
        }
    }

    /// Look a path up (without following a symlink in the last component).
    pub fn lookup(&self, path: &[u8]) -> Option<&Node> {
        let comps = components(path);
        let canon = self.canonical(&comps, false, path).ok()?;
        self.get(&canon)
    }

    /// Visit every node in depth-first order, parents before children, names sorted.
    pub fn walk(&self, f: &mut dyn FnMut(&[u8], &Node) -> Result<()>) -> Result<()> {
        fn rec(
            path: &mut Vec<u8>,
            n: &Node,
            f: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
        ) -> Result<()> {
            f(path, n)?;
            if let Content::Dir(children) = &n.content {
                for (name, c) in children {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push(b'/');
                    }
                    path.extend_from_slice(name);
                    rec(path, c, f)?;
                    path.truncate(len);
                }
            }
            Ok(())
        }
        rec(&mut Vec::new(), &self.root, f)
    }

    /// Rebuild a tree from (path, node) pairs in [`Tree::walk`] order. A path deeper than
    /// [`MAX_DEPTH`] is corruption: no tree that deep is ever made.
    pub fn from_entries(entries: impl IntoIterator<Item = (Vec<u8>, Node)>) -> Result<Tree> {
        let mut t = Tree::new();
        for (p, n) in entries {
            let comps = components(&p);
            if comps.len() > MAX_DEPTH {
                return Err(Error::Corrupt(format!(
                    "tree entry {} is deeper than {MAX_DEPTH} components",
                    show(&p)
                )));
            }
            match comps.split_last() {
                None => {
                    if !n.is_dir() {
                        return Err(Error::Corrupt("tree root is not a directory".into()));
                    }
                    t.root.meta = n.meta;
                }
                Some((name, parent)) => {
                    let dir = t.get_dir_mut(parent).ok_or_else(|| {
                        Error::Corrupt(format!("tree entry {} before its parent", show(&p)))
                    })?;
                    dir.insert(name.clone(), n);
                }
            }
        }
        Ok(t)
    }

    /// Number of nodes and total size of regular files.
    pub fn stats(&self) -> (u64, u64) {
        let mut count = 0;
        let mut bytes = 0;
        let _ = self.walk(&mut |_, n| {
            count += 1;
            if let Content::File { size, .. } = n.content {
                bytes += size;
            }
            Ok(())
        });
        (count, bytes)
    }
}

#[cfg(test)]
mod tests;
