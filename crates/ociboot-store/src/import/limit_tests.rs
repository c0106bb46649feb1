//! Tests of the limits of a layer import: tar extension entries refused from their header
//! (before a byte of what they claim is read), the reader kept in step with PAX sizes, paths
//! and names beyond the kernel's limits, whiteouts naming no file, and the layer's budgets.

use std::cell::Cell;

use super::*;
use crate::limits::{MAX_DEPTH, MAX_NAME, MAX_PATH, MAX_XATTR_VALUE};

fn dirs() -> (tempfile::TempDir, Staging) {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    for i in 0..256 {
        std::fs::create_dir_all(objects.join(format!("{i:02x}"))).unwrap();
    }
    let staging = Staging::new(&tmp, &objects).unwrap();
    (dir, staging)
}

/// A header block of type `kind` named `name` (at most 100 bytes) declaring `size` bytes.
fn block(kind: u8, name: &[u8], size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::new(kind));
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// An entry: its header, its data, padding to a whole block.
fn entry(kind: u8, name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = block(kind, name, data.len() as u64);
    v.extend_from_slice(data);
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

/// A PAX extended header (`x`) holding `records`.
fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3;
        let mut n = rest + 1;
        while n.to_string().len() + rest != n {
            n = n.to_string().len() + rest;
        }
        body.extend(format!("{n} {k}=").into_bytes());
        body.extend_from_slice(v);
        body.push(b'\n');
    }
    entry(b'x', b"PaxHeaders/e", &body)
}

/// A file `path` (any length, in a PAX record) with `data`.
fn file(path: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = pax(&[("path", path)]);
    v.extend(entry(b'0', b"placeholder", data));
    v
}

const END: [u8; 1024] = [0; 1024];

/// Counts the bytes read from the blob.
struct Counted<'a>(&'a [u8], &'a Cell<usize>);

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.set(self.1.get() + n);
        Ok(n)
    }
}

/// Import `blob` (uncompressed) within `limits`; the result and the bytes read of the blob.
fn import_with(blob: &[u8], limits: Limits) -> (Result<ImportedLayer>, usize) {
    let (_dir, mut staging) = dirs();
    let read = Cell::new(0);
    let r = import_limited(
        Counted(blob, &read),
        Sha256Digest::of(blob),
        blob.len() as u64,
        Compression::None,
        &mut staging,
        "layer L",
        limits,
    );
    match &r {
        Ok(_) => drop(staging.commit().unwrap()),
        Err(_) => staging.abort(),
    }
    (r, read.get())
}

fn import(blob: &[u8]) -> Result<ImportedLayer> {
    import_with(blob, Limits::DEFAULT).0
}

fn limit_err(r: Result<ImportedLayer>) -> String {
    match r {
        Err(Error::Limit(m)) => m,
        Err(e) => panic!("expected a limit error, got {e:?}"),
        Ok(l) => panic!("expected a limit error, imported {:?}", l.ops.len()),
    }
}

fn paths(l: &ImportedLayer) -> Vec<Vec<u8>> {
    l.ops
        .iter()
        .map(|op| match op {
            LayerOp::Put(p, _) | LayerOp::Hardlink(p, _) => p.clone(),
            LayerOp::Whiteout(p) | LayerOp::Opaque(p) => p.clone(),
        })
        .collect()
}

#[test]
fn extension_entries_claiming_too_much_are_refused_before_they_are_read() {
    let big = vec![b'a'; 64 << 20];
    for (kind, what) in [
        (b'L', "GNU long name"),
        (b'K', "GNU long link"),
        (b'x', "PAX extended header"),
        (b'g', "PAX extended header"),
    ] {
        let mut blob = entry(kind, b"././@LongLink", &big);
        blob.extend(entry(b'0', b"f", b"x"));
        blob.extend(END);
        let (r, read) = import_with(&blob, Limits::DEFAULT);
        let m = limit_err(r);
        assert!(
            m.starts_with("layer L: ") && m.contains(what) && m.contains("declares 64 MiB"),
            "{m}"
        );
        // Refused from its header: of the 64 MiB, no more than the stream's buffers were read.
        assert!(read < 1 << 20, "{what}: {read} bytes read");
    }
}

#[test]
fn extension_entries_within_the_limits_are_read() {
    let name = [&[b'n'; MAX_NAME][..]; 15].join(&b'/');
    let mut blob = entry(b'L', b"././@LongLink", &[&name[..], b"\0"].concat());
    blob.extend(entry(b'0', b"short", b"long name"));
    blob.extend(pax(&[("comment", &vec![b'c'; 512 << 10]), ("path", b"p")]));
    blob.extend(entry(b'0', b"placeholder", b"pax"));
    blob.extend(END);
    let l = import(&blob).unwrap();
    assert_eq!(paths(&l), [name, b"p".to_vec()]);
}

