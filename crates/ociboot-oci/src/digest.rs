//! SHA-256 digests and readers that hash (and verify) what streams through them.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::Error;

/// A `sha256:<64 hex>` content digest, the only algorithm ociboot accepts for blobs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Digest of a byte slice.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// The 64 lowercase hex characters, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    /// Parse 64 hex characters (no prefix).
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hi = hexval(chunk[0])?;
            let lo = hexval(chunk[1])?;
            out[i] = (hi << 4) | lo;
        }
        Some(Self(out))
    }
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Lowercase hex of arbitrary bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Sha256Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let Some((alg, value)) = s.split_once(':') else {
            return Err(Error::invalid_digest(s, "expected ALGORITHM:HEX"));
        };
        if alg != "sha256" {
            return Err(Error::invalid_digest(
                s,
                &format!(
                    "unsupported digest algorithm {:?} (only sha256 is supported)",
                    alg.chars().take(32).collect::<String>()
                ),
            ));
        }
        Self::from_hex(value)
            .ok_or_else(|| Error::invalid_digest(s, "expected 64 lowercase hex characters"))
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl TryFrom<&oci_spec::image::Digest> for Sha256Digest {
    type Error = Error;
    fn try_from(d: &oci_spec::image::Digest) -> Result<Self, Error> {
        d.as_ref().parse()
    }
}

/// Hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wrap `inner`, starting from zero bytes and an empty hash.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest of everything read so far, and the inner reader.
    pub fn finish(self) -> (Sha256Digest, u64, R) {
        (
            Sha256Digest(self.hasher.finalize().into()),
            self.count,
            self.inner,
        )
    }

    /// The inner reader. Bytes read through it directly bypass the hash and the count.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// What a blob must be: exactly `size` bytes with digest `digest`. The one check behind every
/// blob reader (here [`VerifyingReader`], in the store the layer stream that hashes on a
/// thread of its own): feed it the count as bytes arrive, and the digest at the end.
#[derive(Debug, Clone)]
pub struct BlobCheck {
    digest: Sha256Digest,
    size: u64,
    what: String,
    count: u64,
}

impl BlobCheck {
    /// `what` names the blob for error messages (e.g. "layer sha256:… of quay.io/x:1").
    pub fn new(digest: Sha256Digest, size: u64, what: String) -> Self {
        BlobCheck {
            digest,
            size,
            what,
            count: 0,
        }
    }

    /// How many of `want` bytes to ask the source for: never more than one byte past the
    /// declared size, enough to see an overlong blob without reading an unbounded stream.
    pub fn want(&self, want: usize) -> usize {
        let remaining = self.size.saturating_sub(self.count);
        want.min(usize::try_from(remaining.saturating_add(1)).unwrap_or(usize::MAX))
    }

    /// `n` more bytes arrived: an error as soon as there are more than the declared size.
    pub fn arrived(&mut self, n: usize) -> io::Result<()> {
        self.count += n as u64;
        if self.count > self.size {
            return Err(self.fail(format!(
                "blob is larger than the {} bytes its descriptor declares",
                self.size
            )));
        }
        Ok(())
    }

    /// The stream ended and `got` is the digest of all it held: an error when it was short or
    /// is another blob.
    pub fn finish(&self, got: Sha256Digest) -> io::Result<()> {
        if self.count != self.size {
            return Err(self.fail(format!(
                "truncated blob: got {} of {} bytes",
                self.count, self.size
            )));
        }
        if got != self.digest {
            return Err(self.fail(format!(
                "digest mismatch: expected {}, got {got}",
                self.digest
            )));
        }
        Ok(())
    }

    /// Bytes seen so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn fail(&self, msg: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            BlobMismatch(format!("{}: {msg}", self.what)),
        )
    }
}

/// A reader over a blob that must have exactly `size` bytes with digest `digest`.
///
/// It fails with [`io::ErrorKind::InvalidData`] as soon as more than `size` bytes arrive, and at
/// end of stream when fewer bytes arrived or the digest differs, so a consumer that reads to the
/// end can never accept a blob that does not match its descriptor. The error text names the blob.
pub struct VerifyingReader<R> {
    inner: HashingReader<R>,
    check: BlobCheck,
    verified: bool,
}

impl<R: Read> VerifyingReader<R> {
    /// `what` names the blob for error messages (e.g. "layer sha256:… of quay.io/x:1").
    pub fn new(inner: R, digest: Sha256Digest, size: u64, what: String) -> Self {
        Self {
            inner: HashingReader::new(inner),
            check: BlobCheck::new(digest, size, what),
            verified: false,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.inner.count()
    }

    /// True once the whole blob was read and matched.
    pub fn verified(&self) -> bool {
        self.verified
    }
}

/// The error carried inside an [`io::Error`] when a blob does not match its descriptor.
#[derive(Debug)]
pub struct BlobMismatch(pub String);

impl fmt::Display for BlobMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BlobMismatch {}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let want = self.check.want(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        self.check.arrived(n)?;
        if n == 0 && !self.verified {
            self.check
                .finish(Sha256Digest(self.inner.hasher.clone().finalize().into()))?;
            self.verified = true;
        }
        Ok(n)
    }
}

/// Read a whole small blob (manifest, config) through a [`VerifyingReader`].
pub fn read_verified<R: Read>(
    inner: R,
    digest: Sha256Digest,
    size: u64,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, Error> {
    if size > max {
        return Err(Error::Invalid(format!(
            "{what}: declared size {size} exceeds the limit of {max} bytes"
        )));
    }
    let mut r = VerifyingReader::new(inner, digest, size, what.to_string());
    let mut buf = Vec::with_capacity(size as usize);
    r.read_to_end(&mut buf)
        .map_err(|e| Error::from_io(what, e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let d = Sha256Digest::of(b"hello");
        let s = d.to_string();
        assert_eq!(
            s,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(s.parse::<Sha256Digest>().unwrap(), d);
        assert!("sha512:00".parse::<Sha256Digest>().is_err());
        assert!("sha256:ABCD".parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn verifying_reader() {
        let data = b"some blob";
        let d = Sha256Digest::of(data);
        let ok = read_verified(&data[..], d, data.len() as u64, 100, "x").unwrap();
        assert_eq!(ok, data);
        let e = read_verified(&data[..5], d, data.len() as u64, 100, "blob X").unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        assert!(e.to_string().contains("blob X"), "{e}");
        let e = read_verified(&b"some blub"[..], d, 9, 100, "x").unwrap_err();
        assert!(e.to_string().contains("digest mismatch"), "{e}");
        let e = read_verified(&b"some blob!!"[..], d, 9, 100, "x").unwrap_err();
        assert!(e.to_string().contains("larger"), "{e}");
        assert!(read_verified(&data[..], d, 9, 5, "x").is_err());
    }
}
