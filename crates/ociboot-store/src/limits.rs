//! Resource limits on what an image may make the store hold. A layer's tar stream and the
//! registry serving it are hostile input: without limits, a path tens of thousands of
//! directories deep overflows the stack of every recursion over the tree, a GNU long name or a
//! PAX header claiming GiBs is read into memory whole, and a layer of millions of tiny entries
//! costs ~600 bytes of memory each.
//!
//! The limits are of two kinds. The kernel's own (`NAME_MAX`, `PATH_MAX`, the xattr sizes):
//! an entry beyond them could not be unpacked anyway, and refusing it at import means an
//! unpack never stops half-way on it. And budgets that bound the memory of an import and of a
//! merge whatever the input ([`Limits`]): the worst layer within all of them (1.83 million
//! entries, 262 thousand directories, 250 MB of paths) was measured at 1.4 GB peak for the
//! whole pull; a layer of a million short paths costs 0.55 GB.
//!
//! Every check names the layer and the entry (its path, shortened by [`crate::tree::show`]).

use crate::error::{Error, Result};
use crate::tree::show;

/// Most components in a path (`a/b/c` has 3), in a layer entry and in the merged tree (where a
/// path is counted after symlinks in its parents are resolved). Every recursion over a tree
/// (walk, unpack, drop) is bounded by it. ostree refuses trees deeper than 256
/// (`OSTREE_MAX_RECURSION`), so no image bootc can deploy is refused here.
pub const MAX_DEPTH: usize = 256;

/// Longest path, in bytes, of an entry, a hardlink target or a symlink target: `PATH_MAX`
/// (4096) less its terminating NUL. Unpack links a hardlink group's members by their path,
/// and `symlink(2)` refuses longer targets.
pub const MAX_PATH: usize = 4095;

/// Longest name of one path component, in bytes: `NAME_MAX`.
pub const MAX_NAME: usize = 255;

/// Longest xattr name, in bytes: `XATTR_NAME_MAX`.
pub const MAX_XATTR_NAME: usize = 255;

/// Largest xattr value, in bytes: `XATTR_SIZE_MAX`.
pub const MAX_XATTR_VALUE: usize = 64 << 10;

/// Largest GNU long name (`L`) or long link (`K`) entry, in bytes: a path of [`MAX_PATH`] with
/// its NUL and room to spare. The tar parser reads such an entry into memory whole; a larger one
/// is refused from its header, before a byte of it is read.
pub const MAX_GNU_LONG_NAME: u64 = 8 << 10;

/// Largest PAX extended header (`x`, or global `g`), in bytes. It holds the path, the link
/// target, owner, times and the xattrs of one entry (SELinux labels, capabilities, ACLs: a few
/// hundred bytes in practice). Refused from its header, before it is read.
pub const MAX_PAX_HEADER: u64 = 1 << 20;

/// Most tar entries in one layer, and most nodes in an image's merged tree: 2 Mi. A whole
/// desktop distribution has 300–400 thousand files and a bootc base image under 100
/// thousand, so this leaves five times the largest real OS image; at ~550 bytes of memory per
/// entry while a layer is imported and merged, a pull stays near 1.2 GB.
pub const MAX_ENTRIES: u64 = 2 << 20;

/// Most directories in an image's merged tree: 256 Ki. A directory with any child costs
/// ~1.5 KiB of memory however few it has (a B-tree leaf of 11 slots), so a tree of chains of
/// single-child directories would cost seven times more per entry than a real one. A whole
/// desktop distribution has under 50 thousand directories.
pub const MAX_DIRECTORIES: u64 = 256 << 10;

/// Most bytes of paths, link targets and xattrs that one layer's entries, or one merged tree's
/// nodes (names, link targets, xattrs), may hold: 256 MiB, which is 128 bytes per entry at
/// [`MAX_ENTRIES`] (real paths average well under 100). It bounds the memory that the
/// per-entry limits alone would not (2 Mi entries with 4 KiB paths would be 8 GiB), and keeps
/// every layer and tree record well within the record format's 1 GiB.
pub const MAX_METADATA: u64 = 256 << 20;

/// The budgets of one import or merge: [`MAX_ENTRIES`], [`MAX_DIRECTORIES`] and
/// [`MAX_METADATA`]. Tests use smaller ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries of a layer, and most nodes of a merged tree.
    pub entries: u64,
    /// Most directories of a merged tree.
    pub directories: u64,
    /// Most bytes of paths, link targets and xattrs of a layer, or of a merged tree.
    pub metadata: u64,
}