#[test]
fn the_reader_follows_sizes_given_by_pax_records() {
    // The header says 0 bytes, a PAX record 1500: the parser reads 1500 bytes of data, which
    // here start with what looks like a hostile header; the reader must not judge those.
    let fake = block(b'L', b"././@LongLink", 1 << 30);
    let data = [&fake[..], &[7u8; 1500 - 512][..]].concat();
    let mut blob = pax(&[("size", b"1500")]);
    blob.extend(block(b'0', b"sized", 0));
    blob.extend_from_slice(&data);
    blob.resize(blob.len().div_ceil(512) * 512, 0);
    let ok = [blob.clone(), END.to_vec()].concat();
    let l = import(&ok).unwrap();
    assert!(
        matches!(&l.ops[..], [LayerOp::Put(p, Node { content: Content::File { size: 1500, .. }, .. })] if p == b"sized")
    );
    // And the real header after that data is judged.
    let at = blob.len();
    blob.extend(entry(b'L', b"././@LongLink", &vec![b'a'; 9000]));
    blob.extend(entry(b'0', b"f", b""));
    blob.extend(END);
    let m = limit_err(import(&blob));
    assert!(
        m.contains(&format!("GNU long name /././@LongLink (at byte {at})")),
        "{m}"
    );
}

#[test]
fn gnu_sparse_files_are_refused_before_their_map_is_read() {
    let mut blob = block(b'S', b"sparse", 0);
    blob.extend(END);
    let err = import(&blob).unwrap_err();
    assert!(
        matches!(&err, Error::Layer(m) if m.contains("layer L") && m.contains("GNU sparse")),
        "{err}"
    );
}

#[test]
fn paths_and_names_beyond_the_kernel_limits_are_refused_naming_the_entry() {
    let deep = |n: usize| vec!["d"; n].join("/").into_bytes();
    let ok = [
        file(&deep(MAX_DEPTH), b""),
        file(&[b'n'; MAX_NAME], b""),
        file(&[&[b'a'; 200][..]; 20].join(&b'/'), b""),
        pax(&[("linkpath", &[b't'; MAX_PATH])]),
        block(b'2', b"link", 0),
    ]
    .concat();
    import(&[ok, END.to_vec()].concat()).unwrap();

    let mut symlink = pax(&[("linkpath", &[b't'; MAX_PATH + 1])]);
    symlink.extend(block(b'2', b"link", 0));
    let mut hardlink = pax(&[("linkpath", &deep(MAX_DEPTH + 1))]);
    hardlink.extend(block(b'1', b"hard", 0));
    let mut xattr = pax(&[("SCHILY.xattr.user.big", &[0; MAX_XATTR_VALUE + 1])]);
    xattr.extend(entry(b'0', b"x", b""));
    for (blob, want) in [
        (file(&deep(MAX_DEPTH + 1), b""), "path /d/d/d"),
        (file(&deep(MAX_DEPTH + 1), b""), "257 components deep"),
        (
            file(&[b'n'; MAX_NAME + 1], b""),
            "256 bytes, more than the limit of 255",
        ),
        (
            file(&[&[b'a'; 200][..]; 21].join(&b'/'), b""),
            "4220 bytes long",
        ),
        (symlink, "entry /link: symlink target of 4096 bytes"),
        (hardlink, "entry /hard: hardlink target /d/d"),
        (xattr, "entry /x: xattr user.big"),
    ] {
        let m = limit_err(import(&[blob, END.to_vec()].concat()));
        assert!(
            m.starts_with("layer L: ") && m.contains(want),
            "{want}: {m}"
        );
    }
}

#[test]
fn whiteouts_naming_no_file_are_hostile() {
    for (name, shown) in [
        (&b"keep/.wh."[..], "''"),
        (b"keep/.wh..", "'.'"),
        (b"keep/.wh...", "'..'"),
    ] {
        let blob = [entry(b'0', name, b""), END.to_vec()].concat();
        let err = import(&blob).unwrap_err();
        assert!(
            matches!(&err, Error::HostilePath(m) if m.contains(shown) && m.contains("(layer L)")),
            "{err}"
        );
    }
    // A real whiteout and an opaque marker still are what they were.
    let blob = [
        entry(b'0', b"keep/.wh..wh..opq", b""),
        entry(b'0', b"keep/.wh.x", b""),
        END.to_vec(),
    ]
    .concat();
    let l = import(&blob).unwrap();
    assert_eq!(
        l.ops,
        [
            LayerOp::Opaque(b"keep".to_vec()),
            LayerOp::Whiteout(b"keep/x".to_vec())
        ]
    );
}

#[test]
fn a_layer_beyond_its_budgets_is_refused_at_the_entry_that_exceeds_them() {
    let blob = |n: usize| {
        let mut v = Vec::new();
        for i in 0..n {
            v.extend(entry(b'0', format!("file{i:06}").as_bytes(), b""));
        }
        v.extend(END);
        v
    };
    let three = Limits {
        entries: 3,
        metadata: 1 << 20,
        ..Limits::DEFAULT
    };
    assert_eq!(import_with(&blob(3), three).0.unwrap().ops.len(), 3);
    let m = limit_err(import_with(&blob(4), three).0);
    assert_eq!(
        m,
        "layer L: more than 3 entries (the limit), at entry /file000003"
    );
    let small = Limits {
        entries: 100,
        metadata: 25,
        ..Limits::DEFAULT
    };
    assert_eq!(import_with(&blob(2), small).0.unwrap().ops.len(), 2);
    let m = limit_err(import_with(&blob(3), small).0);
    assert!(
        m.starts_with("layer L: more than 25 bytes of paths") && m.ends_with("/file000002"),
        "{m}"
    );
}
