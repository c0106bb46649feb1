//! One tar entry of a layer turned into a [`LayerOp`]: its path normalised and checked against
//! the kernel's limits (a hostile one refused), its PAX records read (owner, time, xattrs), its
//! file content queued for the object writer, and what it costs counted in the layer's
//! [`Budget`].
//!
//! An entry that could not be unpacked (a name over `NAME_MAX`, a symlink target over
//! `PATH_MAX`, an xattr the kernel refuses) is refused here, so that nothing of the image is
//! written; so is a whiteout that would delete its own directory (`.wh.`, `.wh..`, `.wh...`).

use std::io::Read;

use sha2::Digest as _;

use super::writer::{Job, Parser, WriterGone, CHUNK};
use crate::error::{Error, Result};
use crate::limits::{check_path, check_symlink_target, check_xattr, human, Limits};
use crate::objects::{ObjectId, INLINE_MAX};
use crate::tarfmt::{Entry, Kind, Reader};
use crate::tree::{normalize_entry_path, show, Content, LayerOp, Meta, Node};

/// Why an entry could not be turned into an operation.
pub(super) enum EntryError {
    /// The writer thread stopped; its own error is the one to report.
    Gone(WriterGone),
    /// The entry or the layer is refused.
    Err(Error),
}

impl From<Error> for EntryError {
    fn from(e: Error) -> Self {
        EntryError::Err(e)
    }
}

impl From<WriterGone> for EntryError {
    fn from(g: WriterGone) -> Self {
        EntryError::Gone(g)
    }
}

/// What a layer's entries have cost so far, against its [`Limits`]: the number of entries,
/// and the bytes of paths, link targets and xattrs its operations keep in memory.
pub(super) struct Budget {
    entries: u64,
    bytes: u64,
    limits: Limits,
}

impl Budget {
    pub(super) fn new(limits: Limits) -> Self {
        Budget {
            entries: 0,
            bytes: 0,
            limits,
        }
    }

    /// Count one more tar entry, the one at `raw` (its path, for the message).
    pub(super) fn entry(&mut self, what: &str, raw: &[u8]) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.entries {
            return Err(Error::Limit(format!(
                "{what}: more than {} entries (the limit), at entry {}",
                self.limits.entries,
                show(raw)
            )));
        }
        Ok(())
    }

    fn bytes(&mut self, n: usize, what: &str, raw: &[u8]) -> Result<()> {
        self.bytes += n as u64;
        if self.bytes > self.limits.metadata {
            return Err(Error::Limit(format!(
                "{what}: more than {} of paths, link targets and xattrs (the limit), at entry {}",
                human(self.limits.metadata),
                show(raw)
            )));
        }
        Ok(())
    }
}

/// Normalise an entry's path, naming the layer in a refusal.
fn normalize(raw: &[u8], what: &str, role: &str) -> Result<Vec<u8>> {
    normalize_entry_path(raw).map_err(|err| match err {
        Error::HostilePath(m) => Error::HostilePath(format!("{role}{m} ({what})")),
        o => o,
    })
}

/// Owner, mode, time and xattrs of an entry (its PAX records already applied by the reader).
fn entry_meta(e: &Entry, ewhat: &str) -> Result<Meta> {
    let mut meta = Meta {
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime: e.mtime,
        xattrs: Vec::with_capacity(e.xattrs.len()),
    };
    for (name, val) in &e.xattrs {
        check_xattr(name, val, ewhat)?;
        meta.xattrs.push((name.clone(), val.clone()));
    }
    meta.xattrs.sort();
    Ok(meta)
}

/// The operation of a whiteout entry `.wh.NAME` in directory `parent` (`raw` is the entry's
/// path, for messages): `None` for aufs bookkeeping (`.wh..wh.plnk` and the like).
fn whiteout(parent: &[u8], name: &[u8], raw: &[u8], what: &str) -> Result<Option<LayerOp>> {
    if name == b".wh..opq" {
        check_path(
            parent,
            &format!("{what}: entry {}", show(raw)),
            "opaque directory",
        )?;
        return Ok(Some(LayerOp::Opaque(parent.to_vec())));
    }
    if name.starts_with(b".wh.") {
        // aufs bookkeeping (.wh..wh.plnk and the like): not part of the image
        return Ok(None);
    }
    if name.is_empty() || name == b"." || name == b".." {
        // `.wh.`, `.wh..` and `.wh...` name no file: applied, they would delete the
        // directory they are in (or its parent).
        return Err(Error::HostilePath(format!(
            "{}: a whiteout of '{}' names no file in its directory ({what})",
            show(raw),
            String::from_utf8_lossy(name)
        )));
    }
    let mut target = parent.to_vec();
    if !target.is_empty() {
        target.push(b'/');
    }
    target.extend_from_slice(name);
    check_path(
        &target,
        &format!("{what}: entry {}", show(raw)),
        "whiteout of",
    )?;
    Ok(Some(LayerOp::Whiteout(target)))
}

