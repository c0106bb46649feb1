//! Test fixtures (compiled for unit tests only): tiny uncompressed tar layers and OCI layout
//! directories to pull them from, so tests exercise the real pull path without a registry.
//! Nothing here is used outside `#[cfg(test)]` code, and it only writes below the directory
//! it is given.

use std::path::Path;

use ociboot_oci::{ImageReference, RegistryOptions, Sha256Digest};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{NoProgress, PullOutcome, Store};

/// An uncompressed tar of regular files (mode 0644, root-owned) and their parent directories.
pub fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", ociboot_oci::digest::hex(&Sha256::digest(data)))
}

/// Write an OCI layout `dir/<tag>` holding one image of these layers; its reference.
pub fn image(dir: &Path, tag: &str, layers: &[Vec<u8>]) -> ImageReference {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    image_with_diff_ids(dir, tag, layers, &diff_ids)
}

/// Like [`image`], with the config claiming `diff_ids` (to build images that must be refused).
pub fn image_with_diff_ids(
    dir: &Path,
    tag: &str,
    layers: &[Vec<u8>],
    diff_ids: &[String],
) -> ImageReference {
    let l = dir.join(tag);
    let blobs = l.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob = |data: &[u8]| {
        let d = sha256(data);
        std::fs::write(blobs.join(&d["sha256:".len()..]), data).unwrap();
        json!({"digest": d, "size": data.len()})
    };
    let descs: Vec<_> = layers
        .iter()
        .map(|t| {
            let mut d = blob(t);
            d["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar");
            d
        })
        .collect();
    let config = json!({"architecture": "amd64", "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.version": tag}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let mut cd = blob(&serde_json::to_vec(&config).unwrap());
    cd["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let manifest = json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cd, "layers": descs});
    let mut md = blob(&serde_json::to_vec(&manifest).unwrap());
    md["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    md["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    let index = json!({"schemaVersion": 2, "manifests": [md]});
    std::fs::write(l.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(l.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    format!("oci:{}:{tag}", l.display()).parse().unwrap()
}

pub fn options() -> RegistryOptions {
    RegistryOptions {
        registries_conf: Default::default(),
        auth: Default::default(),
        timeout: std::time::Duration::from_secs(5),
        min_rate: Default::default(),
    }
}

/// Pull `r` into `store`, which must succeed.
pub fn pull(store: &Store, r: &ImageReference) -> PullOutcome {
    store.pull(r, &options(), &NoProgress).unwrap()
}

/// A fresh writable store in `dir/sysroot`.
pub fn store(dir: &Path) -> Store {
    let sysroot = dir.join("sysroot");
    std::fs::create_dir_all(&sysroot).unwrap();
    Store::open_write(&sysroot, &|h| panic!("lock held by {h}")).unwrap()
}

/// How many object files the store holds.
pub fn object_count(store: &Store) -> usize {
    let mut n = 0;
    store
        .for_each_object(&mut |_, _, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
    n
}

/// A fresh store in `dir` holding one pulled image of one layer of `files`.
pub fn one_image(
    dir: &Path,
    tag: &str,
    files: &[(&str, &[u8])],
) -> (Store, ImageReference, Sha256Digest) {
    let r = image(dir, tag, &[tar(files)]);
    let store = store(dir);
    let d = pull(&store, &r).manifest_digest;
    (store, r, d)
}
