//! Manifests, indexes and configs as a registry or layout could serve them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ociboot_oci::manifest::{self, Parsed, RawManifest};
use ociboot_oci::Sha256Digest;

fuzz_target!(|data: &[u8]| {
    let raw = RawManifest {
        bytes: data.to_vec(),
        digest: Sha256Digest::of(data),
        media_type: None,
    };
    match manifest::parse_manifest(&raw, "fuzz") {
        Ok(Parsed::Manifest(m)) => {
            if manifest::validate_manifest(&m, "fuzz").is_ok() {
                let _ = manifest::parse_config(data, &m, "fuzz");
            }
        }
        Ok(Parsed::Index(i)) => {
            let _ = manifest::select_platform(&i, "linux", "amd64", "fuzz");
        }
        Err(_) => {}
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = s.parse::<ociboot_oci::ImageReference>().map(|r| r.target());
        let _ = ociboot_oci::registry::parse_challenge(s);
    }
});
