//! One 512-byte tar header block, parsed strictly: the checksum must match (the unsigned or the
//! signed sum, as GNU tar and Python's tarfile accept), every numeric field must be well-formed
//! octal (leading spaces, digits, then only NULs and spaces) or positive base-256 that fits, the
//! magic must be POSIX ustar or GNU, and the type must be one ociboot imports. Anything else is
//! refused with a message naming the field; nothing is guessed.

/// Bytes in a tar block.
pub const BLOCK: usize = 512;

/// What a header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (`0`, NUL, or `7`, contiguous).
    File,
    /// A hard link to an earlier entry (`1`).
    Hardlink,
    /// A symbolic link (`2`).
    Symlink,
    /// A character device (`3`).
    Char,
    /// A block device (`4`).
    Block,
    /// A directory (`5`).
    Dir,
    /// A FIFO (`6`).
    Fifo,
    /// A GNU long name for the next entry (`L`).
    LongName,
    /// A GNU long link target for the next entry (`K`).
    LongLink,
    /// PAX extended records for the next entry (`x`).
    Pax,
    /// PAX global records (`g`).
    PaxGlobal,
}

impl Kind {
    /// Whether this header only describes the entry after it.
    pub fn is_extension(self) -> bool {
        matches!(
            self,
            Kind::LongName | Kind::LongLink | Kind::Pax | Kind::PaxGlobal
        )
    }
}

/// The fields of one header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The entry's type.
    pub kind: Kind,
    /// The name, the ustar prefix joined to it (no NUL, possibly empty).
    pub name: Vec<u8>,
    /// The link target field (no NUL, possibly empty).
    pub link: Vec<u8>,
    /// The mode field's permission bits (`& 0o7777`; file type bits some writers add dropped).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Bytes of data that follow the header.
    pub size: u64,
    /// Modification time, seconds since the epoch (never negative).
    pub mtime: i64,
    /// Device numbers (zero unless a device).
    pub dev: (u32, u32),
}

/// Where a number field is and what it is called in messages.
const MODE: (usize, usize, &str) = (100, 8, "mode");
const UID: (usize, usize, &str) = (108, 8, "uid");
const GID: (usize, usize, &str) = (116, 8, "gid");
const SIZE: (usize, usize, &str) = (124, 12, "size");
const MTIME: (usize, usize, &str) = (136, 12, "mtime");
const CHKSUM: (usize, usize, &str) = (148, 8, "checksum");
const DEVMAJOR: (usize, usize, &str) = (329, 8, "devmajor");
const DEVMINOR: (usize, usize, &str) = (337, 8, "devminor");

/// The bytes of a NUL-terminated field up to its first NUL.
pub fn nts(f: &[u8]) -> &[u8] {
    match f.iter().position(|&b| b == 0) {
        Some(i) => &f[..i],
        None => f,
    }
}

/// A numeric field: octal (optional leading spaces, octal digits, then only NULs and spaces;
/// an all-NUL field is 0, as both references read it) or base-256 (a first byte of 0x80, then
/// a big-endian number that must fit in 64 bits). Negative base-256 (0xff), other high first
/// bytes, signs, underscores and anything after the terminator are refused.
pub fn number(b: &[u8; BLOCK], (at, len, name): (usize, usize, &str)) -> Result<u64, String> {
    let f = &b[at..at + len];
    if f[0] == 0x80 {
        let mut n: u64 = 0;
        for &x in &f[1..] {
            if n >> 56 != 0 {
                return Err(format!("base-256 {name} field overflows 64 bits"));
            }
            n = n << 8 | u64::from(x);
        }
        return Ok(n);
    }
    if f[0] & 0x80 != 0 {
        return Err(format!(
            "{name} field is negative or not a number (first byte {:#04x})",
            f[0]
        ));
    }
    let bad = || {
        Err(format!(
            "{name} field is not an octal number: {:?}",
            String::from_utf8_lossy(f)
        ))
    };
    if f.iter().all(|&x| x == 0) {
        return Ok(0);
    }
    let mut i = f.iter().take_while(|&&x| x == b' ').count();
    let start = i;
    let mut n: u64 = 0;
    while i < len && (b'0'..=b'7').contains(&f[i]) {
        // At most 12 digits: 36 bits, no overflow.
        n = n << 3 | u64::from(f[i] - b'0');
        i += 1;
    }
    if i == start || f[i..].iter().any(|&x| x != 0 && x != b' ') {
        return bad();
    }
    Ok(n)
}

