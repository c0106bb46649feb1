//! The strict reader on hand-made headers: what it accepts and how it reads it, and each
//! refusal with the field it names.

use super::*;

/// A ustar header with a valid checksum; `edit` changes it before the sum is taken.
fn hdr(kind: u8, name: &[u8], size: u64, edit: impl FnOnce(&mut [u8; BLOCK])) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len()].copy_from_slice(name);
    b[100..108].copy_from_slice(b"0000644\0");
    b[108..116].copy_from_slice(b"0001750\0");
    b[116..124].copy_from_slice(b"0000144\0");
    b[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    b[136..148].copy_from_slice(b"14712345670\0");
    b[156] = kind;
    b[257..265].copy_from_slice(b"ustar\x0000");
    edit(&mut b);
    sum(&mut b);
    b
}

fn sum(b: &mut [u8; BLOCK]) {
    b[148..156].copy_from_slice(b"        ");
    let s: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..156].copy_from_slice(format!("{s:06o}\0 ").as_bytes());
}

fn data(d: &[u8]) -> Vec<u8> {
    let mut v = d.to_vec();
    v.resize(d.len().div_ceil(BLOCK) * BLOCK, 0);
    v
}

fn rec(kv: &str) -> String {
    let mut n = kv.len() + 3;
    while format!("{n} {kv}\n").len() != n {
        n += 1;
    }
    format!("{n} {kv}\n")
}

fn pax(kind: u8, body: &[u8]) -> Vec<u8> {
    [
        &hdr(kind, b"PaxHeaders/x", body.len() as u64, |_| {})[..],
        &data(body),
    ]
    .concat()
}

const END: [u8; 1024] = [0; 1024];

/// All entries and their data, or the error.
fn read(stream: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, TarError> {
    let mut r = Reader::new(stream);
    let mut out = Vec::new();
    while let Some(e) = r.next_entry()? {
        let mut d = vec![0u8; e.size as usize];
        r.read_data_exact(&mut d)?;
        out.push((e, d));
    }
    Ok(out)
}

fn refused(stream: &[u8]) -> String {
    match read(stream) {
        Err(TarError::Malformed(m) | TarError::Limit(m)) => m,
        Err(TarError::Io(e)) => e.to_string(),
        Ok(v) => panic!("accepted: {v:?}"),
    }
}

fn file(name: &[u8], body: &[u8]) -> Vec<u8> {
    [&hdr(b'0', name, body.len() as u64, |_| {})[..], &data(body)].concat()
}

#[test]
fn a_plain_archive_reads_with_every_field() {
    let mut s = file(b"etc/motd", b"hello");
    s.extend(hdr(b'2', b"l", 0, |b| b[157..160].copy_from_slice(b"tgt")));
    s.extend(hdr(b'3', b"c", 0, |b| {
        b[329..337].copy_from_slice(b"0000001\0");
        b[337..345].copy_from_slice(b"0000003\0");
    }));
    s.extend(END);
    let v = read(&s).unwrap();
    let (e, d) = &v[0];
    assert_eq!(
        (&e.path[..], d.as_slice()),
        (&b"etc/motd"[..], &b"hello"[..])
    );
    assert_eq!(
        (e.mode, e.uid, e.gid, e.mtime),
        (0o644, 1000, 100, 0o14712345670)
    );
    assert_eq!(
        (v[1].0.kind, &v[1].0.link[..]),
        (Kind::Symlink, &b"tgt"[..])
    );
    assert_eq!(v[2].0.dev, (1, 3));
    // No end blocks: both references accept that too.
    assert_eq!(read(&file(b"f", b"x")).unwrap().len(), 1);
}

#[test]
fn checksums_signed_or_unsigned_pass_and_a_wrong_one_fails() {
    // A high byte in the name: the signed sum differs from the unsigned one.
    let mut b = hdr(b'0', b"\xe9", 0, |_| {});
    let s: i32 = b
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if (148..156).contains(&i) {
                32
            } else {
                i32::from(x as i8)
            }
        })
        .sum();
    b[148..156].copy_from_slice(format!("{s:06o}\0 ").as_bytes());
    assert_eq!(read(&[&b[..], &END].concat()).unwrap().len(), 1);
    let mut b = hdr(b'0', b"f", 0, |_| {});
    b[150] += 1;
    assert!(refused(&[&b[..], &END].concat()).contains("bad header checksum"));
}

