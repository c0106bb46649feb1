//! Applying a layer to a merged tree: deletions (whiteouts, opaque markers) against the lower
//! layers first, then additions in stream order, every path resolved inside the tree.
//!
//! Resolution walks the tree once along the path, keeping the node of each resolved component,
//! so a lookup costs one step per component (not one walk from the root per component, which
//! is quadratic in the depth), and it gives up past 40 symlinks, [`MAX_RESOLVE_STEPS`]
//! components or a result deeper than [`MAX_DEPTH`] or longer than [`MAX_PATH`] (unpack links
//! the members of a hardlink group by their path in the tree). Every node added or removed is counted in
//! a [`TreeSize`], which refuses a tree beyond its [`Limits`]: the count must stay exact
//! (removals subtract what they remove), or an image that replaces many files would be refused.

use std::collections::btree_map::Entry;

use super::{components, show, Content, LayerOp, Node, Tree};
use crate::error::{Error, Result};
use crate::limits::{human, Limits, MAX_DEPTH, MAX_PATH};

/// Most symlinks one lookup follows, like Linux's `MAXSYMLINKS`.
const MAX_SYMLINK_HOPS: usize = 40;

/// Most path components one lookup steps through, those of the symlink targets it follows
/// included. A real path has at most [`MAX_DEPTH`] components and its symlinks a few each; 40
/// hops through 4 KiB targets would be ~80 000 steps, for every entry of a layer.
const MAX_RESOLVE_STEPS: usize = 4096;

/// What a merged tree holds, counted as layers are applied and checked against its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeSize {
    /// Nodes, the root included.
    pub nodes: u64,
    /// Directories, the root included.
    pub dirs: u64,
    /// Bytes of names, symlink targets, hardlink paths and xattrs.
    pub bytes: u64,
    /// What `nodes` (against `entries`), `dirs` (against `directories`) and `bytes` (against
    /// `metadata`) may reach.
    pub limits: Limits,
}

/// Nodes, directories and bytes of a subtree.
#[derive(Default)]
struct Count {
    nodes: u64,
    dirs: u64,
    bytes: u64,
}

/// The bytes a node holds besides its children: its name, xattrs and link.
fn node_bytes(name: &[u8], n: &Node) -> u64 {
    let xattrs: usize = n.meta.xattrs.iter().map(|(k, v)| k.len() + v.len()).sum();
    let link = match &n.content {
        Content::Symlink(t) => t.len(),
        Content::File { link: Some(l), .. } => l.len(),
        _ => 0,
    };
    (name.len() + xattrs + link) as u64
}

/// Count a subtree into `c` (recursion bounded by the tree's depth).
fn subtree(name: &[u8], n: &Node, c: &mut Count) {
    c.nodes += 1;
    c.bytes += node_bytes(name, n);
    if let Content::Dir(children) = &n.content {
        c.dirs += 1;
        for (k, child) in children {
            subtree(k, child, c);
        }
    }
}

impl TreeSize {
    fn check(&self) -> Result<()> {
        if self.nodes > self.limits.entries {
            return Err(Error::Limit(format!(
                "the merged tree would have more than {} entries (the limit)",
                self.limits.entries
            )));
        }
        if self.dirs > self.limits.directories {
            return Err(Error::Limit(format!(
                "the merged tree would have more than {} directories (the limit)",
                self.limits.directories
            )));
        }
        if self.bytes > self.limits.metadata {
            return Err(Error::Limit(format!(
                "the merged tree would hold more than {} of names, link targets and xattrs \
                 (the limit)",
                human(self.limits.metadata)
            )));
        }
        Ok(())
    }

    fn added(&mut self, name: &[u8], n: &Node) -> Result<()> {
        let mut c = Count::default();
        subtree(name, n, &mut c);
        self.nodes += c.nodes;
        self.dirs += c.dirs;
        self.bytes += c.bytes;
        self.check()
    }

