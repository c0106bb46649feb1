//! Sysroots made by hand in a temporary directory for unit tests: deployment directories with
//! origins and entries that name them, without a store, images or kernels. Tests only.

use std::path::Path;

use ociboot_oci::Sha256Digest;

use super::Sysroot;
use crate::bls::{self, Entry};
use crate::origin::Origin;

/// The digest of fake deployment `id` (distinct per id).
pub fn digest(id: &str) -> Sha256Digest {
    let hex: String = format!("{id:0>64}")
        .bytes()
        .map(|b| format!("{:x}", b % 16))
        .collect();
    Sha256Digest::from_hex(&hex).unwrap()
}

pub fn origin(id: &str) -> Origin {
    Origin {
        image: format!("example.com/os:{}", id.replace('.', "-"))
            .parse()
            .unwrap(),
        manifest_digest: digest(id),
        config_digest: digest(id),
        version: None,
        timestamp: None,
        architecture: "amd64".into(),
        stateroot: "default".into(),
        id: id.into(),
        serial: 0,
        kargs: vec!["rw".into()],
        image_kargs: vec![],
        pinned: false,
        cached_update: None,
        deployed_at: "2024-01-01T00:00:00Z".into(),
        kernel: None,
    }
}

/// A sysroot in a new temporary directory with deployments `ids` of stateroot `default`.
pub fn fake_sysroot(ids: &[&str]) -> (tempfile::TempDir, Sysroot) {
    let d = tempfile::tempdir().unwrap();
    let s = Sysroot {
        root: d.path().to_path_buf(),
        boot: d.path().join("boot"),
        run: d.path().join("run/ociboot"),
    };
    std::fs::create_dir_all(&s.run).unwrap();
    for id in ids {
        add_deployment(&s, id, |_| {});
    }
    (d, s)
}

pub fn add_deployment(s: &Sysroot, id: &str, edit: impl FnOnce(&mut Origin)) {
    let root = s.deploy_dir("default").join(id);
    for sub in ["usr/etc", "etc", "var"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let mut o = origin(id);
    edit(&mut o);
    o.write(&s.origin_path("default", id)).unwrap();
}

/// Entries for these deployments, in this order, all with kernel directory `k`.
pub fn write_order(s: &Sysroot, ids: &[&str]) {
    let entries: Vec<Entry> = ids.iter().map(|id| entry(id, "k")).collect();
    bls::write_entries(&s.boot, &entries, || {}).unwrap();
}

pub fn entry(id: &str, kernel_dir: &str) -> Entry {
    Entry {
        title: id.into(),
        version: 0,
        linux: format!("/ociboot/{kernel_dir}/vmlinuz-6.1"),
        initrd: None,
        options: format!("rw ociboot=default/{id}"),
        counter: None,
    }
}

pub fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}
