//! `install to-disk --via-loopback`, checked with the standard tools, without booting: sgdisk
//! reads the GPT, mtools the ESP, e2fsprogs the root filesystem. Bad requests leave nothing.
//! (The VM test boots such a disk for real.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// mkos.py's v1 plus what a disk install needs from an image: a static `usr/bin/ociboot`
/// (busybox-static stands in: what is checked is that it is a static ELF) and systemd-boot.
fn bootable_layout(dir: &Path) -> PathBuf {
    let l = dir.join("layout");
    sh(Command::new("cp").arg("-a").arg(os_layout()).arg(&l));
    let add = dir.join("add");
    let efi = add.join("usr/lib/systemd/boot/efi");
    std::fs::create_dir_all(&efi).unwrap();
    std::fs::create_dir_all(add.join("usr/bin")).unwrap();
    std::fs::copy("/bin/busybox", add.join("usr/bin/ociboot")).unwrap();
    std::fs::write(
        efi.join("systemd-bootx64.efi"),
        b"MZ not really systemd-boot",
    )
    .unwrap();
    sh(Command::new("python3")
        .arg(repo_root().join("tests/fixtures/add-layer.py"))
        .arg(&l)
        .arg("v1")
        .arg(&add));
    l
}

fn to_disk(h: &Host, image: &str, file: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["install", "to-disk", "--source-imgref", image];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    h.run(&args)
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".ociboot-install") || n.ends_with(".partial"))
        .collect()
}

