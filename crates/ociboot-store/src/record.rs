//! The binary record format of layer and tree files.
//!
//! ```text
//! magic (8 bytes) version (u32 LE) then, zstd-compressed:
//!   header (u32 length + bytes: JSON metadata)
//!   entry*               tag u8: 1 put, 2 whiteout, 3 opaque, 4 hardlink; then the path
//!   0xFF count (u64) sha256 of every uncompressed byte before the 0xFF
//! ```
//! An entry's (first) path is front-coded against the previous entry's: u32 count of shared
//! leading bytes, then the rest as a string. Sorted paths share long prefixes, so trees of a
//! whole OS stay small.
//! Strings are u32 length + bytes. A node is kind u8, mode, uid, gid (u32), mtime (i64),
//! xattr count (u32) and pairs, then the kind's payload (object id + size + optional link for
//! files, target for symlinks, major/minor for devices). The trailer's hash makes a torn or
//! altered file detectable; the parser checks every length against what is left.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::objects::ObjectId;
use crate::tree::{Content, LayerOp, Meta, Node, Tree};

/// The first 8 bytes of a layer record (`layers/<blob hex>`).
pub const LAYER_MAGIC: &[u8; 8] = b"OCIBLAYR";
/// The first 8 bytes of an image's merged tree record (`images/<manifest hex>/tree`).
pub const TREE_MAGIC: &[u8; 8] = b"OCIBTREE";
const VERSION: u32 = 1;
const MAX_FIELD: usize = 16 << 20;
/// Largest uncompressed record accepted (a tree of millions of files fits).
const MAX_RECORD: usize = 1 << 30;

/// Serialises entries into a buffer.
pub struct RecordWriter {
    magic: [u8; 8],
    buf: Vec<u8>,
    count: u64,
    prev: Vec<u8>,
}

impl RecordWriter {
    /// A record of kind `magic` whose header is `header` (JSON metadata, may be empty).
    pub fn new(magic: &[u8; 8], header: &[u8]) -> Self {
        let mut w = RecordWriter {
            magic: *magic,
            buf: Vec::with_capacity(4096),
            count: 0,
            prev: Vec::new(),
        };
        w.bytes(header);
        w
    }

    fn path(&mut self, p: &[u8]) {
        let shared = p.iter().zip(&self.prev).take_while(|(a, b)| a == b).count();
        self.u32(shared as u32);
        self.bytes(&p[shared..]);
        self.prev.clear();
        self.prev.extend_from_slice(p);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(b);
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn node(&mut self, n: &Node) {
        let kind = match n.content {
            Content::Dir(_) => 0u8,
            Content::File { .. } => 1,
            Content::Symlink(_) => 2,
            Content::Fifo => 3,
            Content::CharDevice(..) => 4,
            Content::BlockDevice(..) => 5,
        };
        self.buf.push(kind);
        self.u32(n.meta.mode);
        self.u32(n.meta.uid);
        self.u32(n.meta.gid);
        self.buf.extend_from_slice(&n.meta.mtime.to_le_bytes());
        self.u32(n.meta.xattrs.len() as u32);
        for (k, v) in &n.meta.xattrs {
            self.bytes(k);
            self.bytes(v);
        }
        match &n.content {
            Content::Dir(_) | Content::Fifo => {}
            Content::File { object, size, link } => {
                self.buf.extend_from_slice(&object.0);
                self.buf.extend_from_slice(&size.to_le_bytes());
                match link {
                    Some(l) => {
                        self.buf.push(1);
                        self.bytes(l);
                    }
                    None => self.buf.push(0),
                }
            }
            Content::Symlink(t) => self.bytes(t),
            Content::CharDevice(a, b) | Content::BlockDevice(a, b) => {
                self.u32(*a);
                self.u32(*b);
            }
        }
    }

    /// Append one entry; its path is front-coded against the previous entry's.
    pub fn op(&mut self, op: &LayerOp) {
        self.count += 1;
        match op {
            LayerOp::Put(p, n) => {
                self.buf.push(1);
                self.path(p);
                self.node(n);
            }
            LayerOp::Whiteout(p) => {
                self.buf.push(2);
                self.path(p);
            }
            LayerOp::Opaque(p) => {
                self.buf.push(3);
                self.path(p);
            }
            LayerOp::Hardlink(p, t) => {
                self.buf.push(4);
                self.path(p);
                self.bytes(t);
            }
        }
    }

    /// The record's bytes; `what` names its file in the error should compression fail, or
    /// the record be larger than [`decode`] accepts (which the store's limits prevent).
    pub fn finish(mut self, what: &str) -> Result<Vec<u8>> {
        if self.buf.len() + 41 > MAX_RECORD {
            return Err(Error::Limit(format!(
                "{what}: a record of {} bytes, more than the {MAX_RECORD} a record may hold",
                self.buf.len() + 41
            )));
        }
        let hash = Sha256::digest(&self.buf);
        self.buf.push(0xFF);
        self.buf.extend_from_slice(&self.count.to_le_bytes());
        self.buf.extend_from_slice(&hash);
        let mut out = Vec::with_capacity(self.buf.len() / 3 + 64);
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&VERSION.to_le_bytes());
        // Only an allocation failure can make this fail; an empty body would be a torn record.
        let z = zstd::bulk::compress(&self.buf, 3)
            .map_err(|e| Error::io(format!("{what}: compressing the record"), e))?;
        out.extend_from_slice(&z);
        Ok(out)
    }
}

