//! Writing a merged tree out as a root filesystem: `ociboot image unpack`, and the checkouts of
//! deployments.
//!
//! Every node is created relative to the file descriptor of its parent directory, which this
//! code itself created: no path is ever resolved through a symlink, so nothing can be written
//! outside the destination. In [`Mode::Copy`] (unpack) file contents are copied from the store
//! (`copy_file_range`, which reflinks where the filesystem can): the destination is the user's
//! to change. In [`Mode::Hardlink`] (deployments) each file is a hardlink to its store object,
//! which already carries owner, mode and xattrs; such a tree must never be written to in place.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode as Mode_, OFlags, Timespec, Timestamps};

use crate::error::{join_worker, Error, IoContext, Result};
use crate::objects::{apply_meta_fd, ObjectId};
use crate::store::Store;
use crate::tree::{show, Content, Meta, Node, Tree};

/// How file contents reach the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Copies (reflinks where the filesystem can): the user's to change.
    Copy,
    /// Hardlinks to the store's objects, which already carry owner, mode and xattrs: a
    /// deployment shares every file with the store and with other deployments. Needs the
    /// destination on the store's filesystem.
    Hardlink,
}

/// Counters of an unpack.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    /// Entries created below the destination (the destination itself not counted).
    pub entries: u64,
    /// File content bytes copied from the store (none in [`Mode::Hardlink`]).
    pub bytes: u64,
    /// Files created as hardlinks: to another file of the tree, or to a store object in
    /// [`Mode::Hardlink`].
    pub hardlinks: u64,
}

struct Ctx<'a> {
    store: &'a Store,
    mode: Mode,
    objects_fd: OwnedFd,
    dest_fd: OwnedFd,
    /// hardlink group -> (path created first, its object, its metadata)
    groups: HashMap<Vec<u8>, (Vec<u8>, ObjectId, Meta)>,
    stats: UnpackStats,
    /// Who new entries belong to, and the umask they are created under: when these already
    /// give an entry its recorded owner and mode, the chown and chmod are skipped.
    ids: (u32, u32),
    umask: u32,
    /// The directory being filled is setgid (new entries take its group, and subdirectories
    /// its setgid bit).
    parent_sgid: bool,
}

