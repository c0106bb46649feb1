//! Hostile documents in a real `docker-registry` (put there by hand over its HTTP API): a
//! config and a manifest nested thousands of levels deep, an index whose linux/amd64 entry is
//! not an image manifest; and a registry whose error bodies are full of terminal escapes.

mod common;
mod hostile_http;

use common::*;
use hostile_http::*;
use sha2::Digest as _;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn digest_of(b: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(b))
}

fn get(host: &str, path: &str) -> Vec<u8> {
    let accept = format!("{OCI_MANIFEST}, {OCI_INDEX}");
    let (status, _, body) = http(host, "GET", path, &[("Accept", &accept)], b"");
    assert_eq!(status, 200, "GET {path}");
    body
}

fn put_blob(host: &str, repo: &str, data: &[u8]) -> String {
    let (status, headers, _) = http(
        host,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        b"",
    );
    assert_eq!(status, 202);
    let location = headers
        .iter()
        .find(|(k, _)| k == "location")
        .unwrap()
        .1
        .clone();
    let path = location.trim_start_matches(&format!("http://{host}"));
    let digest = digest_of(data);
    let sep = if path.contains('?') { '&' } else { '?' };
    let ct = [("Content-Type", "application/octet-stream")];
    let (status, _, body) = http(
        host,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        &ct,
        data,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    digest
}

fn put_manifest(host: &str, repo: &str, tag: &str, media_type: &str, doc: &[u8]) -> String {
    let path = format!("/v2/{repo}/manifests/{tag}");
    let (status, _, body) = http(host, "PUT", &path, &[("Content-Type", media_type)], doc);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    digest_of(doc)
}

/// `{"x":[[…]], …rest of doc}`: `doc` (a JSON object) with a field nested `depth` deep.
fn with_deep_field(doc: &[u8], depth: usize) -> Vec<u8> {
    let mut out = format!("{{\"x\":{}{},", "[".repeat(depth), "]".repeat(depth)).into_bytes();
    out.extend_from_slice(&doc[1..]);
    out
}

#[test]
fn deep_json_from_a_real_registry_is_refused_naming_the_blob() {
    let reg = Registry::start(None);
    reg.push(
        &format!("oci:{}:v1", fixtures().join("base").display()),
        "os/base:v1",
        None,
    );
    let host = reg.host();
    let manifest = get(&host, "/v2/os/base/manifests/v1");
    let mut m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let config = get(
        &host,
        &format!(
            "/v2/os/base/blobs/{}",
            m["config"]["digest"].as_str().unwrap()
        ),
    );

    // A config 100 000 levels deep (a registry stores blobs as they are).
    let deep_config = with_deep_field(&config, 100_000);
    let config_digest = put_blob(&host, "os/base", &deep_config);
    m["config"]["digest"] = config_digest.clone().into();
    m["config"]["size"] = deep_config.len().into();
    put_manifest(
        &host,
        "os/base",
        "deep-config",
        OCI_MANIFEST,
        m.to_string().as_bytes(),
    );
    // A manifest 5 000 levels deep (the registry's own parser stops at 10 000).
    let deep_manifest = with_deep_field(&manifest, 5_000);
    let manifest_digest = put_manifest(
        &host,
        "os/base",
        "deep-manifest",
        OCI_MANIFEST,
        &deep_manifest,
    );

    let h = Host::hostile("deep-json");
    h.insecure(&host);
    for (tag, blob) in [
        ("deep-config", &config_digest),
        ("deep-manifest", &manifest_digest),
    ] {
        let r = format!("{host}/os/base:{tag}");
        for verb in ["pull", "inspect"] {
            let err = h.fails(&["image", verb, &r]);
            assert!(
                err.contains(blob.as_str()) && err.contains("nested more than"),
                "image {verb} {tag}: {err}"
            );
        }
        h.assert_store_empty();
    }
    // The ordinary image is still fine.
    h.ok(&["image", "pull", &format!("{host}/os/base:v1")]);
    h.ok(&["image", "inspect", &format!("{host}/os/base:v1")]);
}

#[test]
fn a_missing_platform_shows_what_the_index_lists_in_full() {
    let reg = Registry::start(None);
    reg.push(
        &format!("oci:{}:v1", fixtures().join("base").display()),
        "os/base:v1",
        None,
    );
    let host = reg.host();
    let manifest = get(&host, "/v2/os/base/manifests/v1");
    let (md, ms) = (digest_of(&manifest), manifest.len());
    let entry = |mt: &str, digest: &str, size: usize, platform: &str| {
        format!(r#"{{"mediaType":"{mt}","digest":"{digest}","size":{size},"platform":{platform}}}"#)
    };
    let amd64 = r#"{"os":"linux","architecture":"amd64"}"#;
    let inner = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entry(OCI_MANIFEST, &md, ms, amd64)
    );
    let inner_digest = put_manifest(&host, "os/base", "inner", OCI_INDEX, inner.as_bytes());
    let entries = [
        // linux/amd64, but an index, not an image manifest
        entry(OCI_INDEX, &inner_digest, inner.len(), amd64),
        entry(
            OCI_MANIFEST,
            &md,
            ms,
            r#"{"os":"linux","architecture":"arm64","variant":"v8"}"#,
        ),
        entry(
            OCI_MANIFEST,
            &md,
            ms,
            r#"{"os":"windows","architecture":"amd64","os.version":"10.0.17763.1"}"#,
        ),
    ];
    let outer = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    );
    let outer_digest = put_manifest(&host, "os/base", "nested", OCI_INDEX, outer.as_bytes());
    let h = Host::hostile("platforms");
    h.insecure(&host);
    let err = h.fails(&["image", "pull", &format!("{host}/os/base:nested")]);
    for want in [
        outer_digest.as_str(),
        "no image manifest for linux/amd64",
        &format!("linux/amd64 ({OCI_INDEX}: not an image manifest)"),
        "linux/arm64/v8",
        "windows/amd64 os.version 10.0.17763.1",
    ] {
        assert!(err.contains(want), "{want:?} missing: {err}");
    }
    h.assert_store_empty();
}

/// A screen clear, colours, a forged line, a bell, a bidi override, a C1 CSI, 20 kB of text.
const NASTY: &str = r#"{"errors":[{"code":"DENIED","message":"\u001b[2J\u001b[1;31mALL GOOD\r\nerror: forged\u0007\u202e\u009b31m PADDING"}]}"#;

#[test]
fn registry_error_bodies_reach_the_terminal_escaped_and_cut() {
    let body = NASTY.replace("PADDING", &"A".repeat(20_000)).into_bytes();
    for status in [401u16, 404, 500] {
        let body = body.clone();
        let canned = serve("127.0.0.1", move |_| {
            let ct = vec![("Content-Type".into(), "application/json".into())];
            (status, ct, body.clone())
        });
        let h = Host::hostile("escapes");
        h.insecure(&canned.host);
        let err = h.fails(&["image", "pull", &format!("{}/os/base:v1", canned.host)]);
        let line = err
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or(&err);
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{err:?}"
        );
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "HTTP {status}: {line:?}"
        );
        assert!(
            line.contains("DENIED") && line.contains("ALL GOOD"),
            "{line}"
        );
        assert!(line.len() < 1500, "HTTP {status}: {} bytes", line.len());
    }
}
