//! Boot Loader Specification type #1 entries and the kernels they point to.
//!
//! ```text
//! <boot>/                              the sysroot's boot/ or the ESP (FAT)
//!   loader/loader.conf                 the loader's settings (no `default`: see counter.rs)
//!   loader/entries/ociboot-<stateroot>-<id>[+LEFT[-DONE]].conf   one entry per deployment,
//!                                      `sort-key ociboot`, the highest `version` boots
//!   ociboot/<stateroot>-<bootcsum>/    vmlinuz-<kver>, initramfs-<kver>.img (written once)
//! ```
//!
//! No symlinks and no directory swaps, so the same scheme works on the ESP: see
//! [`write_entries`] for the write order that keeps a complete default entry at every moment.
//! Kernel directories are named by the hash of their content and created by rename, so an
//! entry never points at a partial kernel.

use std::path::{Path, PathBuf};

use crate::error::{Ctx, Error, Result};

mod counter;
mod kernel;
pub use counter::{Counter, MAX_TRIES};
pub use kernel::{find_kernel, install_kernel, kernel_sum, unused_kernel_dirs, Kernel};

/// One entry as written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The menu title, such as `example.com/os:a-0 (ociboot:default:1)`.
    pub title: String,
    /// The loader's order among entries with tries left: [`write_entries`] numbers entries so
    /// the default has the highest.
    pub version: u32,
    /// The kernel, as a path from the boot filesystem's root.
    pub linux: String,
    /// The initramfs, as a path from the boot filesystem's root; `None` for no `initrd` line.
    pub initrd: Option<String>,
    /// The kernel command line, `ociboot=<stateroot>/<id>` included.
    pub options: String,
    /// Boot counting: the tries in the file's name; `None` for an entry that is not counted.
    pub counter: Option<Counter>,
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

    /// The entry file's text: `title`, `sort-key`, `version`, `linux`, `initrd` (if any) and
    /// `options` lines. The counter is in the file's name, not here.
    pub fn render(&self) -> String {
        let mut s = format!(
            "title {}\nsort-key {}\nversion {}\nlinux {}\n",
            self.title,
            counter::SORT_KEY,
            self.version,
            self.linux
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
            counter: None,
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

/// The uncounted entry file of a deployment (`<stateroot>/<id>`):
/// `ociboot-<stateroot>-<id>.conf`.
pub fn entry_name(key: &str) -> String {
    counter::file_name(key, None)
}

/// The entry file of a deployment with its counter (see [`Counter`]).
pub fn entry_file_name(key: &str, counter: Option<Counter>) -> String {
    counter::file_name(key, counter)
}

/// The line of loader.conf that recorded ociboot's boot order before boot counting: read
/// (an older ociboot wrote it, with a `default` line) and removed by the next write.
const ORDER_PREFIX: &str = "# ociboot-order:";

/// The most entry files read from loader/entries, and the largest one.
const MAX_ENTRY_FILES: usize = 256;
const MAX_ENTRY_SIZE: u64 = 64 * 1024;

/// loader.conf without `default` (it would name one file, which boot counting renames) and
/// without the old order line; the admin's other settings are kept.
fn render_loader_conf(old: Option<&str>) -> String {
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
                l != "default" && !ours.iter().any(|p| l.starts_with(p))
            })
            .collect(),
        None => vec!["timeout 2", "console-mode keep"],
    };
    let mut out = String::from(
        "# Written by ociboot: no `default`; the entries' sort-key and version order them.\n",
    );
    for l in kept {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The boot order an older ociboot recorded in loader.conf, if any.
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

/// Every ociboot entry file in loader/entries: (file name, entry with its counter). An entry
/// whose `ociboot=` does not match its file name is refused, naming the file.
fn entry_files(boot: &Path) -> Result<Vec<(String, Entry)>> {
    use std::io::Read as _;
    let dir = entries_dir(boot);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Ok(Err(e).at("reading", &dir)?),
    };
    let mut out = Vec::new();
    for de in rd {
        let de = de.at("reading", &dir)?;
        let name = de.file_name().to_string_lossy().into_owned();
        let Some((base, counter)) = counter::split_name(&name) else {
            continue;
        };
        if out.len() == MAX_ENTRY_FILES {
            return Err(Error::Invalid(format!(
                "{}: more than {MAX_ENTRY_FILES} ociboot entries",
                dir.display()
            )));
        }
        let p = dir.join(&name);
        let mut text = String::new();
        std::fs::File::open(&p)
            .at("opening", &p)?
            .take(MAX_ENTRY_SIZE + 1)
            .read_to_string(&mut text)
            .at("reading", &p)?;
        if text.len() as u64 > MAX_ENTRY_SIZE {
            return Err(Error::Invalid(format!(
                "{}: larger than {MAX_ENTRY_SIZE} bytes",
                p.display()
            )));
        }
        let mut e = Entry::parse(&text, &p.display().to_string())?;
        e.counter = counter;
        match e.deployment_key() {
            Some(k) if counter::base_name(k) == base => {}
            k => {
                return Err(Error::Invalid(format!(
                    "{}: boots {k:?}, which is not the deployment its name says",
                    p.display()
                )))
            }
        }
        out.push((name, e));
    }
    Ok(out)
}

