//! Two root filesystems compared as a person would: kind, mode, owner, content, xattrs,
//! device numbers and hardlinks, per path; umoci as the oracle.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Stdio};

use super::sh;

/// What a person would compare in two root filesystems, per path.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct EntryView {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: String,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub rdev: u64,
    /// For regular files: the sorted other paths sharing this inode.
    pub links: Vec<String>,
}

pub fn snapshot(root: &Path) -> BTreeMap<String, EntryView> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    fn rec(
        root: &Path,
        p: &Path,
        out: &mut BTreeMap<String, EntryView>,
        inodes: &mut BTreeMap<u64, Vec<String>>,
    ) {
        let m = std::fs::symlink_metadata(p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let ft = m.file_type();
        let (kind, content) = if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_symlink() {
            (
                "symlink",
                std::fs::read_link(p).unwrap().display().to_string(),
            )
        } else if ft.is_file() {
            let data = std::fs::read(p).unwrap();
            ("file", format!("{:x}", sha2::Sha256::digest(&data)))
        } else if ft.is_fifo() {
            ("fifo", String::new())
        } else if ft.is_char_device() {
            ("chr", String::new())
        } else if ft.is_block_device() {
            ("blk", String::new())
        } else {
            ("other", String::new())
        };
        let mut xattrs = Vec::new();
        if let Ok(names) = xattr_list(p) {
            for n in names {
                xattrs.push((n.clone(), xattr_get(p, &n)));
            }
        }
        xattrs.sort();
        if ft.is_file() {
            inodes.entry(m.ino()).or_default().push(rel.clone());
        }
        out.insert(
            rel,
            EntryView {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                content,
                xattrs,
                rdev: m.rdev(),
                links: vec![],
            },
        );
        if ft.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                rec(root, &e.unwrap().path(), out, inodes);
            }
        }
    }
    rec(root, root, &mut out, &mut inodes);
    for paths in inodes.values() {
        if paths.len() > 1 {
            for p in paths {
                let mut others: Vec<String> = paths.iter().filter(|x| *x != p).cloned().collect();
                others.sort();
                out.get_mut(p).unwrap().links = others;
            }
        }
    }
    out
}

fn xattr_list(p: &Path) -> std::io::Result<Vec<String>> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut buf)?;
    Ok(buf[..n]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

fn xattr_get(p: &Path, n: &str) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    let name = std::ffi::CString::new(n).unwrap();
    let len = rustix::fs::lgetxattr(p, name.as_c_str(), &mut buf).unwrap();
    buf.truncate(len);
    buf
}

/// Assert two root filesystems are the same entry for entry; print every difference.
pub fn assert_same_tree(ours: &Path, oracle: &Path) {
    let a = snapshot(ours);
    let b = snapshot(oracle);
    let mut diffs = Vec::new();
    for k in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if a.get(k) != b.get(k) {
            diffs.push(format!(
                "{k}:\n  ociboot: {:?}\n  oracle:  {:?}",
                a.get(k),
                b.get(k)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert!(a.len() > 1, "empty tree");
}

/// `umoci raw unpack` of a layout tag into DEST (umoci reads gzip but not zstd layers).
pub fn umoci_unpack(layout: &Path, tag: &str, dest: &Path) {
    sh(Command::new("umoci")
        .args(["--log", "error", "raw", "unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(dest)
        .stdout(Stdio::null()));
}
