//! Property tests for tar layer application: random layers built as real tar streams, pulled
//! through an OCI layout into a real store and unpacked, checked against a flat model of
//! layer semantics, and never writing outside the destination.

use std::collections::BTreeMap;
use std::path::Path;

use ociboot_oci::{ImageReference, RegistryOptions};
use ociboot_store::{unpack, NoProgress, Store};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
enum Op {
    File(String, u8, u32),
    Dir(String, u32),
    Symlink(String, String),
    Hardlink(String, String),
    Whiteout(String),
    Opaque(String),
}

#[derive(Debug, Clone, PartialEq)]
enum M {
    File(Vec<u8>, u32),
    Dir(u32),
    Symlink(String),
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_string)
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(name(), 1..4).prop_map(|v| v.join("/"))
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        path(),
        path().prop_map(|p| format!("/{p}")),
        path().prop_map(|p| format!("../../../../{p}")),
        Just("/".to_string()),
        Just("..".to_string()),
        Just("../../../outside".to_string()),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (path(), any::<u8>(), prop::sample::select(vec![0o644u32, 0o755, 0o4755, 0o600])).prop_map(|(p, c, m)| Op::File(p, c, m)),
        3 => (path(), prop::sample::select(vec![0o755u32, 0o700, 0o1777])).prop_map(|(p, m)| Op::Dir(p, m)),
        2 => (path(), target()).prop_map(|(p, t)| Op::Symlink(p, t)),
        1 => (path(), path()).prop_map(|(p, t)| Op::Hardlink(p, t)),
        2 => path().prop_map(Op::Whiteout),
        1 => path().prop_map(Op::Opaque),
    ]
}

fn parent(p: &str) -> Option<&str> {
    p.rfind('/').map(|i| &p[..i])
}

fn ancestors(p: &str) -> Vec<&str> {
    let mut v = Vec::new();
    let mut cur = p;
    while let Some(par) = parent(cur) {
        v.push(par);
        cur = par;
    }
    v
}

/// The flat model. Returns the ops that are inside its domain (no writes through symlinks or
/// files, hardlinks only to files), applying them; the rest are dropped from the layer.
fn model_layer(model: &mut BTreeMap<String, M>, ops: Vec<Op>) -> Vec<Op> {
    let lower: BTreeMap<String, M> = model.clone();
    let mut kept = Vec::new();
    // deletions against the lower layers first (as ociboot and umoci do)
    for op in &ops {
        match op {
            Op::Whiteout(p) => {
                if ancestors(p)
                    .iter()
                    .any(|a| !matches!(lower.get(*a), None | Some(M::Dir(_))))
                {
                    continue;
                }
                model.retain(|k, _| k != p && !k.starts_with(&format!("{p}/")));
                kept.push(op.clone());
            }
            Op::Opaque(p) => {
                if !matches!(model.get(p), Some(M::Dir(_))) {
                    continue;
                }
                if ancestors(p)
                    .iter()
                    .any(|a| !matches!(lower.get(*a), None | Some(M::Dir(_))))
                {
                    continue;
                }
                model.retain(|k, _| !k.starts_with(&format!("{p}/")));
                kept.push(op.clone());
            }
            _ => {}
        }
    }
    for op in ops {
        let p = match &op {
            Op::File(p, ..) | Op::Dir(p, _) | Op::Symlink(p, _) | Op::Hardlink(p, _) => p.clone(),
            _ => continue,
        };
        if ancestors(&p)
            .iter()
            .any(|a| !matches!(model.get(*a), None | Some(M::Dir(_))))
        {
            continue;
        }
        let new = match &op {
            Op::File(_, c, m) => M::File(vec![*c; (*c as usize) * 37], *m),
            Op::Dir(_, m) => M::Dir(*m),
            Op::Symlink(_, t) => M::Symlink(t.clone()),
            Op::Hardlink(_, t) => match model.get(t) {
                Some(f @ M::File(..)) if t != &p => f.clone(),
                _ => continue,
            },
            _ => unreachable!(),
        };
        for a in ancestors(&p) {
            model.entry(a.to_string()).or_insert(M::Dir(0o755));
        }
        match (model.get(&p), &new) {
            (Some(M::Dir(_)), M::Dir(m)) => {
                model.insert(p.clone(), M::Dir(*m));
            }
            _ => {
                model.retain(|k, _| !k.starts_with(&format!("{p}/")));
                model.insert(p.clone(), new);
            }
        }
        kept.push(op);
    }
    kept
}

