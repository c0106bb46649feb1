//! Reading one layer: decompress, verify, parse the tar stream, store file contents as
//! objects and describe the layer as a list of [`LayerOp`]s. Everything streams: nothing larger
//! than one small file (or a 128 KiB chunk of a large one) is held in memory.

use std::io::{self, BufReader, Read};

use flate2::bufread::MultiGzDecoder;
use ociboot_oci::{Compression, Sha256Digest};
use sha2::Digest as _;

use crate::error::{Error, Result};
use crate::objects::{ObjectId, Staging, INLINE_MAX};
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

/// Buffers the decompressed stream for the tar parser, counts it and, unless it is the blob
/// itself, hashes it for the diff_id on a thread of its own, so that decompression, hashing
/// and object writing use both cores. Buffers are recycled once the hasher is done with them.
struct StreamHasher<R> {
    inner: R,
    pool: Vec<std::sync::Arc<Vec<u8>>>,
    cur: usize,
    pos: usize,
    len: usize,
    tx: Option<std::sync::mpsc::SyncSender<(std::sync::Arc<Vec<u8>>, usize)>>,
    worker: Option<std::thread::JoinHandle<Sha256Digest>>,
    count: u64,
    /// Verify the stream as a blob: its digest, its size, and its name for errors.
    expect: Option<(Sha256Digest, u64, String)>,
}

const STREAM_BUF: usize = 256 << 10;

fn mismatch(what: &str, msg: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        ociboot_oci::digest::BlobMismatch(format!("{what}: {msg}")),
    )
}

impl<R: Read> StreamHasher<R> {
    fn new(inner: R, hash: bool) -> Self {
        let (tx, worker) = if hash {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(std::sync::Arc<Vec<u8>>, usize)>(8);
            let worker = std::thread::spawn(move || {
                let mut h = sha2::Sha256::new();
                for (buf, len) in rx {
                    h.update(&buf[..len]);
                }
                Sha256Digest(h.finalize().into())
            });
            (Some(tx), Some(worker))
        } else {
            (None, None)
        };
        StreamHasher {
            inner,
            pool: Vec::new(),
            cur: 0,
            pos: 0,
            len: 0,
            tx,
            worker,
            count: 0,
            expect: None,
        }
    }

    /// Like a [`ociboot_oci::VerifyingReader`], with the hashing on a thread of its own:
    /// fails past `size` bytes, and at the end on a short stream or another digest.
    fn verifying(inner: R, digest: Sha256Digest, size: u64, what: String) -> Self {
        let mut s = Self::new(inner, true);
        s.expect = Some((digest, size, what));
        s
    }

    /// The diff_id (when hashing), the stream's length and the inner reader.
    fn finish(mut self) -> (Option<Sha256Digest>, u64, R) {
        self.tx = None;
        let digest = self.worker.take().and_then(|w| w.join().ok());
        (digest, self.count, self.inner)
    }

