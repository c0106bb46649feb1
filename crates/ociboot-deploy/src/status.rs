//! `status`: bootc's `org.containers.bootc/v1` `BootcHost` object, as JSON (compact, keys
//! sorted, like bootc's canonical JSON), YAML, or bootc's human layout.

use serde_json::{json, Value};

use crate::origin::CachedUpdate;
use crate::sysroot::{Deployment, State};

fn image_ref(d: &Deployment) -> Value {
    json!({"image": d.origin.image.image, "transport": d.origin.image.transport.as_str()})
}

fn cached(d: &Deployment, c: &CachedUpdate) -> Value {
    json!({
        "image": image_ref(d),
        "version": c.version,
        "timestamp": c.timestamp,
        "imageDigest": c.manifest_digest.to_string(),
        "architecture": c.architecture,
    })
}

fn boot_entry(d: &Deployment, download_only: bool) -> Value {
    let o = &d.origin;
    let cached_update = o
        .cached_update
        .as_ref()
        .filter(|c| c.manifest_digest != o.manifest_digest)
        .map(|c| cached(d, c));
    json!({
        "image": {
            "image": image_ref(d),
            "version": o.version,
            "timestamp": o.timestamp,
            "imageDigest": o.manifest_digest.to_string(),
            "architecture": o.architecture,
        },
        "cachedUpdate": cached_update,
        "incompatible": false,
        "pinned": o.pinned,
        "softRebootCapable": false,
        "downloadOnly": download_only,
        "store": "ociboot",
        "ostree": null,
        "composefs": null,
        "ociboot": {
            "stateroot": d.stateroot,
            "id": d.id,
            "deploySerial": o.serial,
            "root": d.root.display().to_string(),
            "kargs": o.kargs.join(" "),
        },
    })
}

/// The host object. `booted_only` keeps only the booted slot (`--booted`).
pub fn host(state: &State, booted_only: bool) -> Value {
    let booted = state.booted();
    let rollback = if booted_only { None } else { state.rollback() };
    let staged = if booted_only {
        None
    } else {
        state.staged.as_ref()
    };
    let spec_image = staged
        .map(|(d, _)| image_ref(d))
        .or_else(|| booted.map(image_ref));
    let mut others = Vec::new();
    if !booted_only {
        for (_, d) in &state.entries {
            let k = d.key();
            if Some(k.clone()) != booted.map(Deployment::key)
                && Some(k) != rollback.map(Deployment::key)
            {
                others.push(boot_entry(d, false));
            }
        }
    }
    let mut status = json!({
        "staged": staged.map(|(d, i)| boot_entry(d, i.locked)),
        "booted": booted.map(|d| boot_entry(d, false)),
        "rollback": rollback.map(|d| boot_entry(d, false)),
        "rollbackQueued": state.rollback_queued(),
        "type": booted.map(|_| "bootcHost"),
        "usrOverlay": null,
        "readOnly": false,
    });
    if !others.is_empty() {
        status["otherDeployments"] = Value::Array(others);
    }
    json!({
        "apiVersion": "org.containers.bootc/v1",
        "kind": "BootcHost",
        "metadata": {"name": "host"},
        "spec": {
            "image": spec_image,
            "bootOrder": if state.rollback_queued() { "rollback" } else { "default" },
        },
        "status": status,
    })
}

/// Compact JSON with sorted keys (serde_json's map is ordered).
pub fn to_json(v: &Value) -> String {
    v.to_string()
}

/// YAML for a JSON value: block style, strings double-quoted where YAML would misread them.
pub fn to_yaml(v: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => {
                let plain = !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./@+:".contains(c))
                    && !s.contains(": ")
                    && !s.ends_with(':')
                    && !matches!(
                        s.as_str(),
                        "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
                    )
                    && s.parse::<f64>().is_err()
                    && !s.starts_with(['-', ':', '@', '.']);
                if plain {
                    s.clone()
                } else {
                    Value::String(s.clone()).to_string()
                }
            }
            _ => unreachable!("only scalars"),
        }
    }
    fn rec(v: &Value, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match x {
                        Value::Object(o) if !o.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            rec(x, indent + 2, out);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            rec(x, indent, out);
                        }
                        Value::Object(_) => out.push_str(&format!("{pad}{k}: {{}}\n")),
                        Value::Array(_) => out.push_str(&format!("{pad}{k}: []\n")),
                        _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(x))),
                    }
                }
            }
            Value::Array(a) => {
                for x in a {
                    match x {
                        Value::Object(_) | Value::Array(_) => {
                            let mut inner = String::new();
                            rec(x, indent + 2, &mut inner);
                            let trimmed = inner.trim_start();
                            out.push_str(&format!("{pad}- {trimmed}"));
                        }
                        _ => out.push_str(&format!("{pad}- {}\n", scalar(x))),
                    }
                }
            }
            _ => out.push_str(&format!("{pad}{}\n", scalar(v))),
        }
    }
    let mut out = String::new();
    rec(v, 0, &mut out);
    out
}

