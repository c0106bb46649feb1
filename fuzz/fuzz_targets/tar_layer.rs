//! Arbitrary bytes as an uncompressed layer: import must refuse or produce ops that apply to a
//! tree without panicking, and never write outside the store.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ociboot_oci::Compression;
use ociboot_store::{import::import_layer, objects::Staging, Tree};

fn dirs() -> &'static (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    static D: OnceLock<(tempfile::TempDir, std::path::PathBuf, std::path::PathBuf)> =
        OnceLock::new();
    D.get_or_init(|| {
        let t = tempfile::tempdir().expect("tempdir");
        let objects = t.path().join("objects");
        let tmp = t.path().join("tmp");
        std::fs::create_dir(&tmp).expect("tmp");
        for i in 0..256 {
            std::fs::create_dir_all(objects.join(format!("{i:02x}"))).expect("fan-out");
        }
        (t, objects, tmp)
    })
}

fuzz_target!(|data: &[u8]| {
    let (_, objects, tmp) = dirs();
    let Ok(mut staging) = Staging::new(tmp, objects) else {
        return;
    };
    let digest = ociboot_oci::Sha256Digest::of(data);
    match import_layer(
        data,
        digest,
        data.len() as u64,
        Compression::None,
        &mut staging,
        "fuzz",
    ) {
        Ok(layer) => {
            let _ = staging.commit();
            let mut t = Tree::new();
            let _ = t.apply_layer(&layer.ops);
        }
        Err(_) => staging.abort(),
    }
});
