//! Cases of the oracle's corpus around extension headers: PAX records (local and global)
//! and GNU long names and links, well-formed and not.

use super::{end, ext, file, h, rec, ser, Part};

/// A PAX header with `body` before a small file, and a GNU long name/link before one.
pub(super) fn pax_cases() -> Vec<(String, Vec<u8>)> {
    let f = file(b"f", b"content\n", false);
    let with = |kind: u8, body: &[u8], entry: &[Part]| {
        let mut ar = ext(kind, body);
        ar.extend(entry.iter().cloned());
        ar.push(end());
        ser(&ar)
    };
    let r = |kv: &[u8]| rec(kv);
    let mut out = Vec::new();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("ok", r(b"path=pp")),
        ("len+1", b"12 path=pp\n".to_vec()),
        ("len-1", b"10 path=pp\n".to_vec()),
        ("nonl", b"11 path=ppp".to_vec()),
        ("leadzero", b"012 path=pp\n".to_vec()),
        ("lenhuge", b"99999999999999999999 path=pp\n".to_vec()),
        ("lenoverflow", b"999999999999999999999 path=pp\n".to_vec()),
        ("lenneg", b"-11 path=p\n".to_vec()),
        ("noeq", b"10 pathpp\n".to_vec()),
        ("emptykey", b"6 =pp\n".to_vec()),
        ("nolen", b"path=pp\n".to_vec()),
        ("unknown", r(b"foo=bar")),
        ("vendor", r(b"LIBARCHIVE.creationtime=1")),
        (
            "hdrcharset",
            [r(b"hdrcharset=BINARY"), r(b"path=\xff\xfe")].concat(),
        ),
        ("comment", r(b"comment=x")),
        ("nulpad", [r(b"path=pp"), vec![0; 3]].concat()),
        ("nuljunk", [r(b"path=pp"), b"\0\0x".to_vec()].concat()),
        ("trailjunk", [r(b"path=pp"), b"junk".to_vec()].concat()),
        ("dup-path", [r(b"path=pp"), r(b"path=qq")].concat()),
        ("path-empty", r(b"path=")),
        ("path-nul", r(b"path=a\0b")),
        ("path-slash", r(b"path=pp/")),
        ("path-abs", r(b"path=/abs/pp")),
        ("path-dotdot", r(b"path=../pp")),
        ("size-bad", r(b"size=zz")),
        ("size-neg", r(b"size=-5")),
        ("size-plus", r(b"size=+8")),
        ("size-space", r(b"size= 8")),
        ("size-8", r(b"size=8")),
        ("size-7", r(b"size=7")),
        ("size-huge", r(b"size=99999999999999999999999")),
        ("size-i64max", r(b"size=9223372036854775807")),
        ("uid-ok", r(b"uid=4294967295")),
        ("uid-2^32", r(b"uid=4294967296")),
        ("uid-bad", r(b"uid=zz")),
        ("gid-neg", r(b"gid=-1")),
        ("mtime-frac", r(b"mtime=1700000000.999")),
        ("mtime-neg", r(b"mtime=-5.5")),
        ("mtime-exp", r(b"mtime=1e3")),
        ("mtime-dot", r(b"mtime=5.")),
        ("mtime-huge", r(b"mtime=99999999999999999999")),
        ("atime-bad", r(b"atime=zz")),
        ("ctime-ok", r(b"ctime=1.5")),
        ("sparse", r(b"GNU.sparse.major=1")),
        ("xattr", r(b"SCHILY.xattr.user.k=v")),
        ("xattr-emptyname", r(b"SCHILY.xattr.=v")),
        ("linkpath-on-file", r(b"linkpath=zz")),
        ("uname", r(b"uname=\xff")),
    ];
    for (name, body) in &bodies {
        out.push((format!("pax-x/{name}"), with(b'x', body, &f)));
    }
    for (name, body) in bodies.iter().filter(|(n, _)| !n.starts_with("size")) {
        out.push((format!("pax-g/{name}"), with(b'g', body, &f)));
    }
    let sym = vec![h(b'2', b"l", 0, b"t", false)];
    out.push((
        "pax-x/linkpath".into(),
        with(b'x', &r(b"linkpath=tt"), &sym),
    ));
    out.push((
        "pax-x/linkpath-empty".into(),
        with(b'x', &r(b"linkpath="), &sym),
    ));
    out.push((
        "pax-x/size-on-dir".into(),
        with(
            b'x',
            &r(b"size=5"),
            &[h(b'5', b"d/", 0, b"", false), Part::D(b"hello".to_vec())],
        ),
    ));
    out.push(("pax-x/then-end".into(), with(b'x', &r(b"path=pp"), &[])));
    let two = [
        ext(b'x', &r(b"path=pp")),
        ext(b'x', &r(b"path=qq")),
        f.clone(),
        vec![end()],
    ]
    .concat();
    out.push(("pax-x/twice".into(), ser(&two)));
    let gl = |v: &[u8]| ext(b'L', v);
    for (name, v) in [
        ("ok", &b"longname\0"[..]),
        ("unterminated", b"longname"),
        ("nul-inside", b"long\0name"),
        ("empty", b""),
        ("only-nul", b"\0"),
        ("slash", b"dir/\0"),
        ("abs", b"/abs/long\0"),
    ] {
        out.push((
            format!("gnu-L/{name}"),
            ser(&[gl(v), f.clone(), vec![end()]].concat()),
        ));
        out.push((
            format!("gnu-K/{name}"),
            ser(&[ext(b'K', v), sym.clone(), vec![end()]].concat()),
        ));
    }
    let big = vec![b'n'; 9000];
    out.push((
        "gnu-L/over-limit".into(),
        ser(&[gl(&big), f.clone(), vec![end()]].concat()),
    ));
    out.push((
        "gnu-L/twice".into(),
        ser(&[gl(b"a\0"), gl(b"b\0"), f.clone(), vec![end()]].concat()),
    ));
    out.push((
        "gnu-L/then-pax".into(),
        ser(&[
            gl(b"a\0"),
            ext(b'x', &r(b"path=pp")),
            f.clone(),
            vec![end()],
        ]
        .concat()),
    ));
    out.push((
        "gnu-L/after-pax".into(),
        ser(&[
            ext(b'x', &r(b"path=pp")),
            gl(b"a\0"),
            f.clone(),
            vec![end()],
        ]
        .concat()),
    ));
    out.push((
        "gnu-L/then-end".into(),
        ser(&[gl(b"a\0"), vec![end()]].concat()),
    ));
    out.push((
        "gnu-L/on-dir".into(),
        ser(&[gl(b"dd/\0"), vec![h(b'5', b"x/", 0, b"", true), end()]].concat()),
    ));
    out
}
