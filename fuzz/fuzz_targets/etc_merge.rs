//! The /etc three-way merge on hostile trees. The input describes three small trees (the
//! booted image's pristine /etc, the live /etc, the new image's /etc): files, directories,
//! FIFOs, modes, and symlinks absolute and relative, with `..`, into a canary directory
//! beside them, file↔directory conflicts. The merge may refuse (a conflict, a symlink in the
//! way), but must never panic, never change anything but the new /etc (the canary, the
//! pristine and the live trees are hashed before and after), and give the same result twice.

#![no_main]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use ociboot_deploy::etcmerge;
use ociboot_deploy::fstree::{self, Kind};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const MODES: [u32; 4] = [0o644, 0o600, 0o755, 0o4755];

/// One operation of the input: in `tree` (0 pristine, 1 live, 2 new), at `path`, make `what`.
fn ops(data: &[u8]) -> Vec<(usize, String, u8, u8)> {
    data.chunks_exact(4)
        .take(48)
        .map(|c| {
            let tree = (c[0] % 3) as usize;
            let depth = 1 + (c[0] / 3 % 3) as usize;
            let path: Vec<&str> = (0..depth)
                .map(|i| NAMES[((c[1] >> (2 * i)) & 3) as usize])
                .collect();
            (tree, path.join("/"), c[2], c[3])
        })
        .collect()
}

/// A symlink target: into the canary (absolute, or relative with enough `..` to leave the
/// tree), inside the tree, dangling, or `.`/`..` themselves.
fn target(canary: &Path, depth: usize, b: u8) -> PathBuf {
    match b % 8 {
        0 => canary.to_path_buf(),
        1 => canary.join("secret"),
        2 => PathBuf::from(format!("{}canary", "../".repeat(depth))),
        3 => PathBuf::from(format!("{}canary/sub", "../".repeat(depth + 1))),
        4 => PathBuf::from(".."),
        5 => PathBuf::from("."),
        6 => PathBuf::from(NAMES[(b as usize / 8) % 4]),
        _ => PathBuf::from("/nonexistent/x"),
    }
}

/// Build the three trees under `base` (with the canary beside them).
fn build(base: &Path, data: &[u8]) {
    let canary = base.join("canary");
    std::fs::create_dir_all(canary.join("sub")).unwrap();
    std::fs::write(canary.join("secret"), b"host").unwrap();
    std::fs::write(canary.join("sub/file"), b"host").unwrap();
    let trees = ["orig", "live", "new"].map(|t| base.join(t));
    for t in &trees {
        std::fs::create_dir_all(t).unwrap();
    }
    for (tree, rel, what, arg) in ops(data) {
        let root = &trees[tree];
        let p = root.join(&rel);
        // Parents as directories where nothing else stands.
        let mut ok = true;
        let mut at = root.clone();
        for c in Path::new(&rel)
            .parent()
            .into_iter()
            .flat_map(|p| p.components())
        {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => ok = false,
                Err(_) => std::fs::create_dir(&at).unwrap(),
            }
            if !ok {
                break;
            }
        }
        if !ok || std::fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        let depth = rel.matches('/').count() + 1;
        match what % 5 {
            0 | 1 => {
                std::fs::write(&p, [arg % 4]).unwrap();
                let mode = MODES[(what as usize / 5) % 4];
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            2 => {
                std::fs::create_dir(&p).unwrap();
                let mode = [0o755, 0o700][(arg % 2) as usize];
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            3 => std::os::unix::fs::symlink(target(&canary, depth, arg), &p).unwrap(),
            _ => rustix::fs::mknodat(
                rustix::fs::CWD,
                &p,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap(),
        }
    }
}

/// Everything under `p` (not followed): names, types, modes, contents, link targets.
fn fingerprint(p: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![p.to_path_buf()];
    while let Some(d) = todo.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        let body = if m.file_type().is_symlink() {
            std::fs::read_link(&d)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if m.is_file() {
            std::fs::read(&d).unwrap()
        } else {
            Vec::new()
        };
        out.insert(d.strip_prefix(p).unwrap().to_path_buf(), (m.mode(), body));
        if m.is_dir() {
            for e in std::fs::read_dir(&d).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    out
}

/// Merge in a fresh directory: the outcome (with the directory's name taken out) and the
/// new /etc as a scan.
fn run(data: &[u8]) -> (String, Vec<(PathBuf, String)>) {
    let t = tempfile::tempdir().unwrap();
    let base = t.path();
    build(base, data);
    let outside: Vec<_> = ["canary", "orig", "live"]
        .iter()
        .map(|n| fingerprint(&base.join(n)))
        .collect();
    let r = etcmerge::merge(&base.join("orig"), &base.join("live"), &base.join("new"));
    for (n, before) in ["canary", "orig", "live"].iter().zip(&outside) {
        assert_eq!(
            &fingerprint(&base.join(n)),
            before,
            "the merge changed {n}: {r:?}"
        );
    }
    let names: Vec<_> = std::fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, ["canary", "live", "new", "orig"], "{r:?}");
    let prefix = base.display().to_string();
    let outcome = match &r {
        Ok(s) => format!("{s:?}"),
        Err(e) => e.to_string(),
    }
    .replace(&prefix, "<T>");
    let scan = fstree::scan(&base.join("new")).unwrap();
    let new = scan
        .into_iter()
        .map(|(p, e)| {
            let kind = match e.kind {
                Kind::Symlink(t) => {
                    format!("-> {}", t.display().to_string().replace(&prefix, "<T>"))
                }
                k => format!("{k:?}"),
            };
            (p, format!("{kind} {:o} {}:{}", e.mode, e.uid, e.gid))
        })
        .collect();
    (outcome, new)
}

fuzz_target!(|data: &[u8]| {
    let first = run(data);
    let second = run(data);
    assert_eq!(first, second, "the merge is not deterministic");
});