/// The checksum stored in the header against the sums of its bytes (the checksum field
/// counted as spaces), unsigned or signed.
fn check_sum(b: &[u8; BLOCK]) -> Result<(), String> {
    let stored = number(b, CHKSUM)?;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &x) in b.iter().enumerate() {
        let x = if (148..156).contains(&i) { b' ' } else { x };
        unsigned += u64::from(x);
        signed += i64::from(x as i8);
    }
    if stored == unsigned || i64::try_from(stored).ok() == Some(signed) {
        return Ok(());
    }
    Err(format!(
        "bad header checksum: stored {stored:o}, the header sums to {unsigned:o}"
    ))
}

/// Parse one header block; `None` for an all-zero block (the end of the archive).
pub fn parse(b: &[u8; BLOCK]) -> Result<Option<Header>, String> {
    if b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    check_sum(b)?;
    let gnu = match &b[257..265] {
        b"ustar\x0000" => false,
        b"ustar  \0" => true,
        _ => return Err("not a POSIX ustar or GNU tar header (bad magic)".into()),
    };
    let kind = match b[156] {
        b'0' | 0 | b'7' => Kind::File,
        b'1' => Kind::Hardlink,
        b'2' => Kind::Symlink,
        b'3' => Kind::Char,
        b'4' => Kind::Block,
        b'5' => Kind::Dir,
        b'6' => Kind::Fifo,
        b'L' => Kind::LongName,
        b'K' => Kind::LongLink,
        b'x' => Kind::Pax,
        b'g' => Kind::PaxGlobal,
        b'S' => return Err("unsupported tar entry type 'S' (GNU sparse file)".into()),
        t => {
            return Err(format!(
                "unsupported tar entry type {:?}",
                char::from(t).escape_default().to_string()
            ))
        }
    };
    let mut name = nts(&b[0..100]).to_vec();
    if b[156] == 0 && name.ends_with(b"/") {
        // Python's tarfile takes this for an old tar's directory, GNU tar for a file.
        return Err("a regular file (type NUL) whose name ends in '/'".into());
    }
    let prefix = nts(&b[345..500]);
    if gnu {
        // GNU headers keep times there, which Python's tarfile would read as a prefix.
        if !prefix.is_empty() {
            return Err("GNU header with data in the ustar prefix field".into());
        }
    } else if !prefix.is_empty() {
        name = [prefix, b"/", &name].concat();
    }
    let small = |f: (usize, usize, &str)| -> Result<u32, String> {
        u32::try_from(number(b, f)?).map_err(|_| format!("{} field out of range", f.2))
    };
    // 4294967295 is (uid_t)-1, which chown(2) takes for "leave unchanged".
    let id = |f: (usize, usize, &str)| match small(f)? {
        u32::MAX => Err(format!("{} field out of range", f.2)),
        n => Ok(n),
    };
    let mtime = i64::try_from(number(b, MTIME)?).map_err(|_| "mtime field out of range")?;
    Ok(Some(Header {
        kind,
        name,
        link: nts(&b[157..257]).to_vec(),
        mode: (number(b, MODE)? & 0o7777) as u32,
        uid: id(UID)?,
        gid: id(GID)?,
        size: number(b, SIZE)?,
        mtime,
        dev: (small(DEVMAJOR)?, small(DEVMINOR)?),
    }))
}