/// The current entries in the order the loader sorts them, the default first: entries with
/// tries left by version, then those the loader gave up on. A loader.conf written by an older
/// ociboot (a `# ociboot-order:` line) still decides the order until the next write.
pub fn read_entries(boot: &Path) -> Result<Vec<Entry>> {
    let mut files = entry_files(boot)?;
    if let Some(order) = read_order(boot)? {
        let mut out = Vec::new();
        for key in order {
            let i = files
                .iter()
                .position(|(_, e)| e.deployment_key() == Some(key.as_str()))
                .ok_or_else(|| {
                    Error::State(format!(
                        "{}: the boot order names {key}, which has no entry",
                        loader_conf(boot).display()
                    ))
                })?;
            out.push(files.swap_remove(i).1);
        }
        return Ok(out);
    }
    files.sort_by(counter::loader_order);
    // One entry per deployment: a second file of the same one (made by hand) is not ours.
    let mut out: Vec<Entry> = Vec::new();
    for (_, e) in files {
        if !out.iter().any(|o| o.deployment_key() == e.deployment_key()) {
            out.push(e);
        }
    }
    Ok(out)
}

/// The names in a directory.
fn names_in(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for de in std::fs::read_dir(dir).at("reading", dir)? {
        out.push(
            de.at("reading", dir)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    Ok(out)
}

/// Write `data` to `dir/name` atomically, through a temporary name the loader ignores.
/// Unchanged files are left alone.
fn replace_file(dir: &Path, name: &str, data: &[u8]) -> Result<bool> {
    Ok(ociboot_fs::write_atomic(&dir.join(name), data)?)
}

/// Replace the entry set. `entries` in boot order (default first), each with the counter its
/// file is to have; their versions are assigned here, all above every version on disk. This
/// works on FAT, which has no symlinks and no directory swap:
///
/// 1. loader.conf is created if missing (no `default`);
/// 2. `before_commit` runs (a failpoint in tests);
/// 3. the new default's file is written first (renamed first if its counter changes, so a
///    deployment never has two files; then new content to a `.tmp-` name the loader ignores,
///    fsynced, renamed over it): its version is now the highest, so this one rename is the
///    commit point (vfat renames over an existing name in place, so the loader finds the old
///    or the new file);
/// 4. the other entries follow, each below the default and above everything older;
/// 5. a loader.conf written by an older ociboot loses its `default` and order lines (for such
///    a loader.conf, this is the commit point);
/// 6. entry files of deployments no longer in the order are removed.
///
/// Kernels are written before and removed only after (by the GC), so every entry present at
/// any moment points at complete files.
pub fn write_entries(boot: &Path, entries: &[Entry], before_commit: impl FnOnce()) -> Result<()> {
    let dir = entries_dir(boot);
    std::fs::create_dir_all(&dir).at("creating", &dir)?;
    let loader = boot.join("loader");
    let mut keys = Vec::new();
    for e in entries {
        let key = e
            .deployment_key()
            .ok_or_else(|| Error::Invalid(format!("entry {:?} has no ociboot=", e.title)))?;
        e.check()?;
        keys.push(key.to_string());
    }
    // Versions on disk, read leniently: a damaged file is replaced or removed below.
    let mut present: Vec<(String, Option<String>, u32)> = Vec::new();
    for name in names_in(&dir)? {
        if counter::split_name(&name).is_none() {
            continue;
        }
        let parsed = std::fs::read_to_string(dir.join(&name))
            .ok()
            .and_then(|t| Entry::parse(&t, &name).ok());
        let key = parsed
            .as_ref()
            .and_then(|e| e.deployment_key().map(str::to_string));
        present.push((name, key, parsed.map_or(0, |e| e.version)));
    }
    let old_conf = std::fs::read_to_string(loader_conf(boot)).ok();
    if old_conf.is_none() {
        replace_file(&loader, "loader.conf", render_loader_conf(None).as_bytes())?;
    }
    let top = present.iter().map(|p| p.2).max().unwrap_or(0);
    let n = entries.len() as u32;
    if top.checked_add(n).is_none() {
        return Err(Error::Invalid(format!(
            "{}: entry versions reach {top}",
            dir.display()
        )));
    }
    before_commit();
    let mut live = Vec::new();
    for (i, (e, key)) in entries.iter().zip(&keys).enumerate() {
        let name = entry_file_name(key, e.counter);
        for (old, k, _) in &present {
            if k.as_deref() == Some(key.as_str()) && *old != name && !live.contains(old) {
                let (from, to) = (dir.join(old), dir.join(&name));
                std::fs::rename(&from, &to)
                    .ctx(|| format!("renaming {} to {}", from.display(), to.display()))?;
                break;
            }
        }
        let mut e = e.clone();
        e.version = top + n - i as u32;
        replace_file(&dir, &name, e.render().as_bytes())?;
        ociboot_fs::fsync_dir(&dir)?;
        live.push(name);
    }
    if old_conf.as_deref().is_some_and(|t| {
        t.lines()
            .any(|l| l.starts_with(ORDER_PREFIX) || l.trim_start().starts_with("default"))
    }) {
        replace_file(
            &loader,
            "loader.conf",
            render_loader_conf(old_conf.as_deref()).as_bytes(),
        )?;
        ociboot_fs::fsync_dir(&loader)?;
    }
    for name in names_in(&dir)? {
        // Entries of deployments gone from the order, and the temporary file of a write a
        // crash interrupted.
        if (counter::split_name(&name).is_some() && !live.contains(&name))
            || name.starts_with(".tmp-")
        {
            ociboot_fs::remove_any(&dir.join(&name))?;
        }
    }
    ociboot_fs::fsync_dir(&dir)?;
    Ok(())
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
            counter: None,
        }
    }

    fn counted(t: &str, left: u32, done: u32) -> Entry {
        Entry {
            counter: Some(Counter { left, done }),
            ..e(t)
        }
    }

    fn keys(b: &Path) -> Vec<String> {
        read_entries(b)
            .unwrap()
            .iter()
            .map(|x| x.deployment_key().unwrap().to_string())
            .collect()
    }

    fn names(boot: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(boot.join("loader/entries"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn entries_roundtrip_and_reorder() {
        let d = tempfile::tempdir().unwrap();
        let boot = d.path().join("boot");
        write_entries(&boot, &[e("a"), e("b"), e("c")], || {}).unwrap();
        assert_eq!(keys(&boot), ["default/a", "default/b", "default/c"]);
        let conf = std::fs::read_to_string(boot.join("loader/loader.conf")).unwrap();
        assert!(!conf.contains("default "), "{conf}");
        let text = std::fs::read_to_string(boot.join("loader/entries/ociboot-default-a.conf"));
        assert!(text.unwrap().contains("sort-key ociboot\nversion 3\n"));
        // Interrupted just before the commit point: nothing changed for the loader or status.
        write_entries(&boot, &[e("b"), e("a")], || {
            assert_eq!(keys(&boot), ["default/a", "default/b", "default/c"]);
        })
        .unwrap();
        assert_eq!(keys(&boot), ["default/b", "default/a"]);
        // Every version is above every older one.
        assert_eq!(read_entries(&boot).unwrap()[0].version, 5);
        assert_eq!(
            names(&boot),
            ["ociboot-default-a.conf", "ociboot-default-b.conf"]
        );
    }

    #[test]
    fn counted_entries_are_renamed_and_given_up_ones_sort_last() {
        let d = tempfile::tempdir().unwrap();
        let boot = d.path().join("boot");
        write_entries(&boot, &[e("a")], || {}).unwrap();
        write_entries(&boot, &[counted("b", 3, 0), e("a")], || {}).unwrap();
        assert_eq!(
            names(&boot),
            ["ociboot-default-a.conf", "ociboot-default-b+3.conf"]
        );
        assert_eq!(keys(&boot), ["default/b", "default/a"]);
        // The loader tries b three times, renaming it each time, and gives up.
        let dir = boot.join("loader/entries");
        for (from, to) in [("b+3", "b+2-1"), ("b+2-1", "b+1-2"), ("b+1-2", "b+0-3")] {
            assert_eq!(keys(&boot)[0], "default/b", "{from}: tries left, b boots");
            std::fs::rename(
                dir.join(format!("ociboot-default-{from}.conf")),
                dir.join(format!("ociboot-default-{to}.conf")),
            )
            .unwrap();
        }
        let st = read_entries(&boot).unwrap();
        assert_eq!(keys(&boot), ["default/a", "default/b"], "a boots again");
        assert_eq!(st[1].counter, Some(Counter { left: 0, done: 3 }));
        // Writing keeps a counter; a new counter renames the one file (never two of b).
        write_entries(&boot, &st, || {}).unwrap();
        assert_eq!(
            names(&boot),
            ["ociboot-default-a.conf", "ociboot-default-b+0-3.conf"]
        );
        write_entries(&boot, &[counted("b", 3, 0), e("a")], || {}).unwrap();
        assert_eq!(
            names(&boot),
            ["ociboot-default-a.conf", "ociboot-default-b+3.conf"]
        );
        assert_eq!(keys(&boot), ["default/b", "default/a"]);
        // Blessed by systemd-bless-boot: the plain name.
        std::fs::rename(
            dir.join("ociboot-default-b+3.conf"),
            dir.join("ociboot-default-b.conf"),
        )
        .unwrap();
        assert_eq!(read_entries(&boot).unwrap()[0].counter, None);
    }

    #[test]
    fn an_entry_file_naming_another_deployment_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let boot = d.path().join("boot");
        write_entries(&boot, &[e("a")], || {}).unwrap();
        let dir = boot.join("loader/entries");
        std::fs::copy(
            dir.join("ociboot-default-a.conf"),
            dir.join("ociboot-default-b+3.conf"),
        )
        .unwrap();
        let err = read_entries(&boot).unwrap_err().to_string();
        assert!(err.contains("ociboot-default-b+3.conf: boots"), "{err}");
    }

    #[test]
    fn an_older_loader_conf_decides_until_the_next_write() {
        let d = tempfile::tempdir().unwrap();
        let boot = d.path().join("boot");
        write_entries(&boot, &[e("a"), e("b")], || {}).unwrap();
        // As an older ociboot left it: b the default by loader.conf, versions the other way.
        let p = boot.join("loader/loader.conf");
        std::fs::write(
            &p,
            "timeout 5\ndefault ociboot-default-b.conf\n# ociboot-order: default/b default/a\n",
        )
        .unwrap();
        assert_eq!(keys(&boot), ["default/b", "default/a"]);
        write_entries(&boot, &[e("b"), e("a")], || {}).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .skip(1)
                .collect::<Vec<_>>(),
            ["timeout 5"]
        );
        assert_eq!(keys(&boot), ["default/b", "default/a"]);
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
        assert!(!t.contains("default "), "{t}");
    }
}