#[test]
fn numeric_fields_must_be_well_formed() {
    let field = |at: usize, v: &[u8]| {
        let v = v.to_vec();
        [
            &hdr(b'0', b"f", 0, move |b| {
                b[at..at + v.len()].copy_from_slice(&v)
            })[..],
            &END,
        ]
        .concat()
    };
    // Accepted as both references read them.
    for (at, v, want) in [
        (124, &b"00000000000 "[..], 0u64),
        (124, b"          0\0", 0),
        (124, b"000000000000", 0),
        (136, b"\0\0\0\0\0\0\0\0\0\0\0\0", 0),
        (136, b"\x80\0\0\0\0\0\0\0\0\0\x01\x00", 256),
    ] {
        let e = &read(&field(at, v)).unwrap()[0].0;
        assert_eq!(
            if at == 124 { e.size } else { e.mtime as u64 },
            want,
            "{v:?}"
        );
    }
    for (at, v, why) in [
        (124, &b"00000000008\0"[..], "not an octal number"),
        (124, b"+0000000000\0", "not an octal number"),
        (124, b"0000000_000\0", "not an octal number"),
        (100, b"0644 1\0\0", "not an octal number"),
        (100, b"\x000644\0\0", "not an octal number"),
        (100, b"0644\0abc", "not an octal number"),
        (100, b"        ", "not an octal number"),
        (124, b"\x80\x01\0\0\0\0\0\0\0\0\0\x05", "overflows 64 bits"),
        (
            136,
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
            "negative",
        ),
        (
            124,
            b"\x81\0\0\0\0\0\0\0\0\0\0\x05",
            "negative or not a number",
        ),
        (108, b"\x80\0\0\x01\0\0\0\0", "uid field out of range"),
        (116, b"\x80\0\0\0\xff\xff\xff\xff", "gid field out of range"),
        (
            136,
            b"\x80\0\0\0\x80\0\0\0\0\0\0\0",
            "mtime field out of range",
        ),
        (329, b"zzzzzzz\0", "devmajor field is not an octal number"),
        (257, b"ustar  \0", "ustar prefix"),
    ] {
        let v2 = if at == 257 {
            let mut s = field(345, b"pre");
            let mut b: [u8; BLOCK] = s[..BLOCK].try_into().unwrap();
            b[257..265].copy_from_slice(v);
            sum(&mut b);
            s[..BLOCK].copy_from_slice(&b);
            s
        } else {
            field(at, v)
        };
        let m = refused(&v2);
        assert!(m.contains(why) && m.contains("at byte 0"), "{v:?}: {m}");
    }
}

#[test]
fn types_and_sizes_the_references_read_differently_are_refused() {
    for (b, why) in [
        (
            hdr(b'Z', b"f", 0, |_| {}),
            "unsupported tar entry type \"Z\"",
        ),
        (hdr(b'S', b"f", 0, |_| {}), "GNU sparse"),
        (hdr(b'5', b"d/", 5, |_| {}), "data after an entry"),
        (hdr(b'0', b"d/", 0, |_| {}), "ends in '/'"),
        (hdr(b'0', b"", 0, |_| {}), "empty name"),
        (
            hdr(b'0', b"f", 0, |b| {
                b[257..265].copy_from_slice(b"\0\0\0\0\0\0\0\0")
            }),
            "bad magic",
        ),
    ] {
        let m = refused(&[&b[..], &data(b"hello"), &END].concat());
        assert!(m.contains(why), "{m}");
    }
    // Data cut short, or its padding missing.
    let f = file(b"f", b"hello");
    for cut in [BLOCK + 3, BLOCK + 5, BLOCK + 100, 300] {
        refused(&f[..cut]);
    }
}

