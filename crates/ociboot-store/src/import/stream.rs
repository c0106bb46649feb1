//! The byte streams of a layer import, below the tar parser: progress counting, the
//! compressed blob verified against its descriptor, decompression (gzip, multi-member; zstd,
//! multi-frame) and the diff_id digest of the uncompressed stream.
//!
//! [`StreamHasher`] reads into recycled 256 KiB buffers and hands each filled one to a hashing
//! thread of its own, so hashing runs beside decompression and parsing. It must never hand out
//! a byte past a blob's declared size, and never end a verified stream without checking its
//! length and digest: a blob that is short, long or different fails, naming the blob.

use std::io::{self, BufReader, Read};
use std::sync::{mpsc, Arc};

use flate2::bufread::MultiGzDecoder;
use ociboot_oci::{BlobCheck, Compression, Sha256Digest};
use sha2::Digest as _;

/// Counts bytes for a progress callback.
pub struct ProgressReader<R, F: FnMut(u64)> {
    inner: R,
    total: u64,
    f: F,
}

impl<R: Read, F: FnMut(u64)> ProgressReader<R, F> {
    /// Wrap `inner`; after every read `f` gets the total number of bytes read so far.
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
pub(super) struct StreamHasher<R> {
    inner: R,
    pool: Vec<Arc<Vec<u8>>>,
    cur: usize,
    pos: usize,
    len: usize,
    hasher: Hasher,
    count: u64,
    /// Verify the stream as a blob (its size as it arrives, its digest at the end), until it
    /// is verified.
    check: Option<(BlobCheck, String)>,
}

const STREAM_BUF: usize = 256 << 10;

/// The hashing thread and its feed. Dropping it (an import that failed half-way) stops the
/// thread and waits for it, so no thread outlives the import that started it.
struct Hasher {
    tx: Option<mpsc::SyncSender<(Arc<Vec<u8>>, usize)>>,
    worker: Option<std::thread::JoinHandle<Sha256Digest>>,
}

impl Drop for Hasher {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            // The digest is not wanted; a panic was already printed by the thread.
            let _ = w.join();
        }
    }
}

