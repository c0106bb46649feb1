//! Hostile documents and config files: JSON nested 100 000 deep in a manifest, index or
//! config; index entries that look alike; malformed or world-readable auth files.

mod common;

use common::*;
use ociboot_oci::manifest::{
    parse_config, parse_manifest, select_platform, select_platform_of, Parsed, RawManifest,
};
use ociboot_oci::oci_spec::image::{ImageIndex, ImageManifest};
use ociboot_oci::{AuthFiles, Sha256Digest};

const DIGEST: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

fn manifest_json(extra: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",{extra}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"{DIGEST}"}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":3,"digest":"{DIGEST}"}}]}}"#
    )
}

fn index_json(extra: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",{extra}"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":3,"digest":"{DIGEST}","platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
    )
}

fn config_json(extra: &str) -> String {
    format!(
        r#"{{"architecture":"amd64","os":"linux",{extra}"rootfs":{{"type":"layers","diff_ids":["{DIGEST}"]}}}}"#
    )
}

/// `"x":[[[…]]],` nested `depth` deep (the object around it is one more level).
fn deep(depth: usize) -> String {
    format!(r#""x":{}{},"#, "[".repeat(depth), "]".repeat(depth))
}

fn raw(s: &str) -> RawManifest {
    RawManifest {
        bytes: s.as_bytes().to_vec(),
        digest: Sha256Digest::of(s.as_bytes()),
        media_type: None,
    }
}

#[test]
fn deep_json_is_refused_when_parsed_naming_the_blob() {
    for doc in [manifest_json(&deep(100_000)), index_json(&deep(100_000))] {
        let r = raw(&doc);
        let e = parse_manifest(&r, "reg.example/os:1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("reg.example/os:1"), "{e}");
        assert!(e.contains(&r.digest.to_string()), "{e}");
        assert!(e.contains("nested"), "{e}");
    }
    let m: ImageManifest = serde_json::from_str(&manifest_json("")).unwrap();
    let cfg = config_json(&deep(100_000));
    let e = parse_config(cfg.as_bytes(), &m, "reg.example/os:1")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("reg.example/os:1") && e.contains(DIGEST) && e.contains("nested"),
        "{e}"
    );
}

/// What the parsers accept, any later reader (`inspect`'s `serde_json::Value`, whose
/// recursion limit is 128) can read.
#[test]
fn what_is_accepted_can_be_read_again() {
    let m: ImageManifest = serde_json::from_str(&manifest_json("")).unwrap();
    let mut accepted = 0;
    for depth in [1, 10, 40, 60, 62, 63, 64, 100, 126, 127, 200, 1000] {
        for doc in [manifest_json(&deep(depth)), index_json(&deep(depth))] {
            if parse_manifest(&raw(&doc), "img").is_ok() {
                accepted += 1;
                serde_json::from_str::<serde_json::Value>(&doc).unwrap();
            }
        }
        let cfg = config_json(&deep(depth));
        if parse_config(cfg.as_bytes(), &m, "img").is_ok() {
            serde_json::from_str::<serde_json::Value>(&cfg).unwrap();
        }
    }
    assert!(accepted >= 8, "ordinary nesting is refused");
    // Nesting inside strings is no nesting at all.
    let doc = manifest_json(&format!(
        r#""x":"{}\"{}","#,
        "[".repeat(5000),
        "{".repeat(5000)
    ));
    assert!(matches!(
        parse_manifest(&raw(&doc), "img"),
        Ok(Parsed::Manifest(_))
    ));
}

fn entry(platform: &str, media_type: &str) -> String {
    format!(r#"{{"mediaType":"{media_type}","size":3,"digest":"{DIGEST}","platform":{platform}}}"#)
}

const M: &str = "application/vnd.oci.image.manifest.v1+json";
const I: &str = "application/vnd.oci.image.index.v1+json";

#[test]
fn a_missing_platform_shows_every_entry_in_full() {
    let entries = [
        // what was asked for, but a nested index
        entry(r#"{"os":"linux","architecture":"amd64"}"#, I),
        // almost: a trailing space, a variant, an os.version
        entry(r#"{"os":"linux ","architecture":"amd64"}"#, M),
        entry(r#"{"os":"linux","architecture":"arm64","variant":"v8"}"#, M),
        entry(
            r#"{"os":"windows","architecture":"amd64","os.version":"10.0.17763.1"}"#,
            M,
        ),
        // escapes in a platform string are not printed raw
        entry(r#"{"os":"\u001b[2Jlinux","architecture":"amd64"}"#, M),
    ];
    let idx = format!(
        r#"{{"schemaVersion":2,"mediaType":"{I}","manifests":[{}]}}"#,
        entries.join(",")
    );
    let index: ImageIndex = serde_json::from_str(&idx).unwrap();
    // Without the bytes, oci-spec's parse loses os.version; the rest is there.
    let e = select_platform(&index, "linux", "amd64", "img")
        .unwrap_err()
        .to_string();
    assert!(e.contains(I) && e.contains("not an image manifest"), "{e}");
    assert!(
        e.contains("\"linux \"/amd64") && e.contains("linux/arm64/v8"),
        "{e}"
    );
    let e = select_platform_of(&raw(&idx), &index, "linux", "amd64", "img")
        .unwrap_err()
        .to_string();
    assert!(e.contains("img") && e.contains("linux/amd64"), "{e}");
    assert!(e.contains(&raw(&idx).digest.to_string()), "{e}");
    assert!(e.contains(I) && e.contains("not an image manifest"), "{e}");
    assert!(
        e.contains("\"linux \"/amd64"),
        "trailing space invisible: {e}"
    );
    assert!(e.contains("linux/arm64/v8"), "{e}");
    assert!(
        e.contains("windows/amd64") && e.contains("10.0.17763.1"),
        "{e}"
    );
    assert!(!e.chars().any(char::is_control), "{e:?}");
}

fn lookup_err(text: &str) -> String {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("auth.json");
    std::fs::write(&f, text).unwrap();
    let files = AuthFiles {
        files: vec![f.clone()],
    };
    let e = files
        .lookup("reg.example", "os/app")
        .expect_err(text)
        .to_string();
    assert!(e.contains(&f.display().to_string()), "{e}");
    e
}

#[test]
fn malformed_auth_files_never_echo_a_credential() {
    let b = b64_creds();
    let colonless = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}{PASS}"))
    };
    for text in [
        format!(r#"{{"auths":{{"reg.example":"{b}"}}}}"#),
        format!(r#"{{"auths":"{b}"}}"#),
        format!(r#"{{"auths":{{"reg.example":{{"auth":"{b}!"}}}}}}"#),
        format!(r#"{{"auths":{{"reg.example":{{"auth":"{b}"}}}}}} {b}"#),
        format!(r#"{{"auths":{{"reg.example":{{"auth":["{b}"]}}}}}}"#),
        format!(r#"{{"auths":{{"reg.example":{{"auth":"{b}"#),
        format!(r#"{{"auths":{{"reg.example":{{"username":"{USER}","password":["{PASS}"]}}}}}}"#),
        format!(r#"{{"auths":{{"reg.example":{{"username":"{USER}:{PASS}"}}}}}}"#),
        format!(r#"{{"auths":{{"reg.example":{{"auth":"{colonless}"}}}}}}"#),
        format!(r#"[{{"auth":"{b}"}}]"#),
        format!(r#"{{"auths":{{"reg.example":{{"auth":"{b}","auth":"{b}"}}}}}}"#),
    ] {
        let e = lookup_err(&text);
        assert_no_secret(&format!("the error for {text}"), &e);
        assert!(!e.contains(&colonless), "{e}");
    }
}

#[test]
fn an_auth_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("auth.json");
    std::fs::write(
        &f,
        format!(
            r#"{{"auths":{{"reg.example":{{"auth":"{}"}}}}}}"#,
            b64_creds()
        ),
    )
    .unwrap();
    let files = AuthFiles {
        files: vec![f.clone()],
    };
    for (mode, warned) in [(0o644, true), (0o640, true), (0o604, true), (0o600, false)] {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        let (c, logs) = capture_logs(|| files.lookup("reg.example", "os/app"));
        assert_eq!(c.unwrap().unwrap().password, PASS);
        let logs = logs.join("\n");
        assert_no_secret("the log", &logs);
        let named = logs.contains("WARN") && logs.contains(&f.display().to_string());
        assert_eq!(named, warned, "mode {mode:o}: {logs}");
    }
}
