//! ociboot's tar reader for layers: strict where the `tar` crate and most readers are lax, so
//! that what it accepts GNU tar and Python's tarfile accept too, with the same content (the
//! oracle test `tests/tar_oracle.rs` checks that on a generated corpus of odd headers).
//!
//! Every header block is checked ([`header::parse`]): checksum, numeric fields (octal or
//! base-256 that fits, never negative), magic, type. Extension headers are read within the
//! [`crate::limits`] (refused from their header when they claim more) and applied to the entry
//! after them: a GNU long name (`L`) or long link (`K`) up to its first NUL, PAX records
//! (`x`, [`pax::records`]) for the path, link target, size, owner, time and
//! `SCHILY.xattr.*`. PAX global headers (`g`) may only carry keys that change no entry. What
//! the references read differently from each other is refused: a GNU long name and a PAX path
//! for the same entry, two extension headers of one kind, data after a non-file entry, a
//! regular file whose name ends in `/`, GNU sparse files, unknown types.
//!
//! The reader streams: headers and extension records are read whole (bounded), file data
//! passes through [`Reader::read_data`] in whatever pieces the caller asks for.

use std::io::{self, Read};

use crate::limits::{human, MAX_GNU_LONG_NAME, MAX_PAX_HEADER};
use crate::tree::show;

pub mod header;
pub mod pax;

pub use header::{Kind, BLOCK};

/// Why a tar stream was refused.
#[derive(Debug)]
pub enum TarError {
    /// The stream below failed (or ended inside an entry: `UnexpectedEof`).
    Io(io::Error),
    /// A header or extension record is malformed or unsupported.
    Malformed(String),
    /// An extension header claims more than its limit.
    Limit(String),
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> Self {
        TarError::Io(e)
    }
}

/// One entry, its extension headers applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where its first header (or extension header) starts in the stream.
    pub at: u64,
    /// Its type (never an extension kind).
    pub kind: Kind,
    /// Its path as stored (not normalised).
    pub path: Vec<u8>,
    /// The link target of a hard or symbolic link (empty otherwise).
    pub link: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, whole seconds.
    pub mtime: i64,
    /// Bytes of data (zero unless a regular file).
    pub size: u64,
    /// Device numbers of a device.
    pub dev: (u32, u32),
    /// `SCHILY.xattr.*` records, in record order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What the extension headers before an entry said.
#[derive(Default)]
struct Pending {
    at: Option<u64>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: bool,
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: Option<i64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A strict, streaming reader of one tar stream.
pub struct Reader<R> {
    inner: R,
    /// Bytes consumed so far.
    pos: u64,
    /// Data bytes of the current entry not yet read, and the padding after them.
    left: u64,
    pad: u64,
    done: bool,
}

impl<R: Read> Reader<R> {
    /// Read a tar stream from `inner`.
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            pos: 0,
            left: 0,
            pad: 0,
            done: false,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The stream below (for what follows the end of the archive).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Read exactly `buf.len()` bytes; `Ok(false)` when the stream ended before the first.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, TarError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(eof(self.pos + got as u64)),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.pos += got as u64;
        Ok(true)
    }

