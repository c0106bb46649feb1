//! Disk space: a pull must never fill the filesystem holding the store. Before a pull the
//! compressed sizes the manifest declares for the missing layers are checked against the free
//! space; while layers unpack, the free space is checked again every few MiB written, and the
//! pull is refused (and rolled back) before the filesystem would drop under a margin.
//!
//! The margin is `max(5 % of the filesystem, 256 MiB)`, or `OCIBOOT_MIN_FREE_SPACE` (bytes,
//! with an optional `K`, `M`, `G` suffix, or a percentage of the filesystem, `10%`).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{Mode, OFlags};

use crate::error::{Error, IoContext, Result};

/// Free space is measured again after this many bytes were written.
const CHECK_EVERY: u64 = 4 << 20;

/// What must stay free on the store's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Margin {
    /// A number of bytes.
    Bytes(u64),
    /// A percentage of the filesystem's size.
    Percent(u64),
    /// `max(5 %, 256 MiB)`.
    Default,
}

impl Margin {
    /// `OCIBOOT_MIN_FREE_SPACE`, or the default. A value that does not parse is an error
    /// naming it: a typo must not turn the guard off.
    pub fn from_env() -> Result<Margin> {
        match std::env::var("OCIBOOT_MIN_FREE_SPACE") {
            Ok(v) => Margin::parse(&v).ok_or_else(|| {
                Error::Usage(format!(
                    "OCIBOOT_MIN_FREE_SPACE={v:?}: expected bytes (with K, M or G) or a percentage"
                ))
            }),
            Err(_) => Ok(Margin::Default),
        }
    }

    /// `12345`, `64K`, `256M`, `2G`, `10%`.
    pub fn parse(s: &str) -> Option<Margin> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            return p.parse().ok().filter(|p| *p <= 100).map(Margin::Percent);
        }
        let (num, mult) = match s.as_bytes().last()? {
            b'K' | b'k' => (&s[..s.len() - 1], 1u64 << 10),
            b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
            b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
            _ => (s, 1),
        };
        num.parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .map(Margin::Bytes)
    }

    /// The bytes to keep free on a filesystem of `total` bytes.
    pub fn bytes(&self, total: u64) -> u64 {
        match self {
            Margin::Bytes(b) => *b,
            Margin::Percent(p) => total / 100 * p,
            Margin::Default => (total / 20).max(256 << 20),
        }
    }
}

/// Free and total bytes of the filesystem holding `fd`.
fn statvfs(fd: &OwnedFd, path: &Path) -> Result<(u64, u64)> {
    let st = rustix::fs::fstatvfs(fd).at("statvfs", path)?;
    Ok((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

/// Watches the free space of the store's filesystem while one layer is unpacked.
#[derive(Debug)]
pub struct SpaceGuard {
    fd: OwnedFd,
    path: PathBuf,
    margin: Margin,
    what: String,
    written: AtomicU64,
    since_check: AtomicU64,
}

impl SpaceGuard {
    /// Watch the filesystem of `dir`; `what` (image and layer) is named in the error.
    pub fn new(dir: &Path, margin: Margin, what: &str) -> Result<SpaceGuard> {
        let fd = rustix::fs::open(
            dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .at("opening", dir)?;
        Ok(SpaceGuard {
            fd,
            path: dir.to_path_buf(),
            margin,
            what: what.to_string(),
            written: AtomicU64::new(0),
            since_check: AtomicU64::new(CHECK_EVERY),
        })
    }

    /// About to write `n` bytes: fails, naming the layer, the sizes and the filesystem, when
    /// the next few MiB would take the filesystem under the margin.
    pub fn charge(&self, n: u64) -> Result<()> {
        let written = self.written.fetch_add(n, Ordering::Relaxed) + n;
        let since = self.since_check.fetch_add(n, Ordering::Relaxed) + n;
        if since < CHECK_EVERY {
            return Ok(());
        }
        self.since_check.store(0, Ordering::Relaxed);
        let (free, total) = statvfs(&self.fd, &self.path)?;
        let keep = self.margin.bytes(total);
        let ahead = CHECK_EVERY.max(n);
        if free < keep.saturating_add(ahead) {
            return Err(Error::Limit(format!(
                "{}: not enough disk space: {written} bytes unpacked so far and more needed, \
                 {free} bytes free on the filesystem of {}, {keep} of which must stay free \
                 (OCIBOOT_MIN_FREE_SPACE)",
                self.what,
                self.path.display()
            )));
        }
        Ok(())
    }
}

/// Before a pull: the missing layers' compressed sizes (`need`, the least their content will
/// take) must fit with the margin to spare. `what` names the image.
pub fn check_before(dir: &Path, margin: Margin, need: u64, what: &str) -> Result<()> {
    let fd = rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at("opening", dir)?;
    let (free, total) = statvfs(&fd, dir)?;
    let keep = margin.bytes(total);
    if free < keep.saturating_add(need) {
        return Err(Error::Limit(format!(
            "{what}: not enough disk space: its layers need at least {need} bytes (their \
             compressed size), {free} bytes free on the filesystem of {}, {keep} of which \
             must stay free (OCIBOOT_MIN_FREE_SPACE)",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_parse_and_scale() {
        assert_eq!(Margin::parse("12345"), Some(Margin::Bytes(12345)));
        assert_eq!(Margin::parse("64K"), Some(Margin::Bytes(64 << 10)));
        assert_eq!(Margin::parse("8M"), Some(Margin::Bytes(8 << 20)));
        assert_eq!(Margin::parse("2g"), Some(Margin::Bytes(2 << 30)));
        assert_eq!(Margin::parse("10%"), Some(Margin::Percent(10)));
        for bad in ["", "x", "101%", "-1", "1T", "99999999999999999999G"] {
            assert_eq!(Margin::parse(bad), None, "{bad}");
        }
        assert_eq!(Margin::Default.bytes(1 << 30), 256 << 20);
        assert_eq!(Margin::Default.bytes(100 << 30), 5 << 30);
        assert_eq!(Margin::Percent(10).bytes(1000), 100);
    }

    #[test]
    fn the_guard_refuses_before_the_margin_and_names_the_layer() {
        let dir = tempfile::tempdir().unwrap();
        // A margin larger than any filesystem: the first check refuses.
        let g = SpaceGuard::new(dir.path(), Margin::Percent(100), "img: layer sha256:ab").unwrap();
        let e = g.charge(CHECK_EVERY).unwrap_err().to_string();
        assert!(
            e.contains("img: layer sha256:ab") && e.contains("disk space"),
            "{e}"
        );
        let g = SpaceGuard::new(dir.path(), Margin::Bytes(0), "img").unwrap();
        g.charge(1).unwrap();
        let e = check_before(dir.path(), Margin::Bytes(0), u64::MAX / 2, "img").unwrap_err();
        assert!(e.to_string().contains("at least"), "{e}");
        check_before(dir.path(), Margin::Bytes(0), 1, "img").unwrap();
    }
}