/// What creating a directory left to do.
#[derive(Clone, Copy)]
struct DirFix {
    chown: bool,
    chmod: bool,
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Write `tree` into `dest`, which must not exist or be an empty directory.
pub fn unpack(store: &Store, tree: &Tree, dest: &Path) -> Result<UnpackStats> {
    unpack_with(store, tree, dest, Mode::Copy)
}

/// [`unpack`], choosing how file contents are materialised.
pub fn unpack_with(store: &Store, tree: &Tree, dest: &Path, mode: Mode) -> Result<UnpackStats> {
    match std::fs::read_dir(dest) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(Error::Usage(format!(
                    "{} exists and is not empty",
                    dest.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(dest).at("creating", dest)?;
        }
        Err(e) => return Err(Error::path(dest, e)),
    }
    let dest_fd = rustix::fs::open(
        dest,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode_::empty(),
    )
    .at("opening", dest)?;
    let objects = store.objects_dir();
    let objects_fd = rustix::fs::open(
        &objects,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode_::empty(),
    )
    .at("opening", &objects)?;
    let mut ctx = Ctx {
        store,
        mode,
        objects_fd,
        dest_fd,
        groups: HashMap::new(),
        stats: UnpackStats::default(),
        ids: (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        ),
        umask: ociboot_fs::current_umask(),
        parent_sgid: tree.root.meta.mode & 0o2000 != 0,
    };
    let Content::Dir(children) = &tree.root.content else {
        return Err(Error::Corrupt("tree root is not a directory".into()));
    };
    let root = ctx.dest_fd.try_clone().ctx(|| "dup".to_string())?;
    if mode == Mode::Hardlink {
        // Every file is one link to its object: no state shared between subtrees, so they
        // are written on several threads.
        ctx.write_parallel(&root, children)?;
    } else {
        let mut path = Vec::new();
        for (name, node) in children {
            ctx.write_node(&root, &mut path, name, node)?;
        }
    }
    apply_meta_fd(&root, &tree.root.meta)?;
    rustix::fs::futimens(&root, &times(tree.root.meta.mtime)).at("setting times of", dest)?;
    Ok(ctx.stats)
}

fn set_xattrs_at(
    dir: &OwnedFd,
    name: &[u8],
    xattrs: &[(Vec<u8>, Vec<u8>)],
    what: &str,
) -> Result<()> {
    if xattrs.is_empty() {
        return Ok(());
    }
    use std::os::fd::AsRawFd;
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    let p = CString::new(p).map_err(|_| Error::Layer(format!("{what}: NUL in name")))?;
    for (k, v) in xattrs {
        let k = CString::new(k.clone())
            .map_err(|_| Error::Layer(format!("{what}: NUL in xattr name")))?;
        rustix::fs::lsetxattr(
            p.as_c_str(),
            k.as_c_str(),
            v,
            rustix::fs::XattrFlags::empty(),
        )
        .ctx(|| format!("setting xattr {} on {what}", k.to_string_lossy()))?;
    }
    Ok(())
}

/// Directories this deep are written whole by one thread; shallower ones are the skeleton.
const SPLIT_DEPTH: usize = 3;

/// A directory whose children one worker writes, and whose metadata is applied after.
struct Unit<'t> {
    fd: OwnedFd,
    fix: DirFix,
    path: Vec<u8>,
    node: &'t Node,
    weight: u64,
}

fn weight(node: &Node) -> u64 {
    match &node.content {
        Content::Dir(c) => 1 + c.values().map(weight).sum::<u64>(),
        _ => 1,
    }
}

impl<'a> Ctx<'a> {
    /// Hardlink mode: create the top of the tree (to SPLIT_DEPTH) here, write the subtrees
    /// below it on worker threads, then apply the skeleton's directory metadata bottom-up.
    fn write_parallel(
        &mut self,
        root: &OwnedFd,
        children: &'a std::collections::BTreeMap<Vec<u8>, Node>,
    ) -> Result<()> {
        let mut units: Vec<Unit<'a>> = Vec::new();
        let mut skeleton: Vec<Unit<'a>> = Vec::new();
        self.skeleton(
            root,
            &mut Vec::new(),
            children,
            1,
            &mut units,
            &mut skeleton,
        )?;
        units.sort_by_key(|u| std::cmp::Reverse(u.weight));
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4)
            .min(units.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<UnpackStats>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let units = &units;
                    let next = &next;
                    let store = self.store;
                    let (ids, umask) = (self.ids, self.umask);
                    let objects_fd = self.objects_fd.try_clone();
                    let dest_fd = self.dest_fd.try_clone();
                    scope.spawn(move || -> Result<UnpackStats> {
                        let mut w = Ctx {
                            store,
                            mode: Mode::Hardlink,
                            objects_fd: objects_fd.ctx(|| "dup".to_string())?,
                            dest_fd: dest_fd.ctx(|| "dup".to_string())?,
                            groups: HashMap::new(),
                            stats: UnpackStats::default(),
                            ids,
                            umask,
                            parent_sgid: false,
                        };
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(u) = units.get(i) else { break };
                            let Content::Dir(c) = &u.node.content else {
                                continue;
                            };
                            w.parent_sgid = u.node.meta.mode & 0o2000 != 0;
                            let mut path = u.path.clone();
                            for (n, node) in c {
                                w.write_node(&u.fd, &mut path, n, node)?;
                            }
                        }
                        Ok(w.stats)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    join_worker(h.join(), || "unpack worker (hardlinked subtrees)".into())
                        .and_then(|r| r)
                })
                .collect()
        });
        for r in results {
            let st = r?;
            self.stats.entries += st.entries;
            self.stats.hardlinks += st.hardlinks;
            self.stats.bytes += st.bytes;
        }
        // Units first (the deepest), then the skeleton in post-order: parents after children.
        for u in units.iter().chain(skeleton.iter()) {
            finish_dir(&u.fd, &u.node.meta, u.fix, &show(&u.path))?;
        }
        Ok(())
    }

    fn skeleton(
        &mut self,
        dir: &OwnedFd,
        path: &mut Vec<u8>,
        children: &'a std::collections::BTreeMap<Vec<u8>, Node>,
        depth: usize,
        units: &mut Vec<Unit<'a>>,
        skeleton: &mut Vec<Unit<'a>>,
    ) -> Result<()> {
        for (name, node) in children {
            let Content::Dir(sub) = &node.content else {
                self.write_node(dir, path, name, node)?;
                continue;
            };
            let len = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name);
            self.stats.entries += 1;
            let (fd, fix) = self.make_dir(dir, name, &node.meta, &show(path))?;
            if depth + 1 >= SPLIT_DEPTH {
                units.push(Unit {
                    fd,
                    fix,
                    path: path.clone(),
                    node,
                    weight: weight(node),
                });
            } else {
                let saved = self.parent_sgid;
                self.parent_sgid = node.meta.mode & 0o2000 != 0;
                let r = self.skeleton(&fd, path, sub, depth + 1, units, skeleton);
                self.parent_sgid = saved;
                r?;
                skeleton.push(Unit {
                    fd,
                    fix,
                    path: path.clone(),
                    node,
                    weight: 0,
                });
            }
            path.truncate(len);
        }
        Ok(())
    }

    /// Does a new entry here need a chown to get `m`'s owner?
    fn needs_chown(&self, m: &Meta) -> bool {
        self.parent_sgid || (m.uid, m.gid) != self.ids
    }

    /// Create a directory for `m`: with its final mode when that lets its owner fill it and
    /// the umask keeps it, else 0700 and a chmod once its children are in.
    fn make_dir(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        m: &Meta,
        what: &str,
    ) -> Result<(OwnedFd, DirFix)> {
        let want = m.mode & 0o7777;
        let direct = want & 0o700 == 0o700 && want & 0o6000 == 0 && !self.parent_sgid;
        let (create, chmod) = if direct {
            (want, want & !self.umask & 0o1777 != want)
        } else {
            (0o700, true)
        };
        rustix::fs::mkdirat(dir, name, Mode_::from_raw_mode(create))
            .ctx(|| format!("creating directory {what}"))?;
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode_::empty(),
        )
        .ctx(|| format!("opening {what}"))?;
        let fix = DirFix {
            chown: self.needs_chown(m),
            chmod,
        };
        Ok((fd, fix))
    }

    fn write_node(
        &mut self,
        dir: &OwnedFd,
        path: &mut Vec<u8>,
        name: &[u8],
        node: &Node,
    ) -> Result<()> {
        let len = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        let res = self.write_node_inner(dir, path, name, node);
        path.truncate(len);
        res
    }

    /// Write one node; the recursion over directories (as deep as the tree, at most
    /// [`crate::limits::MAX_DEPTH`]) goes through here and [`Ctx::write_dir`] only, whose frames
    /// are small: everything else is in [`Ctx::write_leaf`].
    fn write_node_inner(
        &mut self,
        dir: &OwnedFd,
        path: &mut Vec<u8>,
        name: &[u8],
        node: &Node,
    ) -> Result<()> {
        self.stats.entries += 1;
        match &node.content {
            Content::Dir(children) => self.write_dir(dir, path, name, &node.meta, children),
            _ => self.write_leaf(dir, path, name, node),
        }
    }

    fn write_dir(
        &mut self,
        dir: &OwnedFd,
        path: &mut Vec<u8>,
        name: &[u8],
        m: &Meta,
        children: &std::collections::BTreeMap<Vec<u8>, Node>,
    ) -> Result<()> {
        let what = show(path);
        let (fd, fix) = self.make_dir(dir, name, m, &what)?;
        let saved = self.parent_sgid;
        self.parent_sgid = m.mode & 0o2000 != 0;
        let mut r = Ok(());
        for (n, c) in children {
            r = self.write_node(&fd, path, n, c);
            if r.is_err() {
                break;
            }
        }
        self.parent_sgid = saved;
        r?;
        finish_dir(&fd, m, fix, &what)
    }

    /// Write a node that is not a directory.
    #[inline(never)]
    fn write_leaf(&mut self, dir: &OwnedFd, path: &[u8], name: &[u8], node: &Node) -> Result<()> {
        let what = show(path);
        let m = &node.meta;
        match &node.content {
            Content::Dir(_) => {
                return Err(Error::Corrupt(format!(
                    "{what}: a directory taken for a file"
                )))
            }
            Content::File { object, size, link } => {
                let group = link.clone().unwrap_or_else(|| path.to_vec());
                if let Some((first, obj, meta)) = self.groups.get(&group) {
                    if obj == object && meta == m {
                        rustix::fs::linkat(
                            &self.dest_fd,
                            first.as_slice(),
                            dir,
                            name,
                            AtFlags::empty(),
                        )
                        .ctx(|| format!("hardlinking {what} to {}", show(first)))?;
                        self.stats.hardlinks += 1;
                        return Ok(());
                    }
                }
                if self.mode == Mode::Hardlink {
                    rustix::fs::linkat(
                        &self.objects_fd,
                        object.rel_path().as_str(),
                        dir,
                        name,
                        AtFlags::empty(),
                    )
                    .ctx(|| format!("linking {what} to object {}", object.hex()))?;
                    self.stats.hardlinks += 1;
                    return Ok(());
                }
                let src_path = self.store.object_path(object);
                let mut src = File::open(&src_path)
                    .ctx(|| format!("opening object {} for {what}", object.hex()))?;
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode_::from_raw_mode(0o600),
                )
                .ctx(|| format!("creating {what}"))?;
                let mut out = File::from(fd);
                let n = std::io::copy(&mut src, &mut out).ctx(|| format!("writing {what}"))?;
                if n != *size {
                    return Err(Error::Corrupt(format!(
                        "object {} for {what} has {n} bytes, expected {size}",
                        object.hex()
                    )));
                }
                apply_meta_fd(&out, m).map_err(|e| e.annotate(&what))?;
                rustix::fs::futimens(out.as_fd(), &times(m.mtime))
                    .ctx(|| format!("setting times of {what}"))?;
                self.stats.bytes += n;
                self.groups
                    .entry(group)
                    .or_insert_with(|| (path.to_vec(), *object, m.clone()));
            }
            Content::Symlink(target) => {
                rustix::fs::symlinkat(target.as_slice(), dir, name)
                    .ctx(|| format!("creating symlink {what}"))?;
                self.owner_times_nofollow(dir, name, m, &what)?;
                set_xattrs_at(dir, name, &m.xattrs, &what)?;
            }
            Content::Fifo | Content::CharDevice(..) | Content::BlockDevice(..) => {
                let (ft, dev) = match node.content {
                    Content::Fifo => (FileType::Fifo, 0),
                    Content::CharDevice(a, b) => {
                        (FileType::CharacterDevice, rustix::fs::makedev(a, b))
                    }
                    Content::BlockDevice(a, b) => {
                        (FileType::BlockDevice, rustix::fs::makedev(a, b))
                    }
                    _ => unreachable!("matched above"),
                };
                rustix::fs::mknodat(dir, name, ft, Mode_::from_raw_mode(0o600), dev)
                    .ctx(|| format!("creating {} {what}", node.type_name()))?;
                rustix::fs::chmodat(dir, name, Mode_::from_raw_mode(m.mode), AtFlags::empty())
                    .ctx(|| format!("chmod {what}"))?;
                set_xattrs_at(dir, name, &m.xattrs, &what)?;
                self.owner_times_nofollow(dir, name, m, &what)?;
            }
        }
        Ok(())
    }

    fn owner_times_nofollow(&self, dir: &OwnedFd, name: &[u8], m: &Meta, what: &str) -> Result<()> {
        if self.needs_chown(m) {
            rustix::fs::chownat(
                dir,
                name,
                Some(rustix::fs::Uid::from_raw(m.uid)),
                Some(rustix::fs::Gid::from_raw(m.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .ctx(|| format!("chown {what}"))?;
        }
        Ok(
            rustix::fs::utimensat(dir, name, &times(m.mtime), AtFlags::SYMLINK_NOFOLLOW)
                .ctx(|| format!("setting times of {what}"))?,
        )
    }
}

/// A directory's owner, mode, xattrs and times, once its children are written (in that order:
/// a chown can clear mode bits, and writing children changes the mtime).
fn finish_dir(fd: &OwnedFd, m: &Meta, fix: DirFix, what: &str) -> Result<()> {
    if fix.chown {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(m.uid)),
            Some(rustix::fs::Gid::from_raw(m.gid)),
        )
        .ctx(|| format!("chown {what} to {}:{}", m.uid, m.gid))?;
    }
    if fix.chmod {
        rustix::fs::fchmod(fd, Mode_::from_raw_mode(m.mode & 0o7777))
            .ctx(|| format!("chmod {what} {:o}", m.mode))?;
    }
    if !m.xattrs.is_empty() {
        crate::objects::set_xattrs_fd(fd, &m.xattrs).map_err(|e| e.annotate(what))?;
    }
    Ok(rustix::fs::futimens(fd, &times(m.mtime)).ctx(|| format!("setting times of {what}"))?)
}

#[cfg(test)]
mod tests;
