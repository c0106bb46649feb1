//! Reading one layer: verify the blob, decompress it, parse the tar stream, store file
//! contents as objects and describe the layer as a list of [`LayerOp`]s. Everything streams:
//! a small file (at most 256 KiB) is held whole, a large one passes in 256 KiB chunks, and at
//! most a few MiB of contents are queued between the threads.
//!
//! [`import_layer`] parses tar (and decompresses) on the calling thread; helper threads hash
//! the compressed blob (`stream`), hash the uncompressed stream for the diff_id when the layer
//! is compressed, and write objects (`writer`). A layer is only ever read here, never applied:
//! entries become [`LayerOp`]s with paths normalised (hostile ones refused) and nothing is
//! written anywhere but the store's objects and `tmp/`.

use std::io::{self, Read};

use ociboot_oci::{Compression, Sha256Digest};
use sha2::Digest as _;

use crate::error::{join_worker, Error, Result};
use crate::objects::{ObjectId, Staging, INLINE_MAX};
use crate::tree::{normalize_entry_path, show, Content, LayerOp, Meta, Node};

mod stream;
mod writer;

pub use stream::ProgressReader;
use stream::{Decoder, StreamHasher};
use writer::{write_objects, Job, Parser, WriterGone, CHUNK, QUEUE};

/// What importing a layer produced.
#[derive(Debug)]
pub struct ImportedLayer {
    /// The layer's changes in tar stream order, each file's object id filled in.
    pub ops: Vec<LayerOp>,
    /// The digest of the uncompressed stream; `None` for an uncompressed layer, whose
    /// diff_id is its blob digest (which the verifying reader below has checked).
    pub diff_id: Option<Sha256Digest>,
    /// Bytes of the uncompressed tar stream, padding after the end marker included.
    pub uncompressed_size: u64,
}

fn parse_num<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    let s = std::str::from_utf8(v).ok()?;
    let s = s.split('.').next()?;
    s.trim().parse().ok()
}

/// Import a layer from the raw `blob` stream, which must have `digest` and `size` (checked as
/// it streams, on a thread of its own). `what` names the layer for errors. The caller checks
/// `diff_id` against the config.
///
/// This thread decompresses and parses tar; the blob's digest, the diff_id (of a compressed
/// layer) and the objects are computed and written on helper threads, so both cores work on a
/// large layer.
pub fn import_layer<R: Read>(
    blob: R,
    digest: Sha256Digest,
    size: u64,
    compression: Compression,
    staging: &mut Staging,
    what: &str,
) -> Result<ImportedLayer> {
    let blob = StreamHasher::verifying(blob, digest, size, what.to_string());
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Job>>(QUEUE);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || write_objects(rx, staging));
        let parsed = parse_layer(
            blob,
            compression,
            Parser::new(tx, what, compression == Compression::None),
        );
        let ids =
            join_worker(writer.join(), || format!("object writer for {what}")).and_then(|r| r);
        let (mut layer, pending) = match (parsed, ids) {
            (Ok(p), Ok(ids)) => {
                let (layer, pending) = p;
                if pending.len() != ids.len() {
                    return Err(Error::Layer(format!(
                        "{what}: internal error: {} files, {} objects",
                        pending.len(),
                        ids.len()
                    )));
                }
                (layer, pending.into_iter().zip(ids).collect::<Vec<_>>())
            }
            (_, Err(e)) => return Err(e),
            (Err(e), Ok(_)) => return Err(e),
        };
        for (i, id) in pending {
            if let LayerOp::Put(
                _,
                Node {
                    content: Content::File { object, .. },
                    ..
                },
            ) = &mut layer.ops[i]
            {
                *object = id;
            }
        }
        Ok(layer)
    })
}

/// Parse the stream; returns the layer and, for each regular file in order, the index of its
/// op (whose object id the writer supplies).
fn parse_layer<R: Read>(
    blob: R,
    compression: Compression,
    p: Parser<'_>,
) -> Result<(ImportedLayer, Vec<usize>)> {
    let what = p.what;
    let dec = Decoder::new(blob, compression).map_err(|e| Error::stream(what, e))?;
    // An uncompressed layer's diff_id is its blob digest: no need to hash it twice.
    let hash = compression != Compression::None;
    let mut hashing = StreamHasher::new(dec, hash);
    let mut ops = Vec::new();
    let mut pending = Vec::new();
    let gone = |_: WriterGone| Error::Layer(format!("{what}: storing file contents failed"));
    {
        let mut ar = tar::Archive::new(&mut hashing);
        let entries = ar.entries().map_err(|e| Error::stream(what, e))?;
        for entry in entries {
            let mut e = entry.map_err(|e| tar_err(what, e))?;
            if let Some((op, is_file)) = entry_op(&mut e, &p).map_err(|e| match e {
                EntryError::Gone(g) => gone(g),
                EntryError::Err(e) => e,
            })? {
                if is_file {
                    pending.push(ops.len());
                }
                ops.push(op);
            }
        }
    }
    p.flush().map_err(gone)?;
    drop(p);
    // The tar end marker may be followed by padding: it is part of the diff_id.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| tar_err(what, e))?;
    let (digest, uncompressed_size, dec) = hashing.finish()?;
    dec.drain_inner().map_err(|e| tar_err(what, e))?;
    Ok((
        ImportedLayer {
            ops,
            diff_id: digest,
            uncompressed_size,
        },
        pending,
    ))
}

