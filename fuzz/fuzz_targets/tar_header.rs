//! Raw bytes through ociboot's strict tar reader (`ociboot_store::tarfmt`): as 512-byte header
//! blocks, as PAX records, and as a whole stream. It must never panic, and what it accepts must
//! make sense: a header it parses re-encodes to one that parses to the same fields, PAX records
//! re-serialise to records that parse the same, and every entry of a stream is a real entry
//! (no extension kind, a name, no data unless a file, ids below (uid_t)-1) whose data reads
//! back in full.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ociboot_store::tarfmt::{header, pax, Kind, Reader, BLOCK};

/// A number into a field: octal when it fits, base-256 otherwise.
fn num(f: &mut [u8], v: u64) {
    let w = f.len() - 1;
    if v < 1u64 << (3 * w) {
        f.copy_from_slice(format!("{v:0w$o}\0").as_bytes());
    } else {
        f.fill(0);
        f[0] = 0x80;
        let be = v.to_be_bytes();
        let n = be.len().min(f.len() - 1);
        let len = f.len();
        f[len - n..].copy_from_slice(&be[be.len() - n..]);
    }
}

/// A ustar header holding `h`, when its name and link fit the plain fields.
fn encode(h: &header::Header) -> Option<[u8; BLOCK]> {
    if h.name.len() > 100 || h.link.len() > 100 {
        return None;
    }
    let mut b = [0u8; BLOCK];
    b[..h.name.len()].copy_from_slice(&h.name);
    num(&mut b[100..108], h.mode.into());
    num(&mut b[108..116], h.uid.into());
    num(&mut b[116..124], h.gid.into());
    num(&mut b[124..136], h.size);
    num(&mut b[136..148], h.mtime as u64);
    b[156] = match h.kind {
        Kind::File => b'0',
        Kind::Hardlink => b'1',
        Kind::Symlink => b'2',
        Kind::Char => b'3',
        Kind::Block => b'4',
        Kind::Dir => b'5',
        Kind::Fifo => b'6',
        Kind::LongName => b'L',
        Kind::LongLink => b'K',
        Kind::Pax => b'x',
        Kind::PaxGlobal => b'g',
    };
    b[157..157 + h.link.len()].copy_from_slice(&h.link);
    b[257..265].copy_from_slice(b"ustar\x0000");
    num(&mut b[329..337], h.dev.0.into());
    num(&mut b[337..345], h.dev.1.into());
    b[148..156].fill(b' ');
    let s: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..156].copy_from_slice(format!("{s:06o}\0 ").as_bytes());
    Some(b)
}

fuzz_target!(|data: &[u8]| {
    for block in data.chunks_exact(BLOCK) {
        let block: &[u8; BLOCK] = block.try_into().expect("a block");
        if let Ok(Some(h)) = header::parse(block) {
            if let Some(again) = encode(&h) {
                assert_eq!(header::parse(&again), Ok(Some(h)));
            }
        }
    }
    if let Ok(recs) = pax::records(data) {
        let mut out = Vec::new();
        for (k, v) in &recs {
            let body = [&k[..], b"=", v].concat();
            let mut n = body.len() + 3;
            while format!("{n} ").len() + body.len() + 1 != n {
                n += 1;
            }
            out.extend_from_slice(format!("{n} ").as_bytes());
            out.extend_from_slice(&body);
            out.push(b'\n');
        }
        assert_eq!(pax::records(&out).as_ref(), Ok(&recs));
    }
    let mut r = Reader::new(data);
    let mut buf = vec![0u8; 4096];
    while let Ok(Some(e)) = r.next_entry() {
        assert!(!e.kind.is_extension() && !e.path.is_empty());
        assert!(e.kind == Kind::File || e.size == 0);
        assert!(e.uid != u32::MAX && e.gid != u32::MAX && e.mtime >= 0);
        let mut got = 0u64;
        loop {
            match r.read_data(&mut buf) {
                Ok(0) => {
                    assert_eq!(got, e.size);
                    break;
                }
                Ok(n) => got += n as u64,
                Err(_) => break,
            }
        }
        assert!(r.position() <= data.len() as u64);
    }
});