    /// Skip `n` bytes.
    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        let mut scratch = [0u8; 4096];
        while n > 0 {
            let k = n.min(scratch.len() as u64) as usize;
            if !self.fill(&mut scratch[..k])? {
                return Err(eof(self.pos));
            }
            n -= k as u64;
        }
        Ok(())
    }

    /// Read up to `buf.len()` bytes of the current entry's data; 0 at its end. A stream that
    /// ends before the data does fails.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(0) => return Err(eof(self.pos)),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        };
        self.pos += n as u64;
        self.left -= n as u64;
        Ok(n)
    }

    /// Read all of the current entry's data into `buf` (which must be that large).
    pub fn read_data_exact(&mut self, buf: &mut [u8]) -> Result<(), TarError> {
        let mut got = 0;
        while got < buf.len() {
            match self.read_data(&mut buf[got..])? {
                0 => return Err(eof(self.pos)),
                n => got += n,
            }
        }
        Ok(())
    }

    /// Read an extension header's data of `size` bytes (within `max`) and its padding.
    fn extension(
        &mut self,
        h: &header::Header,
        at: u64,
        what: &str,
        max: u64,
    ) -> Result<Vec<u8>, TarError> {
        if h.size > max {
            return Err(TarError::Limit(format!(
                "{what} {} (at byte {at}) declares {}, more than the limit of {}",
                show(&h.name),
                human(h.size),
                human(max)
            )));
        }
        // Within the limit: at most a few MiB.
        let mut data = vec![0u8; h.size as usize];
        if !self.fill(&mut data)? && !data.is_empty() {
            return Err(eof(self.pos));
        }
        self.skip(padding(h.size))?;
        Ok(data)
    }

    /// The next entry, or `None` at the end of the archive (a zero block, or the end of the
    /// stream at a header boundary, as both references accept). Skips whatever data of the
    /// previous entry was not read.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.done {
            return Ok(None);
        }
        self.skip(self.left)?;
        self.skip(self.pad)?;
        self.left = 0;
        self.pad = 0;
        let mut p = Pending::default();
        loop {
            let at = self.pos;
            let mut block = [0u8; BLOCK];
            let h = if self.fill(&mut block)? {
                header::parse(&block).map_err(|m| bad_at(at, &block, &m))?
            } else {
                None
            };
            let Some(h) = h else {
                if let Some(first) = p.at {
                    return Err(TarError::Malformed(format!(
                        "extension header at byte {first} is not followed by an entry"
                    )));
                }
                self.done = true;
                return Ok(None);
            };
            p.at.get_or_insert(at);
            let twice = |what: &str| {
                Err(TarError::Malformed(format!(
                    "two {what} headers for one entry (at byte {at})"
                )))
            };
            match h.kind {
                Kind::LongName | Kind::LongLink => {
                    let long = h.kind == Kind::LongName;
                    let what = if long {
                        "GNU long name"
                    } else {
                        "GNU long link"
                    };
                    let data = self.extension(&h, at, what, MAX_GNU_LONG_NAME)?;
                    let v = header::nts(&data).to_vec();
                    let slot = if long {
                        &mut p.long_name
                    } else {
                        &mut p.long_link
                    };
                    if slot.is_some() {
                        return twice(what);
                    }
                    *slot = Some(v);
                }
                Kind::Pax => {
                    if p.pax {
                        return twice("PAX extended");
                    }
                    p.pax = true;
                    let data = self.extension(&h, at, "PAX extended header", MAX_PAX_HEADER)?;
                    apply_pax(&data, &mut p).map_err(|m| bad_at(at, &block, &m))?;
                }
                Kind::PaxGlobal => {
                    // Python's tarfile reads a global header as part of the entry after it.
                    if p.pax || p.long_name.is_some() || p.long_link.is_some() {
                        return Err(bad_at(
                            at,
                            &block,
                            "PAX global header between an entry's extension headers",
                        ));
                    }
                    let data = self.extension(&h, at, "PAX extended header", MAX_PAX_HEADER)?;
                    check_global(&data).map_err(|m| bad_at(at, &block, &m))?;
                }
                _ => return self.entry(h, p, at).map(Some),
            }
        }
    }

    /// Apply the extension headers `p` to the entry header `h` (at `at`) and check the result.
    fn entry(&mut self, h: header::Header, p: Pending, at: u64) -> Result<Entry, TarError> {
        let bad =
            |m: &str| TarError::Malformed(format!("entry {} (at byte {at}): {m}", show(&h.name)));
        if p.long_name.is_some() && p.path.is_some() {
            return Err(bad("both a GNU long name and a PAX path"));
        }
        if p.long_link.is_some() && p.link.is_some() {
            return Err(bad("both a GNU long link and a PAX linkpath"));
        }
        let path = p.path.or(p.long_name).unwrap_or(h.name.clone());
        if path.is_empty() {
            return Err(bad("empty name"));
        }
        let size = p.size.unwrap_or(h.size);
        if size > i64::MAX as u64 {
            return Err(bad("size out of range"));
        }
        if h.kind == Kind::File {
            if path.ends_with(b"/") {
                return Err(bad("a regular file whose name ends in '/'"));
            }
        } else if size != 0 {
            return Err(bad("data after an entry that is not a regular file"));
        }
        let link = match h.kind {
            Kind::Hardlink | Kind::Symlink => p.link.or(p.long_link).unwrap_or(h.link),
            _ => Vec::new(),
        };
        self.left = size;
        self.pad = padding(size);
        Ok(Entry {
            at: p.at.unwrap_or(at),
            kind: h.kind,
            path,
            link,
            mode: h.mode,
            uid: p.uid.unwrap_or(h.uid),
            gid: p.gid.unwrap_or(h.gid),
            mtime: p.mtime.unwrap_or(h.mtime),
            size,
            dev: match h.kind {
                Kind::Char | Kind::Block => h.dev,
                _ => (0, 0),
            },
            xattrs: p.xattrs,
        })
    }
}

