//! The tar headers of a layer, checked as they stream past, before the tar parser acts on
//! them. The `tar` crate reads a GNU long name or long link (`L`, `K`) and a PAX extended
//! header (`x`, `g`) into memory whole, whatever size its header declares, and turns GNU sparse
//! maps into a list that grows with the input: a hostile layer claiming GiBs would be held in
//! memory. [`HeaderGuard`] sits between the decompressed stream and the parser and fails the
//! read that completes such a header when its declared size is over the limit, so not a byte
//! of it is read.
//!
//! The guard must see every header at the offset where the parser reads it, or a hostile
//! header would slip past unchecked. It follows a chain of extension headers itself (their own
//! size is never overridden), and the parse loop tells it where the header after each entry
//! is, from the parser's own idea of the entry's size (which a PAX `size` record overrides):
//! [`NextHeader::after`].

use std::cell::Cell;
use std::io::{self, Read};

use crate::error::Error;
use crate::limits::{human, MAX_GNU_LONG_NAME, MAX_PAX_HEADER};
use crate::tree::show;

const BLOCK: u64 = 512;

/// Where the next tar header starts in the stream, shared by the guard and the parse loop;
/// `None` while the parser reads an entry's data (the loop then says where the next one is).
#[derive(Debug)]
pub(super) struct NextHeader(Cell<Option<u64>>);

impl NextHeader {
    /// The stream's first header is at its start.
    pub(super) fn new() -> Self {
        NextHeader(Cell::new(Some(0)))
    }

    /// The entry whose data starts at `data` has `size` bytes: the next header follows it,
    /// rounded up to a whole block.
    pub(super) fn after(&self, data: u64, size: u64) {
        let blocks = size.div_ceil(BLOCK);
        self.0
            .set(blocks.checked_mul(BLOCK).and_then(|b| b.checked_add(data)));
    }
}

/// A reader that checks each tar header it passes on; see the module documentation.
pub(super) struct HeaderGuard<'a, R> {
    inner: R,
    /// Bytes passed on so far.
    pos: u64,
    /// The header being collected (it may arrive in pieces).
    hdr: [u8; BLOCK as usize],
    next: &'a NextHeader,
    what: &'a str,
}

impl<'a, R: Read> HeaderGuard<'a, R> {
    pub(super) fn new(inner: R, next: &'a NextHeader, what: &'a str) -> Self {
        HeaderGuard {
            inner,
            pos: 0,
            hdr: [0; BLOCK as usize],
            next,
            what,
        }
    }

    fn refuse(&self, e: Error) -> io::Error {
        io::Error::other(e)
    }

    /// Judge the complete header at `at`; returns where the next header is, if this one's
    /// size says so (an extension header), or `None` (an entry, or the end of the archive).
    fn check(&self, at: u64) -> io::Result<Option<u64>> {
        if self.hdr.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let h = tar::Header::from_byte_slice(&self.hdr);
        let et = h.entry_type();
        let name = show(&h.path_bytes());
        let (kind, max) = if et.is_gnu_longname() {
            ("GNU long name", MAX_GNU_LONG_NAME)
        } else if et.is_gnu_longlink() {
            ("GNU long link", MAX_GNU_LONG_NAME)
        } else if et.is_pax_local_extensions() || et.is_pax_global_extensions() {
            ("PAX extended header", MAX_PAX_HEADER)
        } else if et.is_gnu_sparse() {
            return Err(self.refuse(Error::Layer(format!(
                "{}: entry {name} (at byte {at}): unsupported tar entry type 'S' (GNU sparse file)",
                self.what
            ))));
        } else {
            return Ok(None);
        };
        let size = h.entry_size().map_err(|e| {
            self.refuse(Error::Layer(format!(
                "{}: {kind} {name} (at byte {at}): bad size: {e}",
                self.what
            )))
        })?;
        if size > max {
            return Err(self.refuse(Error::Limit(format!(
                "{}: {kind} {name} (at byte {at}) declares {}, more than the limit of {}",
                self.what,
                human(size),
                human(max)
            ))));
        }
        Ok(Some(at + BLOCK + size.div_ceil(BLOCK) * BLOCK))
    }
}

impl<R: Read> Read for HeaderGuard<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut off = 0;
        while off < n {
            let Some(at) = self.next.0.get() else { break };
            let here = self.pos + off as u64;
            if here < at {
                let gap = usize::try_from(at - here).unwrap_or(usize::MAX);
                off += gap.min(n - off);
                continue;
            }
            let inside = here - at;
            if inside >= BLOCK {
                return Err(self.refuse(Error::Layer(format!(
                    "{}: internal error: the tar header at byte {at} went past unchecked",
                    self.what
                ))));
            }
            let inside = inside as usize;
            let take = (BLOCK as usize - inside).min(n - off);
            self.hdr[inside..inside + take].copy_from_slice(&buf[off..off + take]);
            off += take;
            if inside + take == BLOCK as usize {
                let next = self.check(at)?;
                self.next.0.set(next);
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u8, name: &str, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_path(name).unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    /// Read `data` through a guard as the tar parser does: the first entry's header (of an
    /// empty entry) whole, then the loop says where the next header is, then the rest in
    /// `piece`-byte reads.
    fn read_through(data: &[u8], piece: usize) -> io::Result<u64> {
        let next = NextHeader::new();
        let mut g = HeaderGuard::new(data, &next, "layer L");
        let mut first = [0u8; BLOCK as usize];
        g.read_exact(&mut first)?;
        next.after(BLOCK, 0);
        let mut buf = vec![0u8; piece];
        let mut total = BLOCK;
        loop {
            let n = g.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    }

    #[test]
    fn extension_headers_within_the_limits_pass_in_any_read_size() {
        let mut data = header(b'0', "ok", 0);
        data.extend(header(b'L', "././@LongLink", 600));
        data.extend([b'a'; 600]);
        data.extend([0u8; 1024 - 600]);
        data.extend(header(b'x', "PaxHeaders/f", 20));
        data.extend([b'p'; 20]);
        data.extend([0u8; 512 - 20]);
        data.extend(header(b'0', "f", 0));
        data.extend([0u8; 1024]);
        for piece in [1, 7, 512, 513, 100_000] {
            assert_eq!(read_through(&data, piece).unwrap(), data.len() as u64);
        }
    }

    #[test]
    fn oversized_extension_headers_and_sparse_files_are_refused_from_their_header() {
        for (kind, size, want) in [
            (b'L', MAX_GNU_LONG_NAME + 1, "GNU long name"),
            (b'K', 3 << 30, "(at byte 512) declares 3 GiB"),
            (b'x', MAX_PAX_HEADER + 1, "PAX extended header"),
            (b'g', 1 << 40, "more than the limit of 1 MiB"),
            (b'S', 10, "GNU sparse"),
        ] {
            let mut data = header(b'0', "ok", 0);
            data.extend(header(kind, "hostile", size));
            data.extend([0u8; 4096]);
            for piece in [1, 512, 4096] {
                let e = read_through(&data, piece).unwrap_err();
                let msg = e.get_ref().map(|e| e.to_string()).unwrap_or_default();
                assert!(
                    msg.starts_with("layer L: ") && msg.contains(want) && msg.contains("/hostile"),
                    "{msg}"
                );
            }
        }
    }
}
