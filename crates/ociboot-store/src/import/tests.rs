//! Tests of layer import: operations in stream order, streamed objects, refused layers and
//! the limits that keep an import's memory bounded.

use std::io::Write;

use super::*;
use crate::objects::{ImportStats, ObjectId, INLINE_MAX};
use crate::tree::show;

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
