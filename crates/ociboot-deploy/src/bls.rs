//! Boot Loader Specification type #1 entries and the kernels they point to.
//!
//! ```text
//! <boot>/                              the sysroot's boot/ or the ESP (FAT)
//!   loader/loader.conf                 `default` = the next boot; `# ociboot-order:` the order
//!   loader/entries/ociboot-<stateroot>-<id>.conf   one entry per deployment
//!   ociboot/<stateroot>-<bootcsum>/    vmlinuz-<kver>, initramfs-<kver>.img (written once)
//! ```
//!
//! No symlinks and no directory swaps, so the same scheme works on the ESP: see
//! [`write_entries`] for the write order that keeps a complete default entry at every moment.
//! Kernel directories are named by the hash of their content and created by rename, so an
//! entry never points at a partial kernel.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Ctx, Error, Result};

/// One entry as written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The menu title, such as `example.com/os:a-0 (ociboot:default:1)`.
    pub title: String,
    /// The loader's sort key: [`write_entries`] numbers entries so the default has the highest.
    pub version: u32,
    /// The kernel, as a path from the boot filesystem's root.
    pub linux: String,
    /// The initramfs, as a path from the boot filesystem's root; `None` for no `initrd` line.
    pub initrd: Option<String>,
    /// The kernel command line, `ociboot=<stateroot>/<id>` included.
    pub options: String,
}

/// The longest title written, in characters: a menu line, not a paragraph.
pub const MAX_TITLE: usize = 128;

/// `text` (an image's PRETTY_NAME or version label) made fit for a title: control characters
/// (a newline would add a line to the entry) become spaces, runs of spaces one, and it is cut
/// at [`MAX_TITLE`] characters.
pub fn clean_title(text: &str) -> String {
    let words: Vec<&str> = text
        .split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    words.join(" ").chars().take(MAX_TITLE).collect()
}

impl Entry {
    /// Refuse an entry a line of which would spill into another: every field must be one line
    /// without control characters. The last check before anything derived from an image is
    /// written to the boot partition.
    pub fn check(&self) -> Result<()> {
        let fields = [
            ("title", Some(&self.title)),
            ("linux", Some(&self.linux)),
            ("initrd", self.initrd.as_ref()),
            ("options", Some(&self.options)),
        ];
        for (name, v) in fields {
            if let Some(c) = v.and_then(|v| v.chars().find(|c| c.is_control())) {
                return Err(Error::Invalid(format!(
                    "boot entry {:?}: its {name} has the control character {c:?}",
                    self.title
                )));
            }
        }
        Ok(())
    }

    /// The entry file's text: `title`, `version`, `linux`, `initrd` (if any) and `options` lines.
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

    /// Parse an entry file; comments and unknown keys are ignored. A bad `version` or a missing
    /// `linux` line is [`Error::Invalid`], its message starting with `what` (the file's name).
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
        crate::cmdline::deployment_key(&self.options)
    }
}

/// Where the loader reads its configuration and entries.
fn entries_dir(boot: &Path) -> PathBuf {
    boot.join("loader/entries")
}

fn loader_conf(boot: &Path) -> PathBuf {
    boot.join("loader/loader.conf")
}

/// The entry file of a deployment (`<stateroot>/<id>`): `ociboot-<stateroot>-<id>.conf`.
pub fn entry_name(key: &str) -> String {
    format!("ociboot-{}.conf", key.replacen('/', "-", 1))
}

/// The line of loader.conf that records ociboot's boot order (the loader ignores comments).
const ORDER_PREFIX: &str = "# ociboot-order:";

/// loader.conf with the default and the order replaced, other settings kept.
fn render_loader_conf(old: Option<&str>, keys: &[String]) -> String {
    let mut out = String::new();
    let kept: Vec<&str> = match old {
        Some(t) => t
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                let ours = [
                    "default ",
                    "default\t",
                    ORDER_PREFIX,
                    "# Written by ociboot",
                ];
                !ours.iter().any(|p| l.starts_with(p))
            })
            .collect(),
        None => vec!["timeout 2", "console-mode keep"],
    };
    out.push_str(
        "# Written by ociboot: `default` is the next boot, the order line ociboot's boot order.\n",
    );
    if let Some(first) = keys.first() {
        out.push_str(&format!("default {}\n", entry_name(first)));
    }
    for l in kept {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&format!("{ORDER_PREFIX} {}\n", keys.join(" ")));
    out
}