impl<R: Read> StreamHasher<R> {
    pub(super) fn new(inner: R, hash: bool) -> Self {
        let (tx, worker) = if hash {
            let (tx, rx) = mpsc::sync_channel::<(Arc<Vec<u8>>, usize)>(8);
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
        let hasher = Hasher { tx, worker };
        StreamHasher {
            inner,
            pool: Vec::new(),
            cur: 0,
            pos: 0,
            len: 0,
            hasher,
            count: 0,
            check: None,
        }
    }

    /// Like a [`ociboot_oci::VerifyingReader`], with the hashing on a thread of its own:
    /// fails past `size` bytes, and at the end on a short stream or another digest.
    pub(super) fn verifying(inner: R, digest: Sha256Digest, size: u64, what: String) -> Self {
        let mut s = Self::new(inner, true);
        s.check = Some((BlobCheck::new(digest, size, what.clone()), what));
        s
    }

    /// The diff_id (when hashing), the stream's length and the inner reader.
    pub(super) fn finish(mut self) -> crate::Result<(Option<Sha256Digest>, u64, R)> {
        let digest = self.join_hasher()?;
        Ok((digest, self.count, self.inner))
    }

    /// Stop feeding the hasher and take its digest (`None` when not hashing).
    fn join_hasher(&mut self) -> crate::Result<Option<Sha256Digest>> {
        self.hasher.tx = None;
        let job = || match &self.check {
            Some((_, what)) => format!("blob hasher for {what}"),
            None => "diff_id hasher".to_string(),
        };
        self.hasher
            .worker
            .take()
            .map(|w| crate::error::join_worker(w.join(), job))
            .transpose()
    }

    fn refill(&mut self) -> io::Result<()> {
        let free = self.pool.iter().position(|b| Arc::strong_count(b) == 1);
        let idx = match free {
            Some(i) => i,
            None => {
                self.pool.push(Arc::new(vec![0u8; STREAM_BUF]));
                self.pool.len() - 1
            }
        };
        let buf = Arc::get_mut(&mut self.pool[idx])
            .ok_or_else(|| io::Error::other("stream buffer still shared"))?;
        let want = match &self.check {
            Some((c, _)) => c.want(buf.len()),
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..want])?;
        self.cur = idx;
        self.pos = 0;
        self.len = n;
        self.count += n as u64;
        if let Some((c, _)) = &mut self.check {
            c.arrived(n)?;
            if n == 0 {
                let got = self.join_hasher().map_err(io::Error::other)?;
                if let Some((c, _)) = &self.check {
                    // Hashing was on (`verifying` turns it on), so there is a digest.
                    c.finish(got.unwrap_or(Sha256Digest([0; 32])))?;
                }
                self.check = None;
                return Ok(());
            }
        }
        if n > 0 {
            if let Some(tx) = &self.hasher.tx {
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

pub(super) enum Decoder<R: Read> {
    Plain(BufReader<R>),
    Gzip(Box<MultiGzDecoder<BufReader<R>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Decoder<R> {
    pub(super) fn new(r: R, c: Compression) -> io::Result<Self> {
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
    pub(super) fn drain_inner(self) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Read everything in small pieces, like the tar parser does.
    fn read_all(mut r: impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1000];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn blob() -> Vec<u8> {
        (0..(STREAM_BUF * 2 + 123))
            .map(|i| (i % 251) as u8)
            .collect()
    }

    #[test]
    fn a_verified_blob_reads_through_unchanged() {
        let data = blob();
        let r = StreamHasher::verifying(
            &data[..],
            Sha256Digest::of(&data),
            data.len() as u64,
            "b".into(),
        );
        assert_eq!(read_all(r).unwrap(), data);
    }

    #[test]
    fn a_blob_unlike_its_descriptor_fails_naming_it() {
        let data = blob();
        let digest = Sha256Digest::of(&data);
        let len = data.len() as u64;
        let cases = [
            (
                &data[..],
                Sha256Digest::of(b"other"),
                len,
                "digest mismatch",
            ),
            (&data[..data.len() - 1], digest, len, "truncated blob"),
            (&data[..], digest, len - 1, "larger than the"),
        ];
        for (bytes, digest, size, why) in cases {
            let r = StreamHasher::verifying(bytes, digest, size, "layer sha256:x".into());
            let err = read_all(r).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            let msg = err.to_string();
            assert!(msg.contains("layer sha256:x") && msg.contains(why), "{msg}");
        }
    }

    #[test]
    fn the_diff_id_is_the_digest_of_every_byte_read() {
        let data = blob();
        let mut h = StreamHasher::new(&data[..], true);
        assert_eq!(read_all(&mut h).unwrap().len(), data.len());
        let (digest, count, _) = h.finish().unwrap();
        assert_eq!(digest, Some(Sha256Digest::of(&data)));
        assert_eq!(count, data.len() as u64);
        let (digest, count, _) = StreamHasher::new(&data[..10], false).finish().unwrap();
        assert_eq!((digest, count), (None, 0));
    }

    #[test]
    fn multi_member_gzip_and_multi_frame_zstd_are_read_to_the_end() {
        let (a, b) = (b"first member ".repeat(100), b"second member".repeat(100));
        let mut gz = Vec::new();
        for part in [&a, &b] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            gz.extend(e.finish().unwrap());
        }
        let mut zst = zstd::bulk::compress(&a, 1).unwrap();
        zst.extend(zstd::bulk::compress(&b, 1).unwrap());
        let whole = [a.clone(), b.clone()].concat();
        for (c, bytes) in [
            (Compression::Gzip, gz),
            (Compression::Zstd, zst),
            (Compression::None, whole.clone()),
        ] {
            let mut d = Decoder::new(&bytes[..], c).unwrap();
            assert_eq!(read_all(&mut d).unwrap(), whole, "{c:?}");
            d.drain_inner().unwrap();
        }
    }

    #[test]
    fn progress_reports_the_running_total() {
        let seen = std::cell::RefCell::new(Vec::new());
        let r = ProgressReader::new(&[7u8; 2500][..], |n| seen.borrow_mut().push(n));
        assert_eq!(read_all(r).unwrap().len(), 2500);
        assert_eq!(seen.into_inner(), vec![1000, 2000, 2500, 2500]);
    }
}
