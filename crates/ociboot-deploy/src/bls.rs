//! Boot Loader Specification type #1 entries and the kernels they point to.
//!
//! ```text
//! <sysroot>/boot/
//!   loader -> loader.0 | loader.1      the commit point: one symlink replaced by rename
//!   loader.N/entries/ociboot-<K>.conf  one entry per deployment, K = count - index
//!   ociboot/<stateroot>-<bootcsum>/    vmlinuz-<kver>, initramfs-<kver>.img (written once)
//! ```
//!
//! A new entry set is written complete into the inactive `loader.N`, flushed, and made current
//! by renaming a new symlink over `loader`: after a crash the loader sees the complete old or
//! the complete new set. Kernel directories are named by the hash of their content and created
//! by rename, so an entry never points at a partial kernel.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Ctx, Error, Result};

/// One entry as written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub title: String,
    pub version: u32,
    pub linux: String,
    pub initrd: Option<String>,
    pub options: String,
}

impl Entry {
    pub fn render(&self) -> String {
        let mut s = format!(
            "title {}\nversion {}\nlinux {}\n",
            self.title, self.version, self.linux
        );
        if let Some(i) = &self.initrd {
            s.push_str(&format!("initrd {i}\n"));
        }
        s.push_str(&format!("options {}\n", self.options));
        s
    }

    pub fn parse(text: &str, what: &str) -> Result<Entry> {
        let mut e = Entry {
            title: String::new(),
            version: 0,
            linux: String::new(),
            initrd: None,
            options: String::new(),
        };
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let v = v.trim().to_string();
            match k {
                "title" => e.title = v,
                "version" => {
                    e.version = v
                        .parse()
                        .map_err(|_| Error::Invalid(format!("{what}: bad version {v:?}")))?
                }
                "linux" => e.linux = v,
                "initrd" => e.initrd = Some(v),
                "options" => e.options = v,
                _ => {}
            }
        }
        if e.linux.is_empty() {
            return Err(Error::Invalid(format!("{what}: no linux line")));
        }
        Ok(e)
    }

    /// The value of `ociboot=` in the options.
    pub fn deployment_key(&self) -> Option<&str> {
        self.options
            .split_whitespace()
            .find_map(|a| a.strip_prefix("ociboot="))
    }
}

fn loader_link(boot: &Path) -> PathBuf {
    boot.join("loader")
}