/// The boot order recorded in loader.conf, if any.
fn read_order(boot: &Path) -> Result<Option<Vec<String>>> {
    let p = loader_conf(boot);
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(t.lines().find_map(|l| {
            l.strip_prefix(ORDER_PREFIX)
                .map(|r| r.split_whitespace().map(str::to_string).collect())
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Ok(Err(e).at("reading", &p)?),
    }
}

/// The current entries in boot order, default first: the order loader.conf records. Entry
/// files it does not name are leftovers of an interrupted change and are ignored.
pub fn read_entries(boot: &Path) -> Result<Vec<Entry>> {
    let Some(order) = read_order(boot)? else {
        return Ok(Vec::new());
    };
    let dir = entries_dir(boot);
    let mut out = Vec::new();
    for key in order {
        let p = dir.join(entry_name(&key));
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) => {
                return Ok(Err(e).ctx(|| format!("reading {} (in the boot order)", p.display()))?)
            }
        };
        let e = Entry::parse(&text, &p.display().to_string())?;
        if e.deployment_key() != Some(key.as_str()) {
            return Err(Error::Invalid(format!(
                "{}: boots {:?}, not {key}",
                p.display(),
                e.deployment_key()
            )));
        }
        out.push(e);
    }
    Ok(out)
}

/// Write `data` to `dir/name` atomically, through a temporary name the loader ignores.
/// Unchanged files are left alone.
fn replace_file(dir: &Path, name: &str, data: &[u8]) -> Result<bool> {
    Ok(ociboot_fs::write_atomic(&dir.join(name), data)?)
}

/// Replace the entry set. `entries` in boot order (default first); their versions are
/// assigned here. This works on FAT, which has no symlinks and no directory swap:
///
/// 1. each deployment's entry file is written (to a `.tmp-` name the loader ignores, fsynced,
///    renamed); a complete entry is valid whatever the order, so this changes no boot;
/// 2. `before_commit` runs (a failpoint in tests);
/// 3. loader.conf is replaced the same way, naming the new default and recording the order:
///    this one rename is the commit point (vfat renames over an existing name in place, so
///    the loader finds the old or the new file);
/// 4. entry files of deployments no longer in the order are removed.
///
/// Kernels are written before and removed only after (by the GC), so every entry present at
/// any moment points at complete files.
pub fn write_entries(boot: &Path, entries: &[Entry], before_commit: impl FnOnce()) -> Result<()> {
    let dir = entries_dir(boot);
    std::fs::create_dir_all(&dir).at("creating", &dir)?;
    let n = entries.len();
    let mut keys = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let key = e
            .deployment_key()
            .ok_or_else(|| Error::Invalid(format!("entry {:?} has no ociboot=", e.title)))?
            .to_string();
        e.check()?;
        let mut e = e.clone();
        e.version = (n - i) as u32;
        replace_file(&dir, &entry_name(&key), e.render().as_bytes())?;
        keys.push(key);
    }
    ociboot_fs::fsync_dir(&dir)?;
    before_commit();
    let loader = boot.join("loader");
    let old = std::fs::read_to_string(loader_conf(boot)).ok();
    replace_file(
        &loader,
        "loader.conf",
        render_loader_conf(old.as_deref(), &keys).as_bytes(),
    )?;
    ociboot_fs::fsync_dir(&loader)?;
    let live: Vec<String> = keys.iter().map(|k| entry_name(k)).collect();
    for e in std::fs::read_dir(&dir).at("reading", &dir)? {
        let p = e.at("reading", &dir)?.path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        // Entries of deployments gone from the order, and the temporary file of a write a
        // crash interrupted.
        if (name.starts_with("ociboot-") && !live.contains(&name)) || name.starts_with(".tmp-") {
            ociboot_fs::remove_any(&p)?;
        }
    }
    ociboot_fs::fsync_dir(&dir)?;
    Ok(())
}

/// A kernel and initramfs found in a deployment, and where they live in /boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The kernel version (its directory under `usr/lib/modules`).
    pub kver: String,
    /// Paths relative to the boot filesystem's root, as the entries name them.
    pub linux: String,
    /// The initramfs; `None` if the deployment has no `initramfs.img`.
    pub initrd: Option<String>,
    /// The kernel's directory under `<boot>/ociboot`: `<stateroot>-<hash of its content>`.
    pub dir: String,
}

