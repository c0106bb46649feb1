//! Kernel arguments from the image (`/usr/lib/bootc/kargs.d/*.toml`, as bootc reads them) and
//! how they change on upgrade: only the difference between the old and the new image's kargs.d
//! is applied, so arguments added on the machine stay.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Ctx, Error, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KargsFile {
    kargs: Vec<String>,
    #[serde(rename = "match-architectures")]
    match_architectures: Option<Vec<String>>,
}

/// The kargs an image asks for, from its root filesystem `root`, in file-name order, for this
/// machine's architecture (Rust names: x86_64, aarch64, …).
pub fn image_kargs(root: &Path) -> Result<Vec<String>> {
    image_kargs_for(root, std::env::consts::ARCH)
}

/// [`image_kargs`] for the architecture `arch` (a Rust name) instead of this machine's.
pub fn image_kargs_for(root: &Path, arch: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in kargs_d_files(&root.join(KARGS_D))? {
        out.extend(kargs_file(&f, arch)?.unwrap_or_default());
    }
    Ok(out)
}

/// Where an image keeps its kernel arguments, relative to its root.
pub const KARGS_D: &str = "usr/lib/bootc/kargs.d";

/// The `*.toml` files of a kargs.d directory, in the order they apply (none if it is missing).
pub fn kargs_d_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Ok(Err(e).at("reading", dir)?),
    };
    files.sort();
    Ok(files)
}

/// The kargs of one kargs.d file, split into words, or `None` if its `match-architectures`
/// leaves `arch` out. An error names the file.
pub fn kargs_file(f: &Path, arch: &str) -> Result<Option<Vec<String>>> {
    let text = std::fs::read_to_string(f).at("reading", f)?;
    let k: KargsFile = toml::from_str(&text).map_err(|e| {
        Error::Invalid(format!(
            "/{KARGS_D}/{}: {e}",
            f.file_name().unwrap_or_default().to_string_lossy()
        ))
    })?;
    if k.match_architectures
        .as_ref()
        .is_some_and(|a| !a.iter().any(|x| x == arch))
    {
        return Ok(None);
    }
    Ok(Some(
        k.kargs
            .iter()
            .flat_map(|a| a.split_whitespace().map(str::to_string))
            .collect(),
    ))
}

/// The new command line: `current` minus what the old image asked for and the new one no
/// longer does, plus what the new image asks for and the old one did not.
pub fn upgrade_kargs(
    current: &[String],
    old_image: &[String],
    new_image: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = current
        .iter()
        .filter(|k| !old_image.contains(k) || new_image.contains(k))
        .cloned()
        .collect();
    for k in new_image {
        if !old_image.contains(k) && !out.contains(k) {
            out.push(k.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn upgrade_keeps_local_args() {
        let cur = v(&["root=UUID=x", "rw", "console=ttyS0", "quiet", "local=1"]);
        let old = v(&["console=ttyS0", "quiet"]);
        let new = v(&["console=ttyS1", "quiet", "added"]);
        assert_eq!(
            upgrade_kargs(&cur, &old, &new),
            v(&[
                "root=UUID=x",
                "rw",
                "quiet",
                "local=1",
                "console=ttyS1",
                "added"
            ])
        );
    }

    #[test]
    fn parse_kargs_d() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("usr/lib/bootc/kargs.d");
        std::fs::create_dir_all(&k).unwrap();
        std::fs::write(k.join("20-b.toml"), "kargs = [\"b=1\", \"c\"]\n").unwrap();
        std::fs::write(k.join("10-a.toml"), "kargs = [\"a\"]\n").unwrap();
        std::fs::write(
            k.join("30-arm.toml"),
            "kargs = [\"arm\"]\nmatch-architectures = [\"aarch64\"]\n",
        )
        .unwrap();
        std::fs::write(k.join("README"), "not toml").unwrap();
        assert_eq!(
            image_kargs_for(d.path(), "x86_64").unwrap(),
            v(&["a", "b=1", "c"])
        );
        assert_eq!(
            image_kargs_for(d.path(), "aarch64").unwrap(),
            v(&["a", "b=1", "c", "arm"])
        );
        std::fs::write(k.join("40-bad.toml"), "kargs = [\"x\"]\nunknown = 1\n").unwrap();
        let e = image_kargs_for(d.path(), "x86_64").unwrap_err();
        assert!(e.to_string().contains("40-bad.toml"), "{e}");
    }
}
