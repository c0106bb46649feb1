//! Kernel arguments from the image (`/usr/lib/bootc/kargs.d/*.toml`, as bootc reads them) and
//! how they change on upgrade: only the difference between the old and the new image's kargs.d
//! is applied, so arguments added on the machine stay.

use std::io::Read as _;
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
///
/// The files are the image's: the directory is reached without following a symlink, each file
/// is opened as a chroot would (a symlink resolved inside the image), must be a regular file of
/// at most [`MAX_KARGS_FILE`] bytes, and every argument must be one argument on one line that
/// does not set a key the boot path owns (`ociboot=`, `init=`).
pub fn image_kargs_for(root: &Path, arch: &str) -> Result<Vec<String>> {
    use ociboot_fs::beneath::{Kind, Root};
    let r = Root::open(root)?;
    let mut out = Vec::new();
    if r.stat(KARGS_D)? != Some(Kind::Dir) {
        return Ok(out);
    }
    for name in r.list(KARGS_D)? {
        let rel = Path::new(KARGS_D).join(&name);
        if rel.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let mut text = String::new();
        r.open_in_root(&rel)?
            .take(MAX_KARGS_FILE + 1)
            .read_to_string(&mut text)
            .at("reading", root.join(&rel))?;
        if text.len() as u64 > MAX_KARGS_FILE {
            return Err(Error::Invalid(format!(
                "/{}: larger than {MAX_KARGS_FILE} bytes",
                rel.display()
            )));
        }
        out.extend(parse_kargs(&text, &rel, arch)?.unwrap_or_default());
    }
    Ok(out)
}

/// Where an image keeps its kernel arguments, relative to its root.
pub const KARGS_D: &str = "usr/lib/bootc/kargs.d";

/// The largest kargs.d file read, in bytes: a command line is a few KiB at most.
pub const MAX_KARGS_FILE: u64 = 64 << 10;

/// Keys an image's kargs.d may not set: the boot entry's own `ociboot=` and `init=`.
pub const OWNED_KEYS: &[&str] = &[crate::cmdline::DEPLOYMENT_KEY, "init"];

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

/// The kargs of the kargs.d file at `f` (a path the caller resolved inside the image), as
/// [`parse_kargs`] reads them.
pub fn kargs_file(f: &Path, arch: &str) -> Result<Option<Vec<String>>> {
    let text = std::fs::read_to_string(f).at("reading", f)?;
    let rel = Path::new(KARGS_D).join(f.file_name().unwrap_or_default());
    parse_kargs(&text, &rel, arch)
}

/// The kargs of one kargs.d file's text, split into words, or `None` if its
/// `match-architectures` leaves `arch` out. An error names the file (`rel`, from the image's
/// root) and the argument.
pub fn parse_kargs(text: &str, rel: &Path, arch: &str) -> Result<Option<Vec<String>>> {
    let k: KargsFile =
        toml::from_str(text).map_err(|e| Error::Invalid(format!("/{}: {e}", rel.display())))?;
    if k.match_architectures
        .as_ref()
        .is_some_and(|a| !a.iter().any(|x| x == arch))
    {
        return Ok(None);
    }
    let mut out = Vec::new();
    for a in &k.kargs {
        if let Some(c) = a.chars().find(|c| c.is_control()) {
            return Err(Error::Invalid(format!(
                "/{}: argument {a:?} has the control character {c:?}",
                rel.display()
            )));
        }
        for word in a.split_whitespace() {
            if let Some(why) = crate::cmdline::refuse_arg(word, OWNED_KEYS) {
                return Err(Error::Invalid(format!("/{}: {why}", rel.display())));
            }
            out.push(word.to_string());
        }
    }
    Ok(Some(out))
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