fn tar_layer(ops: &[Op]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for op in ops {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match op {
            Op::File(p, c, m) => {
                let data = vec![*c; (*c as usize) * 37];
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, &data[..]).unwrap();
            }
            Op::Dir(p, m) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*m);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            Op::Symlink(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                // literal: the builder's append_link would turn "/" into "//"
                h.set_path(p).unwrap();
                h.set_link_name_literal(t).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            Op::Hardlink(p, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
            Op::Whiteout(p) | Op::Opaque(p) => {
                let wh = match op {
                    Op::Whiteout(_) => match p.rfind('/') {
                        Some(i) => format!("{}/.wh.{}", &p[..i], &p[i + 1..]),
                        None => format!(".wh.{p}"),
                    },
                    _ => format!("{p}/.wh..wh..opq"),
                };
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, wh, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn hexd(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_blob(dir: &Path, data: &[u8]) -> String {
    let h = hexd(&Sha256::digest(data));
    std::fs::write(dir.join("blobs/sha256").join(&h), data).unwrap();
    format!("sha256:{h}")
}

/// Write an OCI layout with uncompressed layers; returns its path.
fn layout(dir: &Path, layers: &[Vec<u8>]) -> std::path::PathBuf {
    let l = dir.join("layout");
    std::fs::create_dir_all(l.join("blobs/sha256")).unwrap();
    std::fs::write(l.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diffs = Vec::new();
    for t in layers {
        let d = write_blob(&l, t);
        descs.push(serde_json::json!({"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":d,"size":t.len()}));
        diffs.push(d);
    }
    let config = serde_json::to_vec(&serde_json::json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":diffs}})).unwrap();
    let cd = write_blob(&l, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":config.len()},"layers":descs})).unwrap();
    let md = write_blob(&l, &manifest);
    std::fs::write(
        l.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":md,"size":manifest.len(),"annotations":{"org.opencontainers.image.ref.name":"t"}}]})).unwrap(),
    )
    .unwrap();
    l
}

fn read_back(root: &Path) -> BTreeMap<String, M> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    fn rec(root: &Path, p: &Path, out: &mut BTreeMap<String, M>) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    M::Symlink(std::fs::read_link(e.path()).unwrap().display().to_string()),
                );
            } else if m.is_dir() {
                out.insert(rel, M::Dir(m.mode() & 0o7777));
                rec(root, &e.path(), out);
            } else {
                out.insert(
                    rel,
                    M::File(std::fs::read(e.path()).unwrap(), m.mode() & 0o7777),
                );
            }
        }
    }
    rec(root, root, &mut out);
    out
}

/// Pull the layers through a layout into a fresh store and unpack; Err if refused.
fn run(dir: &Path, layers: &[Vec<u8>]) -> Result<std::path::PathBuf, String> {
    let l = layout(dir, layers);
    let sysroot = dir.join("sysroot");
    std::fs::create_dir_all(&sysroot).unwrap();
    let store = Store::open_write(&sysroot, &|_| {}).unwrap();
    let r: ImageReference = format!("oci:{}:t", l.display()).parse().unwrap();
    let opts = RegistryOptions {
        registries_conf: Default::default(),
        auth: Default::default(),
        timeout: std::time::Duration::from_secs(5),
        min_rate: Default::default(),
    };
    let out = store
        .pull(&r, &opts, &NoProgress)
        .map_err(|e| e.to_string())?;
    let tree = store
        .tree(&out.manifest_digest)
        .map_err(|e| e.to_string())?;
    let dest = dir.join("jail/root");
    std::fs::create_dir_all(dir.join("jail")).unwrap();
    unpack(&store, &tree, &dest).map_err(|e| e.to_string())?;
    let problems = store.fsck(true).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    Ok(dest)
}

proptest! {
    /// Within the model's domain, the unpacked tree is exactly the model's.
    #[test]
    fn layers_apply_like_the_model(layers in prop::collection::vec(prop::collection::vec(op(), 0..12), 1..4)) {
        let mut model = BTreeMap::new();
        let kept: Vec<Vec<Op>> = layers.into_iter().map(|l| model_layer(&mut model, l)).collect();
        let tars: Vec<Vec<u8>> = kept.iter().map(|l| tar_layer(l)).collect();
        let dir = tempfile::tempdir().unwrap();
        let dest = run(dir.path(), &tars).map_err(|e| TestCaseError::fail(format!("refused {kept:?}: {e}")))?;
        let got = read_back(&dest);
        prop_assert_eq!(got, model, "layers {:?}", kept);
    }

    /// Whatever the layers do (writes through symlinks, escapes, loops), nothing is written
    /// outside the destination.
    #[test]
    fn nothing_escapes(layers in prop::collection::vec(prop::collection::vec(op(), 0..12), 1..4)) {
        let tars: Vec<Vec<u8>> = layers.iter().map(|l| tar_layer(l)).collect();
        let dir = tempfile::tempdir().unwrap();
        let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        prop_assert!(before.is_empty());
        let _ = run(dir.path(), &tars);
        let mut top: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        top.sort();
        prop_assert!(top.iter().all(|n| ["jail", "layout", "sysroot"].contains(&n.as_str())), "{:?}", top);
        if dir.path().join("jail").exists() {
            let jail: Vec<String> = std::fs::read_dir(dir.path().join("jail")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            prop_assert!(jail.iter().all(|n| n == "root"), "{:?}", jail);
        }
        prop_assert!(!dir.path().join("outside").exists());
    }
}
