//! Is an executable statically linked? Read from its ELF program headers: a dynamically linked
//! executable names its loader in a `PT_INTERP` header, a static one (static-pie included) has
//! none. Only 64-bit little-endian files are accepted (what ociboot is built for); every offset
//! is checked against the file's length before it is read.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// How an ELF executable is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfLinking {
    /// No program interpreter: runs before any shared library is reachable.
    Static,
    /// Has a `PT_INTERP` header (a dynamic loader such as /lib64/ld-linux-x86-64.so.2).
    Dynamic,
}

/// Why a file's linking could not be told.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// The file could not be opened (a symlink, say, which is not followed) or read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error from the system.
        #[source]
        source: io::Error,
    },
    /// The file is not a 64-bit little-endian ELF executable, or its headers are malformed.
    #[error("{}: not a 64-bit little-endian ELF executable ({why})", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, such as `no ELF magic` or `truncated`.
        why: &'static str,
    },
}

const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
const PT_INTERP: u32 = 3;
/// e_phnum value meaning "the real count is elsewhere" (PN_XNUM); never seen in executables.
const PN_XNUM: usize = 0xffff;
/// Program header tables are a few hundred bytes; anything much larger is not a real one.
const MAX_PHDR_TABLE: usize = 1 << 20;

/// How the ELF executable at `path` is linked. A symlink is not followed (it is an error).
pub fn elf_linking(path: &Path) -> Result<ElfLinking, ElfError> {
    let io_err = |source| ElfError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(io_err)?;
    let len = f.metadata().map_err(io_err)?.len();
    linking_of(&mut f, len).map_err(|e| match e {
        Malformed::Io(source) => io_err(source),
        Malformed::Invalid(why) => ElfError::Invalid {
            path: path.to_path_buf(),
            why,
        },
    })
}

/// True if the file at `path` is a statically linked ELF executable (no `PT_INTERP`).
pub fn is_static_elf(path: &Path) -> Result<bool, ElfError> {
    Ok(elf_linking(path)? == ElfLinking::Static)
}