/// Find `usr/lib/modules/<kver>/vmlinuz` (first kver in sorted order) in a deployment: the
/// kernel version and the paths of vmlinuz and initramfs.img, relative to `root`.
///
/// The deployment's content is the image's. Its kernel files are opened with
/// [`Root::open_in_root`](ociboot_fs::beneath::Root::open_in_root): a symlink is resolved
/// inside the image, as in a chroot, never on the host (whose files would otherwise be copied
/// to the boot partition), and the target must be a regular file. The kernel version must be
/// a plain name: it becomes part of file names and of the boot entry.
pub fn find_kernel(root: &Path) -> Result<(String, PathBuf, Option<PathBuf>)> {
    use ociboot_fs::beneath::Root;
    let r = Root::open(root)?;
    let modules = Path::new("usr/lib/modules");
    let mut found = None;
    for name in r.list(modules)? {
        let vmlinuz = modules.join(&name).join("vmlinuz");
        if r.stat(&vmlinuz)?.is_none() {
            continue;
        }
        let kver = name
            .to_str()
            .filter(|k| plain_kver(k))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: the kernel version {:?} is not a plain name (letters, digits, \
                     `.`, `_`, `+`, `~`, `-`; at most 128 bytes)",
                    root.join(modules).display(),
                    name
                ))
            })?
            .to_string();
        r.open_in_root(&vmlinuz)?;
        if let Some((first, _)) = &found {
            // Which one boots would be a guess; `container lint` refuses this too.
            return Err(Error::Invalid(format!(
                "{}: the image has several kernels ({first}, {kver}): one is needed",
                root.join(modules).display()
            )));
        }
        found = Some((kver, vmlinuz));
    }
    let (kver, vmlinuz) = found.ok_or_else(|| {
        Error::Invalid(format!(
            "no kernel: {}/*/vmlinuz is missing",
            root.join(modules).display()
        ))
    })?;
    let initrd = modules.join(&kver).join("initramfs.img");
    let initrd = match r.stat(&initrd)? {
        None => None,
        Some(_) => {
            r.open_in_root(&initrd)?;
            Some(initrd)
        }
    };
    Ok((kver, vmlinuz, initrd))
}

/// A kernel version that can go into file names and a boot entry as it is.
fn plain_kver(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 128
        && !k.starts_with('.')
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'~' | b'-'))
}

/// The identity of the kernel [`find_kernel`] picks, from the image's tree: the store object
/// ids (content digests with metadata) of its vmlinuz and initramfs.img, hashed. None if the
/// tree has no kernel. Saves reading and hashing tens of megabytes on every stage.
pub fn kernel_sum(tree: &ociboot_store::Tree) -> Option<String> {
    use ociboot_store::Content;
    let Content::Dir(kvers) = &tree.lookup(b"usr/lib/modules")?.content else {
        return None;
    };
    let node = |k: &[u8], name: &str| {
        let mut p = b"usr/lib/modules/".to_vec();
        p.extend_from_slice(k);
        p.push(b'/');
        p.extend_from_slice(name.as_bytes());
        tree.lookup(&p)
    };
    let file = |k: &[u8], name: &str| match &node(k, name)?.content {
        Content::File { object, .. } => Some(*object),
        _ => None,
    };
    // BTreeMap order is byte order, the order find_kernel sorts names in; like find_kernel,
    // only real directories of usr/lib/modules count. The sum names the files only when
    // they are regular files of the tree: anything else (a symlink) is hashed from the
    // files find_kernel opens instead.
    let kver = kvers
        .iter()
        .find(|(k, n)| n.is_dir() && node(k, "vmlinuz").is_some())
        .map(|(k, _)| k)?;
    file(kver, "vmlinuz")?;
    if node(kver, "initramfs.img").is_some() {
        file(kver, "initramfs.img")?;
    }
    let mut h = Sha256::new();
    h.update(b"ociboot kernel objects\0");
    for name in ["vmlinuz", "initramfs.img"] {
        if let Some(object) = file(kver, name) {
            h.update(name.as_bytes());
            h.update(object.hex().as_bytes());
        }
    }
    Some(ociboot_oci::digest::hex(&h.finalize()))
}