impl Limits {
    /// The store's limits.
    pub const DEFAULT: Limits = Limits {
        entries: MAX_ENTRIES,
        directories: MAX_DIRECTORIES,
        metadata: MAX_METADATA,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// A size in words for messages: `8 KiB`, `3 GiB`, `100 bytes`.
pub fn human(n: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n & ((1 << shift) - 1) == 0 {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

/// Check a normalised path (no leading `/`, components joined by one `/`) against
/// [`MAX_PATH`], [`MAX_DEPTH`] and [`MAX_NAME`]. `what` names the layer and the entry, `role`
/// what the path is ("path", "hardlink target", …).
pub fn check_path(path: &[u8], what: &str, role: &str) -> Result<()> {
    let fail = |m: String| Err(Error::Limit(format!("{what}: {role} {}: {m}", show(path))));
    if path.len() > MAX_PATH {
        return fail(format!(
            "{} bytes long, more than the limit of {MAX_PATH}",
            path.len()
        ));
    }
    let mut depth = 0;
    for c in path.split(|&b| b == b'/') {
        depth += 1;
        if c.len() > MAX_NAME {
            return fail(format!(
                "a name of {} bytes, more than the limit of {MAX_NAME} (NAME_MAX)",
                c.len()
            ));
        }
    }
    if depth > MAX_DEPTH {
        return fail(format!(
            "{depth} components deep, more than the limit of {MAX_DEPTH}"
        ));
    }
    Ok(())
}

/// Check a symlink target: not empty, no NUL, at most [`MAX_PATH`] bytes.
pub fn check_symlink_target(t: &[u8], what: &str) -> Result<()> {
    if t.is_empty() || t.contains(&0) {
        return Err(Error::Layer(format!(
            "{what}: empty or invalid symlink target"
        )));
    }
    if t.len() > MAX_PATH {
        return Err(Error::Limit(format!(
            "{what}: symlink target of {} bytes, more than the limit of {MAX_PATH}",
            t.len()
        )));
    }
    Ok(())
}

/// Check one xattr against [`MAX_XATTR_NAME`] and [`MAX_XATTR_VALUE`].
pub fn check_xattr(name: &[u8], value: &[u8], what: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_XATTR_NAME || value.len() > MAX_XATTR_VALUE {
        return Err(Error::Limit(format!(
            "{what}: xattr {} ({} bytes, value {} bytes): names must have 1 to \
             {MAX_XATTR_NAME} bytes and values at most {MAX_XATTR_VALUE}",
            show_name(name),
            name.len(),
            value.len()
        )));
    }
    Ok(())
}

/// A name for messages, shortened when long.
fn show_name(n: &[u8]) -> String {
    let s = String::from_utf8_lossy(&n[..n.len().min(64)]).into_owned();
    if n.len() > 64 {
        format!("{s}…")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit_msg(r: Result<()>) -> String {
        match r {
            Err(Error::Limit(m)) => m,
            other => panic!("expected a limit error, got {other:?}"),
        }
    }

    #[test]
    fn paths_within_the_kernel_limits_pass() {
        let name = vec![b'n'; MAX_NAME];
        check_path(&name, "l", "path").unwrap();
        let deep = vec!["d"; MAX_DEPTH].join("/");
        check_path(deep.as_bytes(), "l", "path").unwrap();
        let long = [&name[..]; 15].join(&b'/');
        assert!(long.len() <= MAX_PATH);
        check_path(&long, "l", "path").unwrap();
        check_path(b"", "l", "path").unwrap();
    }

    #[test]
    fn paths_beyond_them_are_refused_naming_the_entry() {
        let m = limit_msg(check_path(&[b'n'; MAX_NAME + 1], "layer L", "path"));
        assert!(
            m.starts_with("layer L: path /nnn") && m.contains("NAME_MAX"),
            "{m}"
        );
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        let m = limit_msg(check_path(deep.as_bytes(), "layer L", "hardlink target"));
        assert!(m.contains("257 components deep"), "{m}");
        let long = [&[b'n'; 200][..]; 21].join(&b'/');
        let m = limit_msg(check_path(&long, "layer L", "path"));
        assert!(m.contains("4220 bytes long"), "{m}");
        // The message shows the start of a long path only.
        assert!(m.len() < 1024, "{m}");
    }

    #[test]
    fn symlink_targets_and_xattrs() {
        check_symlink_target(&[b'a'; MAX_PATH], "l").unwrap();
        let m = limit_msg(check_symlink_target(&[b'a'; MAX_PATH + 1], "l"));
        assert!(m.contains("4096 bytes"), "{m}");
        assert!(matches!(
            check_symlink_target(b"", "l"),
            Err(Error::Layer(_))
        ));
        check_xattr(b"user.a", &[0; MAX_XATTR_VALUE], "l").unwrap();
        limit_msg(check_xattr(b"user.a", &[0; MAX_XATTR_VALUE + 1], "l"));
        limit_msg(check_xattr(&[b'x'; MAX_XATTR_NAME + 1], b"", "l"));
    }

    #[test]
    fn sizes_in_words() {
        assert_eq!(human(8 << 10), "8 KiB");
        assert_eq!(human(3 << 30), "3 GiB");
        assert_eq!(human(1 << 20), "1 MiB");
        assert_eq!(human(4097), "4097 bytes");
    }
}