enum EntryError {
    Gone(WriterGone),
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

fn tar_err(what: &str, e: io::Error) -> Error {
    match Error::stream(what, e) {
        Error::Io(e) => Error::Layer(format!(
            "{}: malformed or truncated layer: {}",
            e.context, e.source
        )),
        other => other,
    }
}

fn entry_op<R: Read>(
    e: &mut tar::Entry<'_, R>,
    p: &Parser<'_>,
) -> Result<Option<(LayerOp, bool)>, EntryError> {
    let what = p.what;
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
            return Ok(Some((LayerOp::Opaque(parent.to_vec()), false)));
        }
        if name.starts_with(b".wh.") {
            // aufs bookkeeping (.wh..wh.plnk and the like): not part of the image
            return Ok(None);
        }
        let mut target = parent.to_vec();
        if !target.is_empty() {
            target.push(b'/');
        }
        target.extend_from_slice(name);
        return Ok(Some((LayerOp::Whiteout(target), false)));
    }
    let content = match et {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            if path.is_empty() {
                return Err(bad("a regular file at the root".into()).into());
            }
            let size = e.size();
            let fwhat = format!("{what}: {}", show(&path));
            if size <= INLINE_MAX {
                let mut data = Vec::with_capacity(size as usize);
                e.take(size)
                    .read_to_end(&mut data)
                    .map_err(|x| tar_err(&fwhat, x))?;
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
                    e.read_exact(&mut data).map_err(|x| tar_err(&fwhat, x))?;
                    p.send(Job::Chunk(data))?;
                    left -= n as u64;
                }
                p.send(Job::LargeEnd {
                    meta: meta.clone(),
                    size,
                    what: fwhat,
                })?;
            }
            return Ok(Some((
                LayerOp::Put(
                    path,
                    Node {
                        meta,
                        content: Content::File {
                            object: ObjectId([0; 32]),
                            size,
                            link: None,
                        },
                    },
                ),
                true,
            )));
        }
        tar::EntryType::Directory => Content::Dir(Default::default()),
        tar::EntryType::Symlink => {
            let t = e
                .link_name_bytes()
                .ok_or_else(|| bad("symlink without a target".into()))?
                .into_owned();
            if t.is_empty() || t.contains(&0) {
                return Err(bad("empty or invalid symlink target".into()).into());
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
                return Err(bad("hardlink to or at the root".into()).into());
            }
            return Ok(Some((LayerOp::Hardlink(path, t), false)));
        }
        tar::EntryType::Fifo => Content::Fifo,
        tar::EntryType::Char => Content::CharDevice(major, minor),
        tar::EntryType::Block => Content::BlockDevice(major, minor),
        tar::EntryType::XGlobalHeader => return Ok(None),
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::objects::ImportStats;

    struct Dirs {
        _dir: tempfile::TempDir,
        objects: std::path::PathBuf,
        tmp: std::path::PathBuf,
    }

    fn dirs() -> Dirs {
        let dir = tempfile::tempdir().unwrap();
        let objects = dir.path().join("objects");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        for i in 0..256 {
            std::fs::create_dir_all(objects.join(format!("{i:02x}"))).unwrap();
        }
        Dirs {
            _dir: dir,
            objects,
            tmp,
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(size);
        h
    }

    fn import(d: &Dirs, blob: &[u8], c: Compression) -> Result<(ImportedLayer, ImportStats)> {
        let mut staging = Staging::new(&d.tmp, &d.objects).unwrap();
        let digest = Sha256Digest::of(blob);
        let layer = import_layer(blob, digest, blob.len() as u64, c, &mut staging, "layer L")?;
        Ok((layer, staging.commit().unwrap()))
    }

    fn object_of(op: &LayerOp) -> ObjectId {
        match op {
            LayerOp::Put(
                _,
                Node {
                    content: Content::File { object, .. },
                    ..
                },
            ) => *object,
            other => panic!("not a file: {other:?}"),
        }
    }

    #[test]
    fn entries_become_layer_operations_in_stream_order() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(
            &mut header(tar::EntryType::Directory, 0o755, 0),
            "./usr/",
            &[][..],
        )
        .unwrap();
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o4755, 2),
            "usr/su",
            &b"hi"[..],
        )
        .unwrap();
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, "usr/sbin", "bin").unwrap();
        let mut h = header(tar::EntryType::Link, 0o644, 0);
        b.append_link(&mut h, "usr/su2", "usr/su").unwrap();
        for wh in ["etc/.wh.motd", "var/.wh..wh..opq", ".wh..wh.plnk"] {
            b.append_data(&mut header(tar::EntryType::Regular, 0o644, 0), wh, &[][..])
                .unwrap();
        }
        let blob = b.into_inner().unwrap();
        let d = dirs();
        let (layer, stats) = import(&d, &blob, Compression::None).unwrap();
        // An uncompressed layer's diff_id is its blob digest, checked on the way in.
        assert_eq!(layer.diff_id, None);
        assert_eq!(layer.uncompressed_size, blob.len() as u64);
        let shapes: Vec<String> = layer
            .ops
            .iter()
            .map(|op| match op {
                LayerOp::Put(p, n) => format!("put {} {:o}", show(p), n.meta.mode),
                LayerOp::Whiteout(p) => format!("whiteout {}", show(p)),
                LayerOp::Opaque(p) => format!("opaque {}", show(p)),
                LayerOp::Hardlink(p, t) => format!("hardlink {} {}", show(p), show(t)),
            })
            .collect();
        assert_eq!(
            shapes,
            [
                "put /usr 755",
                "put /usr/su 4755",
                "put /usr/sbin 777",
                "hardlink /usr/su2 /usr/su",
                "whiteout /etc/motd",
                "opaque /var",
            ]
        );
        let id = object_of(&layer.ops[1]);
        let p = d.objects.join(id.rel_path());
        assert_eq!(std::fs::read(&p).unwrap(), b"hi");
        assert_eq!(crate::objects::verify_object(&p).unwrap(), id);
        assert_eq!((stats.files, stats.new_objects), (1, 1));
    }

    #[test]
    fn large_files_stream_into_objects_and_equal_content_is_stored_once() {
        let big: Vec<u8> = (0..INLINE_MAX as usize * 3 + 17)
            .map(|i| (i * 7 % 256) as u8)
            .collect();
        let mut b = tar::Builder::new(Vec::new());
        for name in ["a/big", "b/big"] {
            let mut h = header(tar::EntryType::Regular, 0o644, big.len() as u64);
            b.append_data(&mut h, name, &big[..]).unwrap();
        }
        let tarball = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tarball).unwrap();
        let blob = gz.finish().unwrap();
        let d = dirs();
        let (layer, stats) = import(&d, &blob, Compression::Gzip).unwrap();
        assert_eq!(layer.diff_id, Some(Sha256Digest::of(&tarball)));
        assert_eq!(layer.uncompressed_size, tarball.len() as u64);
        let (a, b) = (object_of(&layer.ops[0]), object_of(&layer.ops[1]));
        assert_eq!(a, b);
        assert_eq!(std::fs::read(d.objects.join(a.rel_path())).unwrap(), big);
        assert_eq!((stats.new_objects, stats.reused_objects), (1, 1));
        assert_eq!(std::fs::read_dir(&d.tmp).unwrap().count(), 0);
    }

    #[test]
    fn hostile_and_broken_layers_are_refused_naming_the_layer() {
        let d = dirs();
        let mut h = header(tar::EntryType::Regular, 0o644, 1);
        h.as_old_mut().name[..12].copy_from_slice(b"../etc/shado");
        h.set_cksum();
        let mut hostile = h.as_bytes().to_vec();
        hostile.extend([b'x'; 512]);
        hostile.extend([0u8; 1024]);
        let err = import(&d, &hostile, Compression::None).unwrap_err();
        assert!(
            matches!(&err, Error::HostilePath(m) if m.contains("layer L")),
            "{err}"
        );

        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(tar::EntryType::Regular, 0o644, 4000);
        b.append_data(&mut h, "f", &[1u8; 4000][..]).unwrap();
        let full = b.into_inner().unwrap();
        let torn = &full[..1500];
        let err = import(&d, torn, Compression::None).unwrap_err();
        assert!(
            matches!(&err, Error::Layer(m) if m.contains("layer L") && m.contains("truncated")),
            "{err}"
        );
    }
}
