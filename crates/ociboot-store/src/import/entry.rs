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

fn parse_num<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    let s = std::str::from_utf8(v).ok()?;
    let s = s.split('.').next()?;
    s.trim().parse().ok()
}

/// Normalise an entry's path, naming the layer in a refusal.
fn normalize(raw: &[u8], what: &str, role: &str) -> Result<Vec<u8>> {
    normalize_entry_path(raw).map_err(|err| match err {
        Error::HostilePath(m) => Error::HostilePath(format!("{role}{m} ({what})")),
        o => o,
    })
}

/// Owner, mode, time and xattrs of an entry, its PAX records applied.
fn entry_meta<R: Read>(
    e: &mut tar::Entry<'_, R>,
    bad: &dyn Fn(String) -> Error,
    ewhat: &str,
) -> Result<Meta> {
    let hdr = e.header();
    let mut meta = Meta {
        mode: hdr.mode().map_err(|x| bad(x.to_string()))? & 0o7777,
        uid: hdr.uid().map_err(|x| bad(x.to_string()))? as u32,
        gid: hdr.gid().map_err(|x| bad(x.to_string()))? as u32,
        mtime: hdr.mtime().map_err(|x| bad(x.to_string()))? as i64,
        xattrs: Vec::new(),
    };
    if let Some(exts) = e.pax_extensions().map_err(|x| bad(x.to_string()))? {
        for ext in exts {
            let ext = ext.map_err(|x| bad(x.to_string()))?;
            let key = ext.key_bytes();
            let val = ext.value_bytes();
            match key {
                b"uid" => meta.uid = parse_num(val).ok_or_else(|| bad("bad PAX uid".into()))?,
                b"gid" => meta.gid = parse_num(val).ok_or_else(|| bad("bad PAX gid".into()))?,
                b"mtime" => {
                    meta.mtime = parse_num(val).ok_or_else(|| bad("bad PAX mtime".into()))?
                }
                k if k.starts_with(b"SCHILY.xattr.") => {
                    let name = &k[b"SCHILY.xattr.".len()..];
                    check_xattr(name, val, ewhat)?;
                    meta.xattrs.push((name.to_vec(), val.to_vec()));
                }
                _ => {}
            }
        }
    }
    meta.xattrs.sort();
    meta.xattrs.dedup_by(|a, b| a.0 == b.0);
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
    e: &mut tar::Entry<'_, R>,
    p: &Parser<'_>,
    budget: &mut Budget,
) -> Result<Option<(LayerOp, bool)>, EntryError> {
    let what = p.what;
    let et = e.header().entry_type();
    if et == tar::EntryType::XGlobalHeader {
        return Ok(None);
    }
    let raw = e.path_bytes().into_owned();
    let bad = |m: String| Error::Layer(format!("{what}: entry {}: {m}", show(&raw)));
    let ewhat = format!("{what}: entry {}", show(&raw));
    let path = normalize(&raw, what, "")?;
    let (parent, base) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[][..], &path[..]),
    };
    if let Some(name) = base.strip_prefix(b".wh.") {
        let op = whiteout(parent, name, &raw, what)?;
        if let Some(LayerOp::Whiteout(t) | LayerOp::Opaque(t)) = &op {
            budget.bytes(t.len(), what, &raw)?;
        }
        return Ok(op.map(|op| (op, false)));
    }
    check_path(&path, what, "path")?;
    let meta = entry_meta(e, &bad, &ewhat)?;
    let xattr_bytes: usize = meta.xattrs.iter().map(|(k, v)| k.len() + v.len()).sum();
    budget.bytes(path.len() + xattr_bytes, what, &raw)?;
    let (major, minor) = (
        e.header().device_major().ok().flatten().unwrap_or(0),
        e.header().device_minor().ok().flatten().unwrap_or(0),
    );
    let content = match et {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            if path.is_empty() {
                return Err(bad("a regular file at the root".into()).into());
            }
            let size = e.size();
            send_content(e, p, &meta, &path)?;
            let node = Node {
                meta,
                content: Content::File {
                    object: ObjectId([0; 32]),
                    size,
                    link: None,
                },
            };
            return Ok(Some((LayerOp::Put(path, node), true)));
        }
        tar::EntryType::Directory => Content::Dir(Default::default()),
        tar::EntryType::Symlink => {
            let t = e
                .link_name_bytes()
                .ok_or_else(|| bad("symlink without a target".into()))?
                .into_owned();
            check_symlink_target(&t, &ewhat)?;
            budget.bytes(t.len(), what, &raw)?;
            Content::Symlink(t)
        }
        tar::EntryType::Link => {
            let t = e
                .link_name_bytes()
                .ok_or_else(|| bad("hardlink without a target".into()))?
                .into_owned();
            let t = normalize(&t, what, &format!("{}: hardlink target ", show(&path)))?;
            if t.is_empty() || path.is_empty() {
                return Err(bad("hardlink to or at the root".into()).into());
            }
            check_path(&t, &ewhat, "hardlink target")?;
            budget.bytes(t.len(), what, &raw)?;
            return Ok(Some((LayerOp::Hardlink(path, t), false)));
        }
        tar::EntryType::Fifo => Content::Fifo,
        tar::EntryType::Char => Content::CharDevice(major, minor),
        tar::EntryType::Block => Content::BlockDevice(major, minor),
        other => {
            return Err(bad(format!(
                "unsupported tar entry type {:?}",
                other.as_byte() as char
            ))
            .into())
        }
    };
    Ok(Some((LayerOp::Put(path, Node { meta, content }), false)))
}

/// Queue a regular file's content for the object writer: whole when small, in chunks when
/// large (memory stays bounded whatever its size).
fn send_content<R: Read>(
    e: &mut tar::Entry<'_, R>,
    p: &Parser<'_>,
    meta: &Meta,
    path: &[u8],
) -> Result<(), EntryError> {
    let size = e.size();
    let fwhat = format!("{}: {}", p.what, show(path));
    if size <= INLINE_MAX {
        let mut data = Vec::with_capacity(size as usize);
        e.take(size)
            .read_to_end(&mut data)
            .map_err(|x| super::tar_err(&fwhat, x))?;
        if data.len() as u64 != size {
            return Err(Error::Layer(format!("{fwhat}: truncated file content")).into());
        }
        let digest = p.hash_small.then(|| sha2::Sha256::digest(&data).into());
        p.send(Job::Small {
            data,
            digest,
            meta: meta.clone(),
            what: fwhat,
        })?;
    } else {
        p.send(Job::LargeStart { meta: meta.clone() })?;
        let mut left = size;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            let mut data = vec![0u8; n];
            e.read_exact(&mut data)
                .map_err(|x| super::tar_err(&fwhat, x))?;
            p.send(Job::Chunk(data))?;
            left -= n as u64;
        }
        p.send(Job::LargeEnd {
            meta: meta.clone(),
            size,
            what: fwhat,
        })?;
    }
    Ok(())
}
