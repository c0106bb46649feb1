//! Reading one layer: decompress, verify, parse the tar stream, store file contents as
//! objects and describe the layer as a list of [`LayerOp`]s. Everything streams: nothing larger
//! than one small file (or a 128 KiB chunk of a large one) is held in memory.

use std::io::{self, BufReader, Read};

use flate2::bufread::MultiGzDecoder;
use ociboot_oci::{Compression, HashingReader, Sha256Digest};

use crate::error::{Error, Result};
use crate::objects::Staging;
use crate::tree::{normalize_entry_path, show, Content, LayerOp, Meta, Node};

/// Counts bytes for a progress callback.
pub struct ProgressReader<R, F: FnMut(u64)> {
    inner: R,
    total: u64,
    f: F,
}

impl<R: Read, F: FnMut(u64)> ProgressReader<R, F> {
    pub fn new(inner: R, f: F) -> Self {
        ProgressReader { inner, total: 0, f }
    }
}

impl<R: Read, F: FnMut(u64)> Read for ProgressReader<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        (self.f)(self.total);
        Ok(n)
    }
}

enum Decoder<R: Read> {
    Plain(R),
    Gzip(Box<MultiGzDecoder<BufReader<R>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Decoder<R> {
    fn new(r: R, c: Compression) -> io::Result<Self> {
        Ok(match c {
            Compression::None => Decoder::Plain(r),
            Compression::Gzip => Decoder::Gzip(Box::new(MultiGzDecoder::new(
                BufReader::with_capacity(128 << 10, r),
            ))),
            // Multi-frame streams are decoded to the end: the decoder moves on to the next
            // frame instead of stopping after the first.
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(
                BufReader::with_capacity(128 << 10, r),
            )?),
        })
    }

    /// Read whatever the decompressor left of the compressed stream, so that a verifying
    /// reader below sees its end.
    fn drain_inner(self) -> io::Result<()> {
        match self {
            Decoder::Plain(mut r) => io::copy(&mut r, &mut io::sink()).map(|_| ()),
            Decoder::Gzip(d) => io::copy(&mut d.into_inner(), &mut io::sink()).map(|_| ()),
            Decoder::Zstd(d) => io::copy(&mut d.finish(), &mut io::sink()).map(|_| ()),
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

/// What importing a layer produced.
#[derive(Debug)]
pub struct ImportedLayer {
    pub ops: Vec<LayerOp>,
    pub diff_id: Sha256Digest,
    pub uncompressed_size: u64,
}

fn parse_num<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    let s = std::str::from_utf8(v).ok()?;
    let s = s.split('.').next()?;
    s.trim().parse().ok()
}

/// Import a layer from `blob` (already wrapped in a verifying reader by the caller). `what`
/// names the layer for errors. The caller checks `diff_id` against the config.
pub fn import_layer<R: Read>(
    blob: R,
    compression: Compression,
    staging: &mut Staging,
    what: &str,
) -> Result<ImportedLayer> {
    let dec = Decoder::new(blob, compression).map_err(|e| Error::stream(what, e))?;
    let mut hashing = HashingReader::new(dec);
    let mut ops = Vec::new();
    {
        let mut ar = tar::Archive::new(&mut hashing);
        let entries = ar.entries().map_err(|e| Error::stream(what, e))?;
        for entry in entries {
            let mut e = entry.map_err(|e| tar_err(what, e))?;
            if let Some(op) = entry_op(&mut e, staging, what)? {
                ops.push(op);
            }
        }
    }
    // The tar end marker may be followed by padding: it is part of the diff_id.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| tar_err(what, e))?;
    let (diff_id, uncompressed_size, dec) = hashing.finish();
    dec.drain_inner().map_err(|e| tar_err(what, e))?;
    Ok(ImportedLayer {
        ops,
        diff_id,
        uncompressed_size,
    })
}

fn tar_err(what: &str, e: io::Error) -> Error {
    match Error::stream(what, e) {
        Error::Io { context, source } => {
            Error::Layer(format!("{context}: malformed or truncated layer: {source}"))
        }
        other => other,
    }
}

fn entry_op<R: Read>(
    e: &mut tar::Entry<'_, R>,
    staging: &mut Staging,
    what: &str,
) -> Result<Option<LayerOp>> {
    let raw = e.path_bytes().into_owned();
    let path = normalize_entry_path(&raw).map_err(|err| match err {
        Error::HostilePath(m) => Error::HostilePath(format!("{m} ({what})")),
        o => o,
    })?;
    let hdr = e.header();
    let et = hdr.entry_type();
    let bad = |m: String| Error::Layer(format!("{what}: entry {}: {m}", show(&raw)));
    let mut meta = Meta {
        mode: hdr.mode().map_err(|x| bad(x.to_string()))? & 0o7777,
        uid: hdr.uid().map_err(|x| bad(x.to_string()))? as u32,
        gid: hdr.gid().map_err(|x| bad(x.to_string()))? as u32,
        mtime: hdr.mtime().map_err(|x| bad(x.to_string()))? as i64,
        xattrs: Vec::new(),
    };
    let (major, minor) = (
        hdr.device_major().ok().flatten().unwrap_or(0),
        hdr.device_minor().ok().flatten().unwrap_or(0),
    );
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
                    meta.xattrs
                        .push((k[b"SCHILY.xattr.".len()..].to_vec(), val.to_vec()));
                }
                _ => {}
            }
        }
    }
    meta.xattrs.sort();
    meta.xattrs.dedup_by(|a, b| a.0 == b.0);

    let (parent, base) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[][..], &path[..]),
    };
    if let Some(name) = base.strip_prefix(b".wh.") {
        if name == b".wh..opq" {
            return Ok(Some(LayerOp::Opaque(parent.to_vec())));
        }
        if name.starts_with(b".wh.") {
            // aufs bookkeeping (.wh..wh.plnk and the like): not part of the image
            return Ok(None);
        }
        let mut p = parent.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(name);
        return Ok(Some(LayerOp::Whiteout(p)));
    }
    let content = match et {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            if path.is_empty() {
                return Err(bad("a regular file at the root".into()));
            }
            let size = e.size();
            let id = staging.add_file(e, size, &meta, &format!("{what}: {}", show(&path)))?;
            Content::File {
                object: id,
                size,
                link: None,
            }
        }
        tar::EntryType::Directory => Content::Dir(Default::default()),
        tar::EntryType::Symlink => {
            let t = e
                .link_name_bytes()
                .ok_or_else(|| bad("symlink without a target".into()))?
                .into_owned();
            if t.is_empty() || t.contains(&0) {
                return Err(bad("empty or invalid symlink target".into()));
            }
            Content::Symlink(t)
        }
        tar::EntryType::Link => {
            let t = e
                .link_name_bytes()
                .ok_or_else(|| bad("hardlink without a target".into()))?
                .into_owned();
            let t = normalize_entry_path(&t).map_err(|err| match err {
                Error::HostilePath(m) => {
                    Error::HostilePath(format!("{}: hardlink target {m} ({what})", show(&path)))
                }
                o => o,
            })?;
            if t.is_empty() || path.is_empty() {
                return Err(bad("hardlink to or at the root".into()));
            }
            return Ok(Some(LayerOp::Hardlink(path, t)));
        }
        tar::EntryType::Fifo => Content::Fifo,
        tar::EntryType::Char => Content::CharDevice(major, minor),
        tar::EntryType::Block => Content::BlockDevice(major, minor),
        tar::EntryType::XGlobalHeader => return Ok(None),
        other => {
            return Err(bad(format!(
                "unsupported tar entry type {:?}",
                other.as_byte() as char
            )))
        }
    };
    Ok(Some(LayerOp::Put(path, Node { meta, content })))
}
