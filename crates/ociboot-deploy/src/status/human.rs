//! bootc's human-readable `status` layout, from the typed [`Host`]: one block per slot
//! (staged, booted, rollback, then other deployments), rows right-aligned to the block's
//! heading, `●` on the booted slot, timestamps cut to seconds; `-v` adds ociboot's rows.

use super::{BootEntry, Host};
use crate::health::Outcome;

const STAGED: &str = "Staged image";
const BOOTED: &str = "Booted image";

pub(super) fn human(h: &Host, verbose: bool) -> String {
    let st = &h.status;
    if st.host_type.is_none() {
        return "System is not deployed via ociboot.\n".to_string();
    }
    let slots = [
        (STAGED, st.staged.as_ref()),
        (BOOTED, st.booted.as_ref()),
        ("Rollback image", st.rollback.as_ref()),
    ];
    let others = st
        .other_deployments
        .iter()
        .map(|e| ("Other image", Some(e)));
    let blocks: Vec<String> = slots
        .into_iter()
        .chain(others)
        .filter_map(|(name, e)| e.map(|e| block(name, e, verbose)))
        .collect();
    let mut out = blocks.join("\n");
    if st.rollback_queued {
        out.push_str("\nRollback queued: the rollback image boots next.\n");
    }
    out
}

/// `2026-02-01T12:34:56.789Z` → `2026-02-01T12:34:56Z`.
fn to_seconds(t: &str) -> String {
    t.chars().take(19).collect::<String>() + if t.len() > 19 { "Z" } else { "" }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// One slot's rows, aligned to its own heading as bootc does.
fn block(name: &str, e: &BootEntry, verbose: bool) -> String {
    let width = name.len();
    let img = &e.image;
    let mark = if name == BOOTED { "●" } else { " " };
    let mut rows = vec![format!("{mark} {name:>width$}: {}", img.image)];
    let row = |label: &str, val: String| format!("  {label:>width$}: {val}");
    rows.push(row(
        "Digest",
        format!("{} ({})", img.image_digest, img.architecture),
    ));
    match (&img.version, img.timestamp.as_deref().map(to_seconds)) {
        (Some(ver), Some(ts)) => rows.push(row("Version", format!("{ver} ({ts})"))),
        (Some(ver), None) => rows.push(row("Version", ver.clone())),
        (None, Some(ts)) => rows.push(row("Timestamp", ts)),
        (None, None) => {}
    }
    if let Some(cu) = &e.cached_update {
        rows.push(row(
            "UpdateVersion",
            format!(
                "{} ({})",
                cu.version.as_deref().unwrap_or("-"),
                cu.timestamp.as_deref().unwrap_or("-")
            ),
        ));
        rows.push(row("UpdateDigest", cu.image_digest.to_string()));
    }
    if e.pinned {
        rows.push(row("Pinned", "yes".into()));
    }
    match e.ociboot.boot_counting {
        Some(c) if c.tries_left == 0 => rows.push(row(
            "Boot",
            format!(
                "given up after {} tries (the loader boots the next entry)",
                c.tries_done
            ),
        )),
        Some(c) => rows.push(row(
            "Boot",
            format!(
                "being tried: {} tries left, {} done",
                c.tries_left, c.tries_done
            ),
        )),
        None => {}
    }
    if let Some(h) = &e.ociboot.health {
        let at = to_seconds(&h.at);
        match h.result {
            Outcome::Failed => rows.push(row("Health", format!("failed at {at}: {}", h.summary()))),
            Outcome::Passed if verbose => rows.push(row("Health", format!("passed at {at}"))),
            Outcome::Passed => {}
        }
        if verbose {
            for w in &h.warnings {
                rows.push(row("Warning", format!("{} ({})", w.check, w.reason)));
            }
        }
    }
    if verbose {
        let o = &e.ociboot;
        rows.push(row("StateRoot", o.stateroot.clone()));
        rows.push(row("Deployment", o.id.clone()));
        rows.push(row("Deploy serial", o.deploy_serial.to_string()));
        rows.push(row("Staged", yes_no(name == STAGED)));
        rows.push(row("Kargs", o.kargs.clone()));
        if name == STAGED {
            rows.push(row("Download-only", yes_no(e.download_only)));
        }
    }
    rows.join("\n") + "\n"
}