    fn refill(&mut self) -> io::Result<()> {
        let free = self
            .pool
            .iter()
            .position(|b| std::sync::Arc::strong_count(b) == 1);
        let idx = match free {
            Some(i) => i,
            None => {
                self.pool.push(std::sync::Arc::new(vec![0u8; STREAM_BUF]));
                self.pool.len() - 1
            }
        };
        let buf = std::sync::Arc::get_mut(&mut self.pool[idx])
            .ok_or_else(|| io::Error::other("stream buffer still shared"))?;
        let n = self.inner.read(buf)?;
        self.cur = idx;
        self.pos = 0;
        self.len = n;
        self.count += n as u64;
        if let Some((digest, size, what)) = &self.expect {
            if self.count > *size {
                return Err(mismatch(
                    what,
                    format!("blob is larger than the {size} bytes its descriptor declares"),
                ));
            }
            if n == 0 {
                let (digest, size, what) = (*digest, *size, what.clone());
                if self.count != size {
                    return Err(mismatch(
                        &what,
                        format!("truncated blob: got {} of {size} bytes", self.count),
                    ));
                }
                self.tx = None;
                let got = self.worker.take().and_then(|w| w.join().ok());
                if got != Some(digest) {
                    let got = got
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "nothing".into());
                    return Err(mismatch(
                        &what,
                        format!("digest mismatch: expected {digest}, got {got}"),
                    ));
                }
                self.expect = None;
                return Ok(());
            }
        }
        if n > 0 {
            if let Some(tx) = &self.tx {
                tx.send((self.pool[idx].clone(), n))
                    .map_err(|_| io::Error::other("diff_id hasher stopped"))?;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for StreamHasher<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len {
            self.refill()?;
            if self.len == 0 {
                return Ok(0);
            }
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.pool[self.cur][self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

enum Decoder<R: Read> {
    Plain(BufReader<R>),
    Gzip(Box<MultiGzDecoder<BufReader<R>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Decoder<R> {
    fn new(r: R, c: Compression) -> io::Result<Self> {
        Ok(match c {
            Compression::None => Decoder::Plain(BufReader::with_capacity(128 << 10, r)),
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
    /// The digest of the uncompressed stream; `None` for an uncompressed layer, whose
    /// diff_id is its blob digest (which the verifying reader below has checked).
    pub diff_id: Option<Sha256Digest>,
    pub uncompressed_size: u64,
}

fn parse_num<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    let s = std::str::from_utf8(v).ok()?;
    let s = s.split('.').next()?;
    s.trim().parse().ok()
}

/// Work for the object-writing thread.
enum Job {
    Small {
        data: Vec<u8>,
        /// The content's SHA-256 when the parser already computed it.
        digest: Option<[u8; 32]>,
        meta: Meta,
        what: String,
    },
    LargeStart {
        meta: Meta,
    },
    Chunk(Vec<u8>),
    LargeEnd {
        meta: Meta,
        size: u64,
        what: String,
    },
}

/// How far ahead of the writer the tar parser may run (batches of at most ~1 MiB).
const QUEUE: usize = 8;
const CHUNK: usize = 256 << 10;

/// Reads the tar stream and hands file contents to the writer thread, in batches so that
/// the two threads do not wake each other for every small file.
struct Parser<'a> {
    tx: std::sync::mpsc::SyncSender<Vec<Job>>,
    batch: std::cell::RefCell<(Vec<Job>, usize)>,
    what: &'a str,
    /// Hash small files here rather than in the writer: balances the threads when there
    /// is no decompression to do.
    hash_small: bool,
}

const BATCH_JOBS: usize = 256;
const BATCH_BYTES: usize = 1 << 20;

/// The writer thread went away (it failed); its error is the one to report.
#[derive(Debug)]
struct WriterGone;

impl Parser<'_> {
    fn send(&self, j: Job) -> Result<(), WriterGone> {
        let full = {
            let mut b = self.batch.borrow_mut();
            b.1 += match &j {
                Job::Small { data, .. } | Job::Chunk(data) => data.len(),
                _ => 0,
            };
            b.0.push(j);
            b.0.len() >= BATCH_JOBS || b.1 >= BATCH_BYTES
        };
        if full {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), WriterGone> {
        let jobs = std::mem::take(&mut self.batch.borrow_mut().0);
        self.batch.borrow_mut().1 = 0;
        if jobs.is_empty() {
            return Ok(());
        }
        self.tx.send(jobs).map_err(|_| WriterGone)
    }
}

/// Import a layer from the raw `blob` stream, which must have `digest` and `size` (checked as
/// it streams, on a thread of its own). `what` names the layer for errors. The caller checks
/// `diff_id` against the config.
///
/// Two threads: this one decompresses, hashes the stream and parses tar; a second one hashes
/// file contents and writes objects, so both cores work on a large layer.
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
            Parser {
                tx,
                batch: Default::default(),
                what,
                hash_small: compression == Compression::None,
            },
        );
        let ids = match writer.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        };
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

fn write_objects(
    rx: std::sync::mpsc::Receiver<Vec<Job>>,
    staging: &mut Staging,
) -> Result<Vec<ObjectId>> {
    let mut ids = Vec::new();
    let mut large = None;
    for job in rx.into_iter().flatten() {
        match job {
            Job::Small {
                data,
                digest,
                meta,
                what,
            } => ids.push(staging.add_bytes(&data, digest, &meta, &what)?),
            Job::LargeStart { meta } => large = Some(staging.begin_large(&meta)?),
            Job::Chunk(data) => {
                if let Some(o) = large.as_mut() {
                    o.write(&data, "object")?;
                }
            }
            Job::LargeEnd { meta, size, what } => {
                let o = large.take().ok_or_else(|| {
                    Error::Layer(format!("{what}: internal error: no object in progress"))
                })?;
                ids.push(staging.finish_large(o, &meta, size, &what)?);
            }
        }
    }
    Ok(ids)
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
    let (digest, uncompressed_size, dec) = hashing.finish();
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
        Error::Io { context, source } => {
            Error::Layer(format!("{context}: malformed or truncated layer: {source}"))
        }
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
