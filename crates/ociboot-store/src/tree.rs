//! The merged file tree of an image, kept in memory as nested directories, and the rules
//! for applying a layer's changes to it (whiteouts, opaque directories, hardlinks,
//! replacements), with every path confined to the tree's root.
//!
//! A tree never touches the filesystem: layers are applied logically, so a hostile layer
//! cannot write outside anything. Symlinks met on the way to a parent directory are resolved
//! inside the tree, with `..` clamped at the root, exactly like a path lookup under chroot.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::objects::ObjectId;

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

/// A path for messages.
pub fn show(p: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(p))
}

const MAX_SYMLINK_HOPS: usize = 40;

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

    /// Look a path up (without following a symlink in the last component).
    pub fn lookup(&self, path: &[u8]) -> Option<&Node> {
        let comps = components(path);
        let canon = self.canonical(&comps, false, path).ok()?;
        self.get(&canon)
    }

    fn get_dir_mut(
        &mut self,
        comps: &[Vec<u8>],
        create: bool,
    ) -> Option<&mut BTreeMap<Vec<u8>, Node>> {
        let mut n = &mut self.root;
        for c in comps {
            let Content::Dir(children) = &mut n.content else {
                return None;
            };
            if create && !children.contains_key(c) {
                children.insert(c.clone(), Node::implicit_dir());
            }
            n = children.get_mut(c)?;
        }
        match &mut n.content {
            Content::Dir(children) => Some(children),
            _ => None,
        }
    }

    /// Resolve `comps` to the components of real directories (and a last component), following
    /// symlinks inside the tree with `..` clamped at the root. Missing components are kept as
    /// they are (they will be created as directories).
    fn canonical(&self, comps: &[Vec<u8>], follow_last: bool, orig: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut resolved: Vec<Vec<u8>> = Vec::new();
        let mut todo: std::collections::VecDeque<Vec<u8>> = comps.iter().cloned().collect();
        let mut hops = 0;
        let mut missing = false;
        while let Some(c) = todo.pop_front() {
            if c.is_empty() || c == b"." {
                continue;
            }
            if c == b".." {
                resolved.pop();
                missing = false;
                continue;
            }
            let is_last = todo.is_empty();
            if missing {
                resolved.push(c);
                continue;
            }
            resolved.push(c);
            match self.get(&resolved) {
                None => missing = true,
                Some(Node {
                    content: Content::Symlink(target),
                    ..
                }) if !is_last || follow_last => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(Error::Layer(format!(
                            "{}: too many levels of symbolic links",
                            show(orig)
                        )));
                    }
                    resolved.pop();
                    if target.first() == Some(&b'/') {
                        resolved.clear();
                    }
                    let mut new: std::collections::VecDeque<Vec<u8>> = target
                        .split(|&b| b == b'/')
                        .filter(|x| !x.is_empty())
                        .map(<[u8]>::to_vec)
                        .collect();
                    new.extend(todo.drain(..));
                    todo = new;
                }
                Some(n) if !is_last && !n.is_dir() => {
                    return Err(Error::Layer(format!(
                        "{}: {} is a {}, not a directory",
                        show(orig),
                        show(&resolved.join(&b'/')),
                        n.type_name()
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(resolved)
    }

    /// Apply one layer: deletions (whiteouts, opaque markers) against the lower layers first,
    /// then additions in stream order.
    pub fn apply_layer(&mut self, ops: &[LayerOp]) -> Result<()> {
        for op in ops {
            match op {
                LayerOp::Whiteout(p) => {
                    let comps = components(p);
                    let Ok(canon) = self.canonical(&comps, false, p) else {
                        continue;
                    };
                    if let Some((name, parent)) = canon.split_last() {
                        if let Some(dir) = self.get_dir_mut(parent, false) {
                            dir.remove(name);
                        }
                    }
                }
                LayerOp::Opaque(p) => {
                    let comps = components(p);
                    let Ok(canon) = self.canonical(&comps, true, p) else {
                        continue;
                    };
                    if let Some(dir) = self.get_dir_mut(&canon, false) {
                        dir.clear();
                    }
                }
                _ => {}
            }
        }
        for op in ops {
            match op {
                LayerOp::Put(p, node) => self.put(p, node.clone())?,
                LayerOp::Hardlink(p, target) => {
                    let tcomps = components(target);
                    let tcanon = self.canonical(&tcomps, false, target)?;
                    let t = self.get(&tcanon).ok_or_else(|| {
                        Error::Layer(format!(
                            "{}: hardlink to {}, which does not exist",
                            show(p),
                            show(target)
                        ))
                    })?;
                    let node = match &t.content {
                        Content::Dir(_) => {
                            return Err(Error::Layer(format!(
                                "{}: hardlink to directory {}",
                                show(p),
                                show(target)
                            )))
                        }
                        Content::File { object, size, link } => Node {
                            meta: t.meta.clone(),
                            content: Content::File {
                                object: *object,
                                size: *size,
                                link: Some(link.clone().unwrap_or_else(|| tcanon.join(&b'/'))),
                            },
                        },
                        _ => t.clone(),
                    };
                    self.put(p, node)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn put(&mut self, p: &[u8], node: Node) -> Result<()> {
        let comps = components(p);
        if comps.is_empty() {
            // The root itself: only a directory's metadata can change.
            if node.is_dir() {
                self.root.meta = node.meta;
                return Ok(());
            }
            return Err(Error::Layer(format!(
                "/: cannot replace the root with a {}",
                node.type_name()
            )));
        }
        let canon = self.canonical(&comps, false, p)?;
        let Some((name, parent)) = canon.split_last() else {
            if node.is_dir() {
                self.root.meta = node.meta;
            }
            return Ok(());
        };
        let dir = self
            .get_dir_mut(parent, true)
            .ok_or_else(|| Error::Layer(format!("{}: parent is not a directory", show(p))))?;
        match dir.get_mut(name) {
            Some(existing) if existing.is_dir() && node.is_dir() => existing.meta = node.meta,
            _ => {
                dir.insert(name.clone(), node);
            }
        }
        Ok(())
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

    /// Rebuild a tree from (path, node) pairs in [`Tree::walk`] order.
    pub fn from_entries(entries: impl IntoIterator<Item = (Vec<u8>, Node)>) -> Result<Tree> {
        let mut t = Tree::new();
        for (p, n) in entries {
            let comps = components(&p);
            match comps.split_last() {
                None => {
                    if !n.is_dir() {
                        return Err(Error::Corrupt("tree root is not a directory".into()));
                    }
                    t.root.meta = n.meta;
                }
                Some((name, parent)) => {
                    let dir = t.get_dir_mut(parent, false).ok_or_else(|| {
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
mod tests {
    use super::*;

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
}