/// The operation of entry `e`, and whether it is a regular file (whose object id the writer
/// supplies); `None` for entries that change nothing (global PAX headers, aufs bookkeeping).
pub(super) fn entry_op<R: Read>(
    e: &Entry,
    ar: &mut Reader<R>,
    p: &Parser<'_>,
    budget: &mut Budget,
) -> Result<Option<(LayerOp, bool)>, EntryError> {
    let what = p.what;
    let raw = &e.path[..];
    let bad = |m: String| Error::Layer(format!("{what}: entry {}: {m}", show(raw)));
    let ewhat = format!("{what}: entry {}", show(raw));
    let path = normalize(raw, what, "")?;
    let (parent, base) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[][..], &path[..]),
    };
    if let Some(name) = base.strip_prefix(b".wh.") {
        let op = whiteout(parent, name, raw, what)?;
        if let Some(LayerOp::Whiteout(t) | LayerOp::Opaque(t)) = &op {
            budget.bytes(t.len(), what, raw)?;
        }
        return Ok(op.map(|op| (op, false)));
    }
    check_path(&path, what, "path")?;
    let meta = entry_meta(e, &ewhat)?;
    let xattr_bytes: usize = meta.xattrs.iter().map(|(k, v)| k.len() + v.len()).sum();
    budget.bytes(path.len() + xattr_bytes, what, raw)?;
    let content = match e.kind {
        Kind::File => {
            if path.is_empty() {
                return Err(bad("a regular file at the root".into()).into());
            }
            send_content(e.size, ar, p, &meta, &path)?;
            let node = Node {
                meta,
                content: Content::File {
                    object: ObjectId([0; 32]),
                    size: e.size,
                    link: None,
                },
            };
            return Ok(Some((LayerOp::Put(path, node), true)));
        }
        Kind::Dir => Content::Dir(Default::default()),
        Kind::Symlink => {
            check_symlink_target(&e.link, &ewhat)?;
            budget.bytes(e.link.len(), what, raw)?;
            Content::Symlink(e.link.clone())
        }
        Kind::Hardlink => {
            let t = normalize(&e.link, what, &format!("{}: hardlink target ", show(&path)))?;
            if t.is_empty() || path.is_empty() {
                return Err(bad("hardlink to or at the root".into()).into());
            }
            check_path(&t, &ewhat, "hardlink target")?;
            budget.bytes(t.len(), what, raw)?;
            return Ok(Some((LayerOp::Hardlink(path, t), false)));
        }
        Kind::Fifo => Content::Fifo,
        Kind::Char => Content::CharDevice(e.dev.0, e.dev.1),
        Kind::Block => Content::BlockDevice(e.dev.0, e.dev.1),
        other => return Err(bad(format!("internal error: {other:?} header as an entry")).into()),
    };
    Ok(Some((LayerOp::Put(path, Node { meta, content }), false)))
}

/// Queue a regular file's content for the object writer: whole when small, in chunks when
/// large (memory stays bounded whatever its size).
fn send_content<R: Read>(
    size: u64,
    ar: &mut Reader<R>,
    p: &Parser<'_>,
    meta: &Meta,
    path: &[u8],
) -> Result<(), EntryError> {
    let fwhat = format!("{}: {}", p.what, show(path));
    let read = |ar: &mut Reader<R>, data: &mut [u8]| {
        ar.read_data_exact(data)
            .map_err(|x| super::tar_error(&fwhat, x))
    };
    if size <= INLINE_MAX {
        let mut data = vec![0u8; size as usize];
        read(ar, &mut data)?;
        let digest = p.hash_small.then(|| sha2::Sha256::digest(&data).into());
        p.send(Job::Small {
            data,
            digest,
            meta: meta.clone(),
            what: fwhat.clone(),
        })?;
    } else {
        p.send(Job::LargeStart { meta: meta.clone() })?;
        let mut left = size;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            let mut data = vec![0u8; n];
            read(ar, &mut data)?;
            p.send(Job::Chunk(data))?;
            left -= n as u64;
        }
        p.send(Job::LargeEnd {
            meta: meta.clone(),
            size,
            what: fwhat.clone(),
        })?;
    }
    Ok(())
}
