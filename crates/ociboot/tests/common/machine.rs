//! A sysroot whose bootloader the test plays: boot entries read as the loader reads them, and
//! a "reboot" that hands the default entry's options to later commands.

use std::path::PathBuf;

use super::Host;

/// A sysroot whose bootloader is played by the test: `reboot` hands the default entry's
/// `options` line to later commands through OCIBOOT_PROC_CMDLINE.
pub struct Machine {
    pub h: Host,
    pub cmdline: PathBuf,
}

impl Machine {
    /// A machine for a hostile-input test (see [`Host::hostile`]).
    pub fn hostile(name: &str) -> Machine {
        Machine::with(Host::hostile(name))
    }

    pub fn new(name: &str) -> Machine {
        Machine::with(Host::new(name))
    }

    fn with(h: Host) -> Machine {
        let cmdline = h.path("cmdline");
        std::fs::write(&cmdline, "").unwrap();
        let mut m = Machine { h, cmdline };
        m.h.env.push((
            "OCIBOOT_PROC_CMDLINE".into(),
            m.cmdline.display().to_string(),
        ));
        m
    }

    /// `install to-filesystem` of `source` (root=UUID=0a1b2c3d, no bootloader), then boot it.
    pub fn install_booted(&self, source: &str) {
        self.ok(&[
            "install",
            "to-filesystem",
            "--source-imgref",
            source,
            "--root-mount-spec",
            "UUID=0a1b2c3d",
            "--bootloader",
            "none",
            self.root().to_str().unwrap(),
        ]);
        self.reboot();
    }

    pub fn root(&self) -> PathBuf {
        self.h.sysroot()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.h.ok(args)
    }

    pub fn fails(&self, args: &[&str]) -> String {
        self.h.fails(args)
    }

    /// The entry file names as systemd-boot 252 sorts them, default first.
    /// loader.conf must not name a default (boot counting renames entry files); entries the
    /// loader gave up on (`+0` in the file name) go last, the others by `version`, highest
    /// first (all of ociboot's share one `sort-key`).
    pub fn sorted_entry_names(&self) -> Vec<String> {
        let conf = std::fs::read_to_string(self.root().join("boot/loader/loader.conf")).unwrap();
        assert!(
            !conf.lines().any(|l| l.trim_start().starts_with("default")),
            "loader.conf names a default: {conf}"
        );
        let mut named: Vec<(bool, u64, String)> = self
            .entry_names()
            .into_iter()
            .map(|name| {
                let stem = name.trim_end_matches(".conf");
                let given_up = stem
                    .rsplit_once('+')
                    .is_some_and(|(_, c)| c.split('-').next() == Some("0"));
                let text =
                    std::fs::read_to_string(self.root().join("boot/loader/entries").join(&name))
                        .unwrap();
                assert!(text.contains("\nsort-key ociboot\n"), "{name}: {text}");
                let version = text
                    .lines()
                    .find_map(|l| l.strip_prefix("version "))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{name}: no version"));
                (given_up, version, name)
            })
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
        named.into_iter().map(|(_, _, name)| name).collect()
    }

    /// The entries as systemd-boot 252 sorts them, default first: (options, linux, initrd).
    pub fn entries(&self) -> Vec<(String, String, Option<String>)> {
        self.sorted_entry_names()
            .iter()
            .map(|name| self.entry(name))
            .collect()
    }

    /// The names of the `*.conf` files in loader/entries, sorted.
    pub fn entry_names(&self) -> Vec<String> {
        let dir = self.root().join("boot/loader/entries");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".conf"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Every entry file in loader/entries (`*.conf`, whatever loader.conf says), by name.
    pub fn entry_files(&self) -> Vec<(String, String, Option<String>)> {
        self.entry_names()
            .iter()
            .map(|name| self.entry(name))
            .collect()
    }

    /// An entry file of loader/entries: (options, linux, initrd).
    fn entry(&self, name: &str) -> (String, String, Option<String>) {
        let path = self.root().join("boot/loader/entries").join(name);
        let t =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let get = |k: &str| {
            t.lines()
                .find_map(|l| l.strip_prefix(&format!("{k} ")))
                .map(str::to_string)
        };
        (
            get("options").unwrap(),
            get("linux").unwrap(),
            get("initrd"),
        )
    }

    /// The default entry's options, after checking that what it boots is complete: a
    /// non-empty kernel and initramfs, and a deployment root with usr/ and etc/.
    pub fn default_entry(&self) -> String {
        let (options, linux, initrd) = self.entries().into_iter().next().expect("no boot entry");
        self.assert_bootable(&options, &linux, initrd.as_deref());
        options
    }

    /// Check that what an entry boots is complete: a non-empty kernel and initramfs, and a
    /// deployment root with usr/ and etc/.
    pub fn assert_bootable(&self, options: &str, linux: &str, initrd: Option<&str>) {
        for f in std::iter::once(linux).chain(initrd) {
            let p = self.root().join("boot").join(f.trim_start_matches('/'));
            assert!(
                p.is_file() && std::fs::metadata(&p).unwrap().len() > 0,
                "{} missing or empty",
                p.display()
            );
        }
        let droot = self.deployment_dir(options);
        assert!(
            droot.join("usr").is_dir() && droot.join("etc").is_dir(),
            "deployment {} incomplete",
            droot.display()
        );
    }

    /// The directory of the deployment an entry's options name (`ociboot=STATEROOT/ID`).
    pub fn deployment_dir(&self, options: &str) -> PathBuf {
        let key = options
            .split_whitespace()
            .find_map(|a| a.strip_prefix("ociboot="))
            .expect("no ociboot= in the entry");
        let (sr, id) = key.split_once('/').expect("ociboot=STATEROOT/ID");
        self.root()
            .join("ociboot/deploy")
            .join(sr)
            .join("deploy")
            .join(id)
    }

    /// Play the bootloader: boot the default entry. /run does not survive a reboot, and with
    /// it goes any staged state. Returns the kernel command line.
    pub fn reboot(&self) -> String {
        let options = self.default_entry();
        std::fs::write(&self.cmdline, &options).unwrap();
        let _ = std::fs::remove_dir_all(self.root().join("run"));
        options
    }

    pub fn status(&self) -> serde_json::Value {
        let out = self.ok(&["status", "--json"]);
        assert_eq!(out.trim().lines().count(), 1, "compact JSON on one line");
        serde_json::from_str(&out).unwrap()
    }

    /// The root directory of the deployment in a status slot.
    pub fn deployment_root(&self, slot: &str) -> PathBuf {
        let s = self.status();
        PathBuf::from(
            s["status"][slot]["ociboot"]["root"]
                .as_str()
                .unwrap_or("/nonexistent"),
        )
    }

    pub fn etc(&self) -> PathBuf {
        self.deployment_root("booted").join("etc")
    }

    /// The version label of the booted image ("none" when not booted).
    pub fn booted_version(&self) -> String {
        self.status()["status"]["booted"]["image"]["version"]
            .as_str()
            .unwrap_or("none")
            .to_string()
    }
}