/// Serialise a layer's operations; `what` names the record's file for errors.
pub fn encode_layer(ops: &[LayerOp], header: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut w = RecordWriter::new(LAYER_MAGIC, header);
    for op in ops {
        w.op(op);
    }
    w.finish(what)
}

/// Serialise a merged tree (directories without their children, in walk order); `what` names
/// the record's file for errors.
pub fn encode_tree(t: &Tree, what: &str) -> Result<Vec<u8>> {
    let mut w = RecordWriter::new(TREE_MAGIC, b"");
    let _ = t.walk(&mut |p, n| {
        let flat = match &n.content {
            Content::Dir(_) => Node {
                meta: n.meta.clone(),
                content: Content::Dir(BTreeMap::new()),
            },
            _ => n.clone(),
        };
        w.op(&LayerOp::Put(p.to_vec(), flat));
        Ok(())
    });
    w.finish(what)
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'a str,
    prev: Vec<u8>,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: &str) -> Error {
        Error::Corrupt(format!("{}: {msg} at byte {}", self.what, self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.data.len() - self.pos < n {
            return Err(self.err("unexpected end of record"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.u32()? as usize;
        if n > MAX_FIELD {
            return Err(self.err("field too long"));
        }
        Ok(self.take(n)?.to_vec())
    }

    fn path(&mut self) -> Result<Vec<u8>> {
        let shared = self.u32()? as usize;
        let rest = self.bytes()?;
        if shared > self.prev.len() {
            return Err(self.err("bad shared path prefix"));
        }
        // Exactly as long as the path: `to_vec` then `extend` would double its capacity.
        let mut p = Vec::with_capacity(shared + rest.len());
        p.extend_from_slice(&self.prev[..shared]);
        p.extend_from_slice(&rest);
        self.prev.clone_from(&p);
        Ok(p)
    }

    fn node(&mut self) -> Result<Node> {
        let kind = self.u8()?;
        let mode = self.u32()?;
        if mode & !0o7777 != 0 {
            return Err(self.err("mode has file type bits"));
        }
        let uid = self.u32()?;
        let gid = self.u32()?;
        let mtime = self.u64()? as i64;
        let nx = self.u32()? as usize;
        if nx > 4096 {
            return Err(self.err("too many xattrs"));
        }
        let mut xattrs = Vec::with_capacity(nx);
        for _ in 0..nx {
            let k = self.bytes()?;
            let v = self.bytes()?;
            xattrs.push((k, v));
        }
        let content = match kind {
            0 => Content::Dir(BTreeMap::new()),
            1 => {
                let mut id = [0u8; 32];
                id.copy_from_slice(self.take(32)?);
                let size = self.u64()?;
                let link = match self.u8()? {
                    0 => None,
                    1 => Some(self.bytes()?),
                    _ => return Err(self.err("bad link flag")),
                };
                Content::File {
                    object: ObjectId(id),
                    size,
                    link,
                }
            }
            2 => Content::Symlink(self.bytes()?),
            3 => Content::Fifo,
            4 => Content::CharDevice(self.u32()?, self.u32()?),
            5 => Content::BlockDevice(self.u32()?, self.u32()?),
            _ => return Err(self.err("unknown node kind")),
        };
        Ok(Node {
            meta: Meta {
                mode,
                uid,
                gid,
                mtime,
                xattrs,
            },
            content,
        })
    }
}

/// Parse a record of the given kind into its header and entries; `what` names the file.
pub fn decode(data: &[u8], magic: &[u8; 8], what: &str) -> Result<(Vec<u8>, Vec<LayerOp>)> {
    let corrupt = |m: &str| Error::Corrupt(format!("{what}: {m}"));
    if data.len() < 12 || &data[..8] != magic {
        return Err(corrupt("not a record of the expected kind"));
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if version != VERSION {
        return Err(corrupt(&format!("unsupported version {version}")));
    }
    let mut body = Vec::new();
    {
        use std::io::Read;
        let dec = zstd::stream::read::Decoder::new(&data[12..])
            .map_err(|e| corrupt(&format!("decompressing: {e}")))?;
        dec.take(MAX_RECORD as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| corrupt(&format!("decompressing: {e}")))?;
    }
    if body.len() > MAX_RECORD {
        return Err(corrupt("record too large"));
    }
    if body.len() < 4 + 41 {
        return Err(corrupt("record too short (truncated?)"));
    }
    let body_end = body.len() - 41;
    if body[body_end] != 0xFF {
        return Err(corrupt("missing trailer (truncated?)"));
    }
    let hash = Sha256::digest(&body[..body_end]);
    if hash.as_slice() != &body[body_end + 9..] {
        return Err(corrupt("checksum mismatch"));
    }
    let mut count_b = [0u8; 8];
    count_b.copy_from_slice(&body[body_end + 1..body_end + 9]);
    let count = u64::from_le_bytes(count_b);
    let mut c = Cursor {
        data: &body[..body_end],
        pos: 0,
        what,
        prev: Vec::new(),
    };
    let header = c.bytes()?;
    let mut ops = Vec::new();
    while c.pos < body_end {
        let op = match c.u8()? {
            1 => {
                let p = c.path()?;
                LayerOp::Put(p, c.node()?)
            }
            2 => LayerOp::Whiteout(c.path()?),
            3 => LayerOp::Opaque(c.path()?),
            4 => {
                let p = c.path()?;
                LayerOp::Hardlink(p, c.bytes()?)
            }
            _ => return Err(c.err("unknown entry tag")),
        };
        ops.push(op);
        if ops.len() as u64 > count {
            return Err(corrupt("more entries than the trailer says"));
        }
    }
    if ops.len() as u64 != count {
        return Err(corrupt("entry count does not match the trailer"));
    }
    Ok((header, ops))
}

/// Parse a tree record.
pub fn decode_tree(data: &[u8], what: &str) -> Result<Tree> {
    let (_, ops) = decode(data, TREE_MAGIC, what)?;
    Tree::from_entries(
        ops.into_iter()
            .map(|op| match op {
                LayerOp::Put(p, n) => Ok((p, n)),
                _ => Err(Error::Corrupt(format!(
                    "{what}: tree record holds a layer operation"
                ))),
            })
            .collect::<Result<Vec<_>>>()?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let ops = vec![
            LayerOp::Put(
                b"a".to_vec(),
                Node {
                    meta: Meta {
                        mode: 0o4755,
                        uid: 70000,
                        gid: 5,
                        mtime: -3,
                        xattrs: vec![(b"user.x".to_vec(), vec![0, 1, 2])],
                    },
                    content: Content::File {
                        object: ObjectId([7; 32]),
                        size: 3,
                        link: Some(b"b".to_vec()),
                    },
                },
            ),
            LayerOp::Whiteout(b"c".to_vec()),
            LayerOp::Opaque(b"d".to_vec()),
            LayerOp::Hardlink(b"e".to_vec(), b"a".to_vec()),
            LayerOp::Put(
                b"f".to_vec(),
                Node {
                    meta: Meta::default(),
                    content: Content::CharDevice(1, 3),
                },
            ),
        ];
        let enc = encode_layer(&ops, b"{}", "x").unwrap();
        assert_eq!(
            decode(&enc, LAYER_MAGIC, "x").unwrap(),
            (b"{}".to_vec(), ops)
        );
        assert!(decode(&enc, TREE_MAGIC, "x").is_err());
        for cut in [0, 5, 20, enc.len() / 2, enc.len() - 1] {
            assert!(decode(&enc[..cut], LAYER_MAGIC, "x").is_err());
        }
        for i in 12..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x5a;
            assert!(
                decode(&bad, LAYER_MAGIC, "x").is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
    }
}