#[derive(Debug)]
enum Malformed {
    Io(io::Error),
    Invalid(&'static str),
}

impl From<io::Error> for Malformed {
    fn from(e: io::Error) -> Malformed {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Malformed::Invalid("truncated")
        } else {
            Malformed::Io(e)
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> usize {
    usize::from(u16::from_le_bytes([b[o], b[o + 1]]))
}

/// The linking of the ELF file `r` of `len` bytes.
fn linking_of(r: &mut (impl Read + Seek), len: u64) -> Result<ElfLinking, Malformed> {
    use Malformed::Invalid;
    let mut eh = [0u8; EHDR_LEN];
    if len < EHDR_LEN as u64 {
        return Err(Invalid("shorter than an ELF header"));
    }
    r.seek(SeekFrom::Start(0))?;
    r.read_exact(&mut eh)?;
    if eh[..4] != *b"\x7fELF" {
        return Err(Invalid("no ELF magic"));
    }
    if eh[4] != 2 {
        return Err(Invalid("not 64-bit"));
    }
    if eh[5] != 1 {
        return Err(Invalid("not little-endian"));
    }
    // e_type: ET_EXEC or ET_DYN (PIE executables, static-pie included).
    if !matches!(u16_at(&eh, 0x10), 2 | 3) {
        return Err(Invalid("not an executable"));
    }
    let mut phoff = [0u8; 8];
    phoff.copy_from_slice(&eh[0x20..0x28]);
    let phoff = u64::from_le_bytes(phoff);
    let (phentsize, phnum) = (u16_at(&eh, 0x36), u16_at(&eh, 0x38));
    if phnum == 0 {
        return Err(Invalid("no program headers"));
    }
    if phnum == PN_XNUM || phentsize < PHDR_LEN {
        return Err(Invalid("bad program header table"));
    }
    let table = phentsize * phnum;
    if table > MAX_PHDR_TABLE || phoff.checked_add(table as u64).is_none_or(|end| end > len) {
        return Err(Invalid("program headers past the end of the file"));
    }
    let mut ph = vec![0u8; table];
    r.seek(SeekFrom::Start(phoff))?;
    r.read_exact(&mut ph)?;
    let interp = ph
        .chunks_exact(phentsize)
        .any(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) == PT_INTERP);
    Ok(if interp {
        ElfLinking::Dynamic
    } else {
        ElfLinking::Static
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// A minimal 64-bit little-endian executable: the header, then program headers of the
    /// given types right after it.
    pub(crate) fn fake_elf(types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; EHDR_LEN];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[0x10] = 2; // ET_EXEC
        b[0x12] = 0x3e; // x86-64
        b[0x20..0x28].copy_from_slice(&(EHDR_LEN as u64).to_le_bytes());
        b[0x34] = EHDR_LEN as u8;
        b[0x36..0x38].copy_from_slice(&(PHDR_LEN as u16).to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for t in types {
            let mut h = vec![0u8; PHDR_LEN];
            h[..4].copy_from_slice(&t.to_le_bytes());
            b.extend(h);
        }
        b
    }

    fn parse(b: &[u8]) -> Result<ElfLinking, Malformed> {
        linking_of(&mut Cursor::new(b), b.len() as u64)
    }

    fn why(b: &[u8]) -> &'static str {
        match parse(b) {
            Err(Malformed::Invalid(w)) => w,
            other => panic!("expected an invalid file, got {other:?}"),
        }
    }

    #[test]
    fn interpreter_header_means_dynamic() {
        // PT_LOAD, PT_DYNAMIC: static (static-pie has a PT_DYNAMIC but no PT_INTERP).
        assert_eq!(parse(&fake_elf(&[1, 2])).unwrap(), ElfLinking::Static);
        assert_eq!(parse(&fake_elf(&[6, 3, 1])).unwrap(), ElfLinking::Dynamic);
    }

    #[test]
    fn malformed_files_are_refused() {
        assert_eq!(why(b"#!/bin/sh\n"), "shorter than an ELF header");
        let mut b = fake_elf(&[1]);
        b[0] = b'X';
        assert_eq!(why(&b), "no ELF magic");
        let mut b = fake_elf(&[1]);
        b[4] = 1;
        assert_eq!(why(&b), "not 64-bit");
        let mut b = fake_elf(&[1]);
        b[5] = 2;
        assert_eq!(why(&b), "not little-endian");
        let mut b = fake_elf(&[1]);
        b[0x10] = 1; // ET_REL
        assert_eq!(why(&b), "not an executable");
        assert_eq!(why(&fake_elf(&[])), "no program headers");
        let mut b = fake_elf(&[1]);
        b[0x36] = 8;
        assert_eq!(why(&b), "bad program header table");
        // The table runs past the end: truncated file, huge offset, offset overflow.
        let b = fake_elf(&[1, 3]);
        assert_eq!(
            why(&b[..b.len() - 1]),
            "program headers past the end of the file"
        );
        for off in [1u64 << 40, u64::MAX - 8] {
            let mut b = fake_elf(&[1]);
            b[0x20..0x28].copy_from_slice(&off.to_le_bytes());
            assert_eq!(why(&b), "program headers past the end of the file");
        }
    }

    #[test]
    fn real_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("static");
        std::fs::write(&p, fake_elf(&[1])).unwrap();
        assert!(is_static_elf(&p).unwrap());
        let script = d.path().join("script");
        std::fs::write(&script, b"#!/bin/sh\nexit 0\n").unwrap();
        let e = is_static_elf(&script).unwrap_err();
        assert!(e.to_string().contains(&*script.to_string_lossy()), "{e}");
        // A symlink is not followed.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(is_static_elf(&link), Err(ElfError::Io { .. })));
        // /bin/true is dynamically linked on every distribution this runs on. busybox, where
        // installed as /bin/busybox (busybox-static), and this test binary (the workspace
        // links statically): whatever ldd says.
        assert!(!is_static_elf(Path::new("/bin/true")).unwrap());
        assert_eq!(ldd_says_static(Path::new("/bin/true")), Some(false));
        let me = std::env::current_exe().unwrap();
        for p in [Path::new("/bin/busybox"), &me] {
            if let Some(statically) = ldd_says_static(p) {
                assert_eq!(is_static_elf(p).unwrap(), statically, "{}", p.display());
            }
        }
    }

    fn ldd_says_static(p: &Path) -> Option<bool> {
        if !p.exists() {
            return None;
        }
        let o = std::process::Command::new("ldd").arg(p).output().ok()?;
        let text = [o.stdout, o.stderr].concat();
        // "not a dynamic executable" (static), "statically linked" (static-pie).
        let text = String::from_utf8_lossy(&text);
        Some(text.contains("not a dynamic") || text.contains("statically linked"))
    }
}