    fn removed(&mut self, name: &[u8], n: &Node) {
        let mut c = Count::default();
        subtree(name, n, &mut c);
        self.nodes = self.nodes.saturating_sub(c.nodes);
        self.dirs = self.dirs.saturating_sub(c.dirs);
        self.bytes = self.bytes.saturating_sub(c.bytes);
    }
}

impl Tree {
    /// Count this tree's nodes, directories and metadata bytes, to be checked against
    /// `limits`.
    pub fn size(&self, limits: Limits) -> TreeSize {
        let mut c = Count::default();
        subtree(b"", &self.root, &mut c);
        TreeSize {
            nodes: c.nodes,
            dirs: c.dirs,
            bytes: c.bytes,
            limits,
        }
    }

    /// Resolve `comps` to the components of real directories (and a last component), following
    /// symlinks inside the tree with `..` clamped at the root. Missing components are kept as
    /// they are (they will be created as directories).
    pub(super) fn canonical(
        &self,
        comps: &[Vec<u8>],
        follow_last: bool,
        orig: &[u8],
    ) -> Result<Vec<Vec<u8>>> {
        let mut resolved: Vec<Vec<u8>> = Vec::new();
        // nodes[i] is the node at resolved[..=i]; shorter than `resolved` past a missing one.
        let mut nodes: Vec<&Node> = Vec::new();
        let mut todo: Vec<Vec<u8>> = comps.iter().rev().cloned().collect();
        let (mut hops, mut steps) = (0, 0);
        // The length of `resolved` joined by `/`, plus one.
        let mut bytes = 0;
        while let Some(c) = todo.pop() {
            steps += 1;
            if steps > MAX_RESOLVE_STEPS {
                return Err(Error::Limit(format!(
                    "{}: resolving it takes more than {MAX_RESOLVE_STEPS} steps",
                    show(orig)
                )));
            }
            if c.is_empty() || c == b"." {
                continue;
            }
            if c == b".." {
                if let Some(c) = resolved.pop() {
                    bytes -= c.len() + 1;
                }
                nodes.truncate(resolved.len());
                continue;
            }
            let is_last = todo.is_empty();
            let found = match (nodes.len() == resolved.len(), nodes.last()) {
                (false, _) => None,
                (true, parent) => match &parent.copied().unwrap_or(&self.root).content {
                    Content::Dir(children) => children.get(&c),
                    _ => None,
                },
            };
            bytes += c.len() + 1;
            resolved.push(c);
            match found {
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
                    if let Some(c) = resolved.pop() {
                        bytes -= c.len() + 1;
                    }
                    if target.first() == Some(&b'/') {
                        resolved.clear();
                        nodes.clear();
                        bytes = 0;
                    }
                    let target = target.split(|&b| b == b'/').filter(|x| !x.is_empty());
                    todo.extend(target.rev().map(<[u8]>::to_vec));
                    continue;
                }
                Some(n) if !is_last && !n.is_dir() => {
                    return Err(Error::Layer(format!(
                        "{}: {} is a {}, not a directory",
                        show(orig),
                        show(&resolved.join(&b'/')),
                        n.type_name()
                    )));
                }
                Some(n) => nodes.push(n),
                None => {}
            }
        }
        if resolved.len() > MAX_DEPTH {
            return Err(Error::Limit(format!(
                "{}: it resolves to a path more than {MAX_DEPTH} components deep (the limit)",
                show(orig)
            )));
        }
        if bytes > MAX_PATH + 1 {
            return Err(Error::Limit(format!(
                "{}: it resolves to a path longer than {MAX_PATH} bytes (the limit)",
                show(orig)
            )));
        }
        Ok(resolved)
    }

    /// Apply one layer: deletions (whiteouts, opaque markers) against the lower layers first,
    /// then additions in stream order. Fails if the tree would exceed the store's [`Limits`].
    pub fn apply_layer(&mut self, ops: &[LayerOp]) -> Result<()> {
        let mut size = self.size(Limits::DEFAULT);
        self.apply_layer_sized(ops.to_vec(), &mut size)
    }

    /// [`Tree::apply_layer`] for a caller that keeps the tree's size from one layer to the
    /// next (starting from [`Tree::size`]), so that it is not counted again for every layer.
    /// The operations are consumed as they are applied: what they hold moves into the tree or
    /// is freed, so a large layer is not held twice.
    pub fn apply_layer_sized(&mut self, ops: Vec<LayerOp>, size: &mut TreeSize) -> Result<()> {
        for op in &ops {
            match op {
                LayerOp::Whiteout(p) => {
                    let comps = components(p);
                    let Ok(canon) = self.canonical(&comps, false, p) else {
                        continue;
                    };
                    if let Some((name, parent)) = canon.split_last() {
                        if let Some(dir) = self.get_dir_mut(parent) {
                            if let Some(old) = dir.remove(name) {
                                size.removed(name, &old);
                            }
                        }
                    }
                }
                LayerOp::Opaque(p) => {
                    let comps = components(p);
                    let Ok(canon) = self.canonical(&comps, true, p) else {
                        continue;
                    };
                    if let Some(dir) = self.get_dir_mut(&canon) {
                        for (name, old) in std::mem::take(dir) {
                            size.removed(&name, &old);
                        }
                    }
                }
                _ => {}
            }
        }
        for op in ops {
            match op {
                LayerOp::Put(p, node) => self.put(&p, node, size)?,
                LayerOp::Hardlink(p, target) => {
                    let node = self.hardlink_node(&p, &target)?;
                    self.put(&p, node, size)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The node a hardlink at `p` to `target` puts: the target's, in the target's link group.
    fn hardlink_node(&self, p: &[u8], target: &[u8]) -> Result<Node> {
        let tcomps = components(target);
        let tcanon = self.canonical(&tcomps, false, target)?;
        let t = self.get(&tcanon).ok_or_else(|| {
            Error::Layer(format!(
                "{}: hardlink to {}, which does not exist",
                show(p),
                show(target)
            ))
        })?;
        Ok(match &t.content {
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
        })
    }

    fn put(&mut self, p: &[u8], node: Node, size: &mut TreeSize) -> Result<()> {
        let comps = components(p);
        let canon = if comps.is_empty() {
            Vec::new()
        } else {
            self.canonical(&comps, false, p)?
        };
        let Some((name, parent)) = canon.split_last() else {
            // The root itself: only a directory's metadata can change.
            if !node.is_dir() {
                return Err(Error::Layer(format!(
                    "/: cannot replace the root with a {}",
                    node.type_name()
                )));
            }
            size.bytes = size.bytes.saturating_sub(node_bytes(b"", &self.root));
            size.bytes += node_bytes(b"", &node);
            self.root.meta = node.meta;
            return size.check();
        };
        let not_dir = || Error::Layer(format!("{}: parent is not a directory", show(p)));
        let mut n = &mut self.root;
        for c in parent {
            let Content::Dir(children) = &mut n.content else {
                return Err(not_dir());
            };
            n = match children.entry(c.clone()) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    let d = Node::implicit_dir();
                    size.added(c, &d)?;
                    v.insert(d)
                }
            };
        }
        let Content::Dir(dir) = &mut n.content else {
            return Err(not_dir());
        };
        match dir.get_mut(name) {
            Some(existing) if existing.is_dir() && node.is_dir() => {
                size.bytes = size.bytes.saturating_sub(node_bytes(name, existing));
                size.bytes += node_bytes(name, &node);
                existing.meta = node.meta;
                size.check()?;
            }
            _ => {
                if let Some(old) = dir.remove(name) {
                    size.removed(name, &old);
                }
                size.added(name, &node)?;
                dir.insert(name.clone(), node);
            }
        }
        Ok(())
    }
}