/// Copy the deployment's kernel into /boot once per distinct content (`sum`, from
/// [`kernel_sum`], or else hashed from the files).
pub fn install_kernel(
    boot: &Path,
    stateroot: &str,
    root: &Path,
    sum: Option<&str>,
) -> Result<Kernel> {
    let (kver, vmlinuz, initramfs) = find_kernel(root)?;
    let bootcsum = match sum {
        Some(s) => s.to_string(),
        None => {
            let mut h = Sha256::new();
            let r = ociboot_fs::beneath::Root::open(root)?;
            for p in std::iter::once(&vmlinuz).chain(initramfs.as_ref()) {
                let mut data = Vec::new();
                r.open_in_root(p)?
                    .read_to_end(&mut data)
                    .at("reading", root.join(p))?;
                h.update((data.len() as u64).to_le_bytes());
                h.update(&data);
            }
            ociboot_oci::digest::hex(&h.finalize())
        }
    };
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
    std::fs::create_dir_all(&parent).at("creating", &parent)?;
    let tmp = parent.join(format!(".tmp-{}-{bootcsum}", std::process::id()));
    ociboot_fs::remove_any(&tmp)?;
    std::fs::create_dir(&tmp).at("creating", &tmp)?;
    let mut files = vec![(vmlinuz, format!("vmlinuz-{kver}"))];
    if let Some(i) = initramfs {
        files.push((i, format!("initramfs-{kver}.img")));
    }
    let r = ociboot_fs::beneath::Root::open(root)?;
    for (src, n) in files {
        let d = tmp.join(&n);
        let mut from = r.open_in_root(&src)?;
        let mut to = std::fs::File::create(&d).at("creating", &d)?;
        std::io::copy(&mut from, &mut to)
            .ctx(|| format!("copying {} to {}", root.join(&src).display(), d.display()))?;
        to.sync_all().at("fsync", &d)?;
    }
    ociboot_fs::fsync_dir(&tmp)?;
    std::fs::rename(&tmp, &dest)
        .ctx(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    ociboot_fs::fsync_dir(&parent)?;
    Ok(kernel)
}

/// Kernel directories (names under boot/ociboot) that no entry uses, and leftovers.
pub fn unused_kernel_dirs(boot: &Path, entries: &[Entry]) -> Result<Vec<PathBuf>> {
    let parent = boot.join("ociboot");
    let rd = match std::fs::read_dir(&parent) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Ok(Err(e).at("reading", &parent)?),
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

    fn e(t: &str) -> Entry {
        Entry {
            title: t.into(),
            version: 0,
            linux: "/ociboot/x/vmlinuz-1".into(),
            initrd: None,
            options: format!("rw ociboot=default/{t}"),
        }
    }

    fn keys(b: &Path) -> Vec<String> {
        read_entries(b)
            .unwrap()
            .iter()
            .map(|x| x.deployment_key().unwrap().to_string())
            .collect()
    }

    #[test]
    fn entries_roundtrip_and_reorder() {
        let d = tempfile::tempdir().unwrap();
        let boot = d.path().join("boot");
        write_entries(&boot, &[e("a"), e("b"), e("c")], || {}).unwrap();
        assert_eq!(keys(&boot), ["default/a", "default/b", "default/c"]);
        let conf = std::fs::read_to_string(boot.join("loader/loader.conf")).unwrap();
        assert!(conf.contains("default ociboot-default-a.conf\n"), "{conf}");
        // Interrupted just before the commit point: nothing changed for the loader or status.
        write_entries(&boot, &[e("b"), e("a")], || {
            assert_eq!(keys(&boot), ["default/a", "default/b", "default/c"]);
        })
        .unwrap();
        assert_eq!(keys(&boot), ["default/b", "default/a"]);
        assert_eq!(read_entries(&boot).unwrap()[0].version, 2);
        let mut names: Vec<String> = std::fs::read_dir(boot.join("loader/entries"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["ociboot-default-a.conf", "ociboot-default-b.conf"]);
    }

    #[test]
    fn admin_settings_in_loader_conf_are_kept() {
        let d = tempfile::tempdir().unwrap();
        let boot = d.path().join("boot");
        write_entries(&boot, &[e("a")], || {}).unwrap();
        let p = boot.join("loader/loader.conf");
        let t = std::fs::read_to_string(&p)
            .unwrap()
            .replace("timeout 2", "timeout 10");
        std::fs::write(&p, t).unwrap();
        write_entries(&boot, &[e("b"), e("a")], || {}).unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(
            t.contains("timeout 10\n") && !t.contains("timeout 2"),
            "{t}"
        );
        assert_eq!(t.matches("default ").count(), 1, "{t}");
    }

    #[test]
    fn an_image_with_several_kernels_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("usr/lib/modules");
        for k in ["6.1.0-1", "6.2.0-1"] {
            std::fs::create_dir_all(m.join(k)).unwrap();
            std::fs::write(m.join(k).join("vmlinuz"), "k").unwrap();
        }
        let e = find_kernel(d.path()).unwrap_err().to_string();
        assert!(e.contains("several kernels (6.1.0-1, 6.2.0-1)"), "{e}");
        std::fs::remove_file(m.join("6.2.0-1/vmlinuz")).unwrap();
        assert_eq!(
            find_kernel(d.path()).unwrap().0,
            "6.1.0-1",
            "modules only: no kernel"
        );
    }
}