/// Which `loader.N` is current (None before the first write).
pub fn current_index(boot: &Path) -> Result<Option<u8>> {
    match std::fs::read_link(loader_link(boot)) {
        Ok(t) => match t.to_str() {
            Some("loader.0") => Ok(Some(0)),
            Some("loader.1") => Ok(Some(1)),
            _ => Err(Error::Invalid(format!(
                "{}: unexpected target {}",
                loader_link(boot).display(),
                t.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx(|| format!("reading {}", loader_link(boot).display())),
    }
}

/// The current entries, default first (highest version first).
pub fn read_entries(boot: &Path) -> Result<Vec<Entry>> {
    let dir = loader_link(boot).join("entries");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx(|| format!("reading {}", dir.display())),
    };
    let mut out = Vec::new();
    for e in rd {
        let p = e.ctx(|| format!("reading {}", dir.display()))?.path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if !name.starts_with("ociboot-") || !name.ends_with(".conf") {
            continue;
        }
        let text = std::fs::read_to_string(&p).ctx(|| format!("reading {}", p.display()))?;
        out.push(Entry::parse(&text, &p.display().to_string())?);
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.version));
    Ok(out)
}

fn fsync_dir(p: &Path) -> Result<()> {
    Ok(ociboot_store::fsutil::fsync_dir(p)?)
}

/// Replace the whole entry set, atomically. `entries` in boot order (default first); their
/// versions are assigned here. `before_commit` runs after everything is durable, just before
/// the symlink swap (a failpoint in tests).
pub fn write_entries(boot: &Path, entries: &[Entry], before_commit: impl FnOnce()) -> Result<()> {
    std::fs::create_dir_all(boot).ctx(|| format!("creating {}", boot.display()))?;
    let cur = current_index(boot)?;
    let new = match cur {
        Some(0) => 1,
        _ => 0,
    };
    let dir = boot.join(format!("loader.{new}"));
    ociboot_store::fsutil::remove_any(&dir)?;
    let ent = dir.join("entries");
    std::fs::create_dir_all(&ent).ctx(|| format!("creating {}", ent.display()))?;
    let n = entries.len() as u32;
    for (i, e) in entries.iter().enumerate() {
        let mut e = e.clone();
        e.version = n - i as u32;
        let p = ent.join(format!("ociboot-{}.conf", e.version));
        let mut f = std::fs::File::create(&p).ctx(|| format!("creating {}", p.display()))?;
        f.write_all(e.render().as_bytes())
            .ctx(|| format!("writing {}", p.display()))?;
        f.sync_all().ctx(|| format!("fsync {}", p.display()))?;
    }
    fsync_dir(&ent)?;
    fsync_dir(&dir)?;
    let tmp = boot.join("loader.tmp");
    ociboot_store::fsutil::remove_any(&tmp)?;
    std::os::unix::fs::symlink(format!("loader.{new}"), &tmp)
        .ctx(|| format!("creating {}", tmp.display()))?;
    fsync_dir(boot)?;
    before_commit();
    std::fs::rename(&tmp, loader_link(boot)).ctx(|| {
        format!(
            "renaming {} over {}",
            tmp.display(),
            loader_link(boot).display()
        )
    })?;
    fsync_dir(boot)?;
    // The old set is no longer referenced.
    if let Some(c) = cur {
        if c != new {
            ociboot_store::fsutil::remove_any(&boot.join(format!("loader.{c}")))?;
        }
    }
    Ok(())
}

/// A kernel and initramfs found in a deployment, and where they live in /boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub kver: String,
    /// Paths relative to the boot filesystem's root, as the entries name them.
    pub linux: String,
    pub initrd: Option<String>,
    pub dir: String,
}

/// Find `usr/lib/modules/<kver>/vmlinuz` (first kver in sorted order) in a deployment.
pub fn find_kernel(root: &Path) -> Result<(String, PathBuf, Option<PathBuf>)> {
    let m = root.join("usr/lib/modules");
    let mut kvers: Vec<String> = std::fs::read_dir(&m)
        .ctx(|| format!("reading {}", m.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("vmlinuz").is_file())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    kvers.sort();
    let kver = kvers.into_iter().next().ok_or_else(|| {
        Error::Invalid(format!("no kernel: {}/*/vmlinuz is missing", m.display()))
    })?;
    let dir = m.join(&kver);
    let initrd = dir.join("initramfs.img");
    Ok((
        kver,
        dir.join("vmlinuz"),
        initrd.is_file().then_some(initrd),
    ))
}

/// Copy the deployment's kernel into /boot once per distinct content.
pub fn install_kernel(boot: &Path, stateroot: &str, root: &Path) -> Result<Kernel> {
    let (kver, vmlinuz, initramfs) = find_kernel(root)?;
    let mut h = Sha256::new();
    for p in std::iter::once(&vmlinuz).chain(initramfs.as_ref()) {
        let data = std::fs::read(p).ctx(|| format!("reading {}", p.display()))?;
        h.update((data.len() as u64).to_le_bytes());
        h.update(&data);
    }
    let bootcsum = ociboot_oci::digest::hex(&h.finalize());
    let name = format!("{stateroot}-{bootcsum}");
    let rel = format!("ociboot/{name}");
    let dest = boot.join(&rel);
    let kernel = Kernel {
        linux: format!("/{rel}/vmlinuz-{kver}"),
        initrd: initramfs
            .as_ref()
            .map(|_| format!("/{rel}/initramfs-{kver}.img")),
        dir: name,
        kver: kver.clone(),
    };
    if dest.is_dir() {
        return Ok(kernel);
    }
    let parent = boot.join("ociboot");
    std::fs::create_dir_all(&parent).ctx(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(".tmp-{}-{bootcsum}", std::process::id()));
    ociboot_store::fsutil::remove_any(&tmp)?;
    std::fs::create_dir(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
    let mut files = vec![(vmlinuz, format!("vmlinuz-{kver}"))];
    if let Some(i) = initramfs {
        files.push((i, format!("initramfs-{kver}.img")));
    }
    for (src, n) in files {
        let d = tmp.join(&n);
        std::fs::copy(&src, &d).ctx(|| format!("copying {} to {}", src.display(), d.display()))?;
        std::fs::File::open(&d)
            .and_then(|f| f.sync_all())
            .ctx(|| format!("fsync {}", d.display()))?;
    }
    fsync_dir(&tmp)?;
    std::fs::rename(&tmp, &dest)
        .ctx(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    fsync_dir(&parent)?;
    Ok(kernel)
}

/// Kernel directories (names under boot/ociboot) that no entry uses, and leftovers.
pub fn unused_kernel_dirs(boot: &Path, entries: &[Entry]) -> Result<Vec<PathBuf>> {
    let parent = boot.join("ociboot");
    let rd = match std::fs::read_dir(&parent) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx(|| format!("reading {}", parent.display())),
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        let used = entries
            .iter()
            .any(|x| x.linux.starts_with(&format!("/ociboot/{n}/")));
        if !used {
            out.push(e.path());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_roundtrip_and_swap() {
        let d = tempfile::tempdir().unwrap();
        let boot = d.path().join("boot");
        let e = |t: &str| Entry {
            title: t.into(),
            version: 0,
            linux: "/ociboot/x/vmlinuz-1".into(),
            initrd: None,
            options: format!("rw ociboot=default/{t}"),
        };
        write_entries(&boot, &[e("a"), e("b")], || {}).unwrap();
        let r = read_entries(&boot).unwrap();
        assert_eq!(
            r.iter()
                .map(|x| x.deployment_key().unwrap())
                .collect::<Vec<_>>(),
            ["default/a", "default/b"]
        );
        assert_eq!(current_index(&boot).unwrap(), Some(0));
        write_entries(&boot, &[e("b"), e("a")], || {}).unwrap();
        assert_eq!(current_index(&boot).unwrap(), Some(1));
        assert!(!boot.join("loader.0").exists());
        let r = read_entries(&boot).unwrap();
        assert_eq!(r[0].deployment_key(), Some("default/b"));
        assert_eq!(r[0].version, 2);
    }
}