fn text(o: std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn disk_image_reads_back_with_standard_tools() {
    let h = Host::new("todisk");
    let dir = h.path("work");
    std::fs::create_dir_all(&dir).unwrap();
    let layout = bootable_layout(&dir);
    let disk = dir.join("disk.raw");
    let keys = dir.join("keys");
    std::fs::write(&keys, "ssh-ed25519 AAAAC3Nza test@example\n").unwrap();
    let (ok, out, err) = to_disk(
        &h,
        &format!("oci:{}:v1", layout.display()),
        &disk,
        &[
            "--via-loopback",
            "--karg",
            "quiet",
            "--root-size",
            "300M",
            "--root-ssh-authorized-keys",
            keys.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    // 1 MiB + 512 MiB ESP + 300 MiB root + 1 MiB backup GPT.
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 814 << 20);

    // GPT: valid, two partitions with the DPS type GUIDs.
    sh(Command::new("sgdisk").arg("-v").arg(&disk));
    let p1 = text(sh(Command::new("sgdisk").args(["-i", "1"]).arg(&disk)));
    assert!(p1.contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"), "{p1}");
    assert!(p1.contains("First sector: 2048 "), "{p1}");
    let p2 = text(sh(Command::new("sgdisk").args(["-i", "2"]).arg(&disk)));
    assert!(p2.contains("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"), "{p2}");
    assert!(p2.contains("First sector: 1050624 "), "{p2}");

    // ESP: FAT that mtools reads; one entry (loader.conf names no default: the loader boots
    // the highest version), uncounted (nothing to fall back to), which boots the kernel
    // copied onto the ESP and runs the deployment's ociboot as init.
    let esp = format!("{}@@1M", disk.display());
    let mtype = |p: &str| text(sh(Command::new("mtype").args(["-i", &esp, p])));
    let conf = mtype("::/loader/loader.conf");
    assert!(!conf.contains("default "), "{conf}");
    let listing = text(sh(Command::new("mdir").args([
        "-b",
        "-i",
        &esp,
        "::/loader/entries",
    ])));
    let entries: Vec<&str> = listing.lines().filter(|l| l.ends_with(".conf")).collect();
    assert_eq!(entries.len(), 1, "{listing}");
    let entry = entries[0].rsplit('/').next().unwrap();
    assert!(
        !entry.contains('+'),
        "the only entry is not counted: {entry}"
    );
    let e = mtype(&format!("::/loader/entries/{entry}"));
    let get = |k: &str| {
        e.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .unwrap_or_else(|| panic!("no {k} in {e}"))
            .to_string()
    };
    let options = get("options");
    assert!(
        options.contains("root=UUID=") && options.contains(" rw"),
        "{options}"
    );
    assert!(options.contains(" quiet"), "{options}");
    let key = options
        .split_whitespace()
        .find_map(|a| a.strip_prefix("ociboot="))
        .unwrap()
        .to_string();
    let (sr, id) = key.split_once('/').unwrap();
    assert!(
        options.contains(&format!(
            "init=/ociboot/deploy/{sr}/deploy/{id}/usr/bin/ociboot"
        )),
        "{options}"
    );
    assert!(!mtype(&format!("::{}", get("linux"))).is_empty());
    assert_eq!(
        mtype("::/EFI/BOOT/BOOTX64.EFI"),
        "MZ not really systemd-boot"
    );

    // Root: a clean ext4 whose UUID is the one root= names, holding the deployment; its
    // /etc/fstab mounts the ESP (by its FAT serial) on /boot; root's SSH keys via tmpfiles.d.
    let root = format!("{}?offset={}", disk.display(), 1050624u64 * 512);
    sh(Command::new("e2fsck").args(["-fn", &root]));
    let uuid = text(sh(Command::new("dumpe2fs").args(["-h", &root])));
    let fs_uuid = uuid
        .lines()
        .find_map(|l| l.strip_prefix("Filesystem UUID:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        options.contains(&format!("root=UUID={fs_uuid}")),
        "{options}"
    );
    let cat = |p: &str| {
        text(sh(Command::new("debugfs").args([
            "-R",
            &format!("cat {p}"),
            &root,
        ])))
    };
    let d = format!("/ociboot/deploy/{sr}/deploy/{id}");
    let fstab = cat(&format!("{d}/etc/fstab"));
    let mlabel = text(sh(Command::new("minfo").args(["-i", &esp, "::"])));
    let serial = mlabel
        .lines()
        .find_map(|l| l.trim().strip_prefix("serial number:"))
        .unwrap()
        .trim()
        .to_string();
    let esp_line = fstab
        .lines()
        .find(|l| l.contains(" /boot vfat "))
        .unwrap_or_else(|| panic!("{fstab}"));
    // blkid and fstab write the FAT serial as XXXX-XXXX; minfo without the dash.
    let fstab_uuid = esp_line
        .split_whitespace()
        .next()
        .and_then(|f| f.strip_prefix("UUID="))
        .unwrap()
        .replace('-', "");
    assert!(
        fstab_uuid.eq_ignore_ascii_case(&serial),
        "fstab {esp_line:?} vs FAT serial {serial}"
    );
    let tmpfiles = cat(&format!("{d}/etc/tmpfiles.d/ociboot-root-ssh.conf"));
    assert!(
        tmpfiles.contains("ssh-ed25519 AAAAC3Nza test@example\\n"),
        "{tmpfiles}"
    );
    let ls = text(sh(Command::new("debugfs").args(["-R", "ls -p /", &root])));
    for api in ["/dev/", "/proc/", "/sys/", "/run/", "/ociboot/"] {
        let name = api.trim_matches('/');
        assert!(
            ls.contains(&format!("/{name}/")),
            "no {api} in the root: {ls}"
        );
    }
}

#[test]
fn refused_requests_change_nothing() {
    let h = Host::new("todisk-bad");
    let dir = h.path("work");
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("disk.raw");
    let plain = format!("oci:{}:v1", os_layout().display());

    // An image whose init is a symlink to a shell; the fixture image (a static ociboot
    // header, no boot loader) has no systemd-boot to install.
    let init_link = format!("oci:{}:init-symlink", os_layout().display());
    let (ok, _, err) = to_disk(&h, &init_link, &disk, &["--via-loopback"]);
    assert!(!ok);
    assert!(
        err.contains("usr/bin/ociboot") && err.contains("symlink"),
        "{err}"
    );
    assert!(!disk.exists() && leftovers(&dir).is_empty());
    let (ok, _, err) = to_disk(&h, &plain, &disk, &["--via-loopback"]);
    assert!(!ok);
    assert!(err.contains("systemd-bootx64.efi"), "{err}");
    assert!(!disk.exists() && leftovers(&dir).is_empty());

    // A file with data is not overwritten without --wipe.
    std::fs::write(&disk, b"precious").unwrap();
    let layout = bootable_layout(&dir);
    let good = format!("oci:{}:v1", layout.display());
    let (ok, _, err) = to_disk(&h, &good, &disk, &["--via-loopback"]);
    assert!(
        !ok && err.contains("already holds data") && err.contains("--wipe"),
        "{err}"
    );
    assert_eq!(std::fs::read(&disk).unwrap(), b"precious");

    // ... nor is it made bigger: an existing file keeps its size, and must be big enough.
    let (ok, _, err) = to_disk(&h, &good, &disk, &["--via-loopback", "--wipe"]);
    assert!(!ok && err.contains("needs at least"), "{err}");
    assert_eq!(std::fs::read(&disk).unwrap(), b"precious");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));

    for (args, msg) in [
        (&[][..], "not supported yet"),
        (&["--via-loopback", "--filesystem", "xfs"][..], "xfs"),
        (&["--via-loopback", "--bootloader", "grub"][..], "grub"),
        (&["--via-loopback", "--root-size", "12Q"][..], "bad size"),
    ] {
        let (ok, _, err) = to_disk(&h, &good, &dir.join("other.raw"), args);
        assert!(!ok && err.contains(msg), "{args:?}: {err}");
        assert!(!dir.join("other.raw").exists());
    }
}