#[test]
fn pax_records_apply_and_malformed_ones_fail() {
    let body = [
        rec("path=a/long/name"),
        rec("size=3"),
        rec("uid=4294967294"),
        rec("mtime=1700000000.25"),
        rec("SCHILY.xattr.user.k=v=w"),
        rec("comment=whatever"),
    ]
    .concat();
    let mut s = pax(b'x', body.as_bytes());
    s.extend(file(b"short", b"abc"));
    s.extend(END);
    let (e, d) = &read(&s).unwrap()[0];
    assert_eq!(
        (&e.path[..], e.size, d.as_slice()),
        (&b"a/long/name"[..], 3, &b"abc"[..])
    );
    assert_eq!((e.uid, e.mtime), (u32::MAX - 1, 1700000000));
    assert_eq!(e.xattrs, vec![(b"user.k".to_vec(), b"v=w".to_vec())]);
    for (body, why) in [
        ("11 path=ppp\n".to_string(), "newline where its length"),
        ("10 path=pp".to_string(), "newline"),
        ("99999999999999999999 path=pp\n".to_string(), "overflows"),
        ("999999999999 path=pp\n".to_string(), "runs past"),
        ("10 pathpp\n".to_string(), "no '='"),
        ("6 =pp\n".to_string(), "empty key"),
        ("x1 a=b\n".to_string(), "not a decimal"),
        (rec("size=zz"), "not a decimal number"),
        (rec("size=-5"), "not a decimal number"),
        (rec("size= 5"), "not a decimal number"),
        (rec("uid=4294967295"), "not a decimal number"),
        (rec("mtime=-5"), "not a decimal number"),
        (rec("mtime=1e3"), "not a decimal number"),
        (rec("atime=zz"), "not a decimal number"),
        (rec("path="), "empty"),
        (rec("path=a\0b"), "NUL"),
        (rec("GNU.sparse.major=1"), "sparse"),
        ([rec("path=a"), rec("path=b")].concat(), "comes twice"),
        ([rec("path=a"), "\0\0x".into()].concat(), "NUL before"),
    ] {
        let mut s = pax(b'x', body.as_bytes());
        s.extend(file(b"f", b""));
        s.extend(END);
        let m = refused(&s);
        assert!(m.contains(why), "{body:?}: {m}");
    }
    // NUL padding after the records is fine.
    let mut s = pax(b'x', [rec("path=p"), "\0\0\0".into()].concat().as_bytes());
    s.extend(file(b"f", b""));
    assert_eq!(read(&s).unwrap()[0].0.path, b"p");
}

#[test]
fn extension_headers_combine_only_unambiguously() {
    let long = |k: u8, v: &[u8]| {
        [
            &hdr(k, b"././@LongLink", v.len() as u64, |_| {})[..],
            &data(v),
        ]
        .concat()
    };
    let p = || pax(b'x', rec("path=pp").as_bytes());
    let f = file(b"f", b"");
    // A long name up to its first NUL.
    let ok = [
        long(b'L', b"ab\0cd"),
        long(b'K', b"tgt"),
        hdr(b'2', b"l", 0, |_| {}).to_vec(),
    ]
    .concat();
    let e = &read(&ok).unwrap()[0].0;
    assert_eq!((&e.path[..], &e.link[..]), (&b"ab"[..], &b"tgt"[..]));
    for (s, why) in [
        (
            [long(b'L', b"a"), p(), f.clone()].concat(),
            "both a GNU long name and a PAX path",
        ),
        (
            [p(), long(b'L', b"a"), f.clone()].concat(),
            "both a GNU long name and a PAX path",
        ),
        ([p(), p(), f.clone()].concat(), "two PAX extended headers"),
        (
            [long(b'L', b"a"), long(b'L', b"b"), f.clone()].concat(),
            "two GNU long name headers",
        ),
        ([p(), END.to_vec()].concat(), "not followed by an entry"),
        (long(b'L', b"a"), "not followed by an entry"),
        (
            [pax(b'g', rec("uid=7").as_bytes()), f.clone()].concat(),
            "PAX global header sets \"uid\"",
        ),
        (
            [p(), pax(b'g', b""), f.clone()].concat(),
            "between an entry's extension",
        ),
        (
            [
                pax(b'x', rec("size=5").as_bytes()),
                hdr(b'5', b"d", 0, |_| {}).to_vec(),
                data(b"hello"),
            ]
            .concat(),
            "data after",
        ),
    ] {
        let m = refused(&s);
        assert!(m.contains(why), "{m}");
    }
    // A global header of comments only is fine (git archive writes one).
    let s = [pax(b'g', rec("comment=abc").as_bytes()), f].concat();
    assert_eq!(read(&s).unwrap().len(), 1);
}

#[test]
fn oversized_extension_headers_are_refused_from_their_header() {
    for (k, max) in [
        (b'L', MAX_GNU_LONG_NAME),
        (b'K', MAX_GNU_LONG_NAME),
        (b'x', MAX_PAX_HEADER),
        (b'g', MAX_PAX_HEADER),
    ] {
        let s = hdr(k, b"hostile", max + 1, |_| {});
        match read(&s) {
            Err(TarError::Limit(m)) => assert!(m.contains("/hostile (at byte 0) declares"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