/// Bytes of padding after `size` bytes of data.
fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn eof(at: u64) -> TarError {
    TarError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the stream ends inside an entry (at byte {at})"),
    ))
}

/// A refusal naming the header's name field and offset.
fn bad_at(at: u64, block: &[u8; BLOCK], m: &str) -> TarError {
    TarError::Malformed(format!(
        "header {} (at byte {at}): {m}",
        show(header::nts(&block[..100]))
    ))
}

/// Keys that ociboot reads from PAX records; a global header may not set them.
fn entry_key(k: &[u8]) -> bool {
    matches!(
        k,
        b"path" | b"linkpath" | b"size" | b"uid" | b"gid" | b"mtime"
    ) || k.starts_with(b"SCHILY.xattr.")
        || k.starts_with(b"GNU.sparse.")
}

fn apply_pax(data: &[u8], p: &mut Pending) -> Result<(), String> {
    for (k, v) in pax::records(data)? {
        match k {
            b"path" => p.path = Some(pax::path(k, v)?.to_vec()),
            b"linkpath" => p.link = Some(pax::path(k, v)?.to_vec()),
            b"size" => p.size = Some(pax::decimal(k, v, i64::MAX as u64)?),
            // Below u32::MAX: (uid_t)-1 is "leave unchanged" to chown(2).
            b"uid" => p.uid = Some(pax::decimal(k, v, (u32::MAX - 1).into())? as u32),
            b"gid" => p.gid = Some(pax::decimal(k, v, (u32::MAX - 1).into())? as u32),
            b"mtime" => p.mtime = Some(pax::time(k, v)?),
            b"atime" | b"ctime" => {
                pax::time(k, v)?;
            }
            _ if k.starts_with(b"GNU.sparse.") => {
                return Err("unsupported GNU sparse file (PAX GNU.sparse records)".into())
            }
            _ => {
                if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                    p.xattrs.push((name.to_vec(), v.to_vec()));
                }
                // Other keys (comment, uname, gname, hdrcharset, vendor keys) change nothing
                // ociboot keeps; both references ignore unknown ones.
            }
        }
    }
    Ok(())
}

fn check_global(data: &[u8]) -> Result<(), String> {
    for (k, v) in pax::records(data)? {
        if matches!(k, b"atime" | b"ctime") {
            pax::time(k, v)?;
        }
        if entry_key(k) {
            return Err(format!(
                "PAX global header sets {:?}, which would change every entry after it",
                String::from_utf8_lossy(k)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