/// bootc's human-readable layout.
pub fn human(v: &Value, verbose: bool) -> String {
    let st = &v["status"];
    if st["type"].is_null() {
        return "System is not deployed via ociboot.\n".to_string();
    }
    let mut blocks = Vec::new();
    let slots: Vec<(&str, &Value, bool)> = {
        let mut s = vec![
            ("Staged image", &st["staged"], false),
            ("Booted image", &st["booted"], true),
            ("Rollback image", &st["rollback"], false),
        ];
        if let Some(a) = st["otherDeployments"].as_array() {
            for o in a {
                s.push(("Other image", o, false));
            }
        }
        s
    };
    for (name, e, booted) in slots {
        if e.is_null() {
            continue;
        }
        // Each block aligns its rows to its own heading, as bootc does.
        let width = name.len();
        let img = &e["image"];
        let transport = img["image"]["transport"].as_str().unwrap_or("registry");
        let name_s = img["image"]["image"].as_str().unwrap_or("");
        let shown = if transport == "registry" {
            name_s.to_string()
        } else {
            format!("{transport}:{name_s}")
        };
        let mark = if booted { "●" } else { " " };
        let mut rows = vec![format!("{mark} {name:>width$}: {shown}")];
        let row = |label: &str, val: String| format!("  {label:>width$}: {val}");
        rows.push(row(
            "Digest",
            format!(
                "{} ({})",
                img["imageDigest"].as_str().unwrap_or(""),
                img["architecture"].as_str().unwrap_or("")
            ),
        ));
        let ts = img["timestamp"]
            .as_str()
            .map(|t| t.chars().take(19).collect::<String>() + if t.len() > 19 { "Z" } else { "" });
        match (img["version"].as_str(), ts) {
            (Some(ver), Some(ts)) => rows.push(row("Version", format!("{ver} ({ts})"))),
            (Some(ver), None) => rows.push(row("Version", ver.to_string())),
            (None, Some(ts)) => rows.push(row("Timestamp", ts)),
            (None, None) => {}
        }
        let cu = &e["cachedUpdate"];
        if !cu.is_null() {
            rows.push(row(
                "UpdateVersion",
                format!(
                    "{} ({})",
                    cu["version"].as_str().unwrap_or("-"),
                    cu["timestamp"].as_str().unwrap_or("-")
                ),
            ));
            rows.push(row(
                "UpdateDigest",
                cu["imageDigest"].as_str().unwrap_or("").to_string(),
            ));
        }
        if e["pinned"].as_bool() == Some(true) {
            rows.push(row("Pinned", "yes".into()));
        }
        if verbose {
            rows.push(row(
                "StateRoot",
                e["ociboot"]["stateroot"].as_str().unwrap_or("").into(),
            ));
            rows.push(row(
                "Deployment",
                e["ociboot"]["id"].as_str().unwrap_or("").into(),
            ));
            rows.push(row(
                "Deploy serial",
                e["ociboot"]["deploySerial"].to_string(),
            ));
            rows.push(row(
                "Staged",
                if name == "Staged image" {
                    "yes".into()
                } else {
                    "no".into()
                },
            ));
            rows.push(row(
                "Kargs",
                e["ociboot"]["kargs"].as_str().unwrap_or("").into(),
            ));
            if name == "Staged image" {
                rows.push(row(
                    "Download-only",
                    if e["downloadOnly"].as_bool() == Some(true) {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                ));
            }
        }
        blocks.push(rows.join("\n") + "\n");
    }
    let mut out = blocks.join("\n");
    if st["rollbackQueued"].as_bool() == Some(true) {
        out.push_str("\nRollback queued: the rollback image boots next.\n");
    }
    out
}
