//! A GUID partition table (UEFI 2.10, §5.3), written directly: protective MBR, primary header
//! and entry array at the start of the disk, backup array and header at the end.

use std::io::{Seek, SeekFrom, Write};

use crate::error::{Ctx, Error, Result};

/// Bytes in a logical sector. Every LBA here counts sectors of this size.
pub const SECTOR: u64 = 512;
/// Partition entries in each array (the usual 128 × 128 bytes = 32 sectors).
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
const ARRAY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;

/// A GUID as the textual form reads (`C12A7328-F81F-11D2-BA4B-00A0C93EC93B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Partition type of an EFI system partition.
    pub const ESP: Guid = Guid::from_u128(0xC12A7328_F81F_11D2_BA4B_00A0C93EC93B);
    /// Discoverable Partitions Specification: root partition, x86-64.
    pub const ROOT_X86_64: Guid = Guid::from_u128(0x4F68BCE3_E8CD_4DB1_96E7_FBCAF984B709);

    /// The GUID written as one hexadecimal number, in the order of its textual form
    /// (`0xC12A7328_F81F_11D2_BA4B_00A0C93EC93B`).
    pub const fn from_u128(v: u128) -> Guid {
        Guid(v.to_be_bytes())
    }

    /// A random (version 4) GUID.
    pub fn random() -> Result<Guid> {
        let mut b = [0u8; 16];
        random_bytes(&mut b)?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Ok(Guid(b))
    }

    /// The on-disk form: the first three fields little-endian.
    pub fn to_disk(self) -> [u8; 16] {
        let b = self.0;
        let mut d = b;
        d[0..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
        d[4..6].copy_from_slice(&[b[5], b[4]]);
        d[6..8].copy_from_slice(&[b[7], b[6]]);
        d
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// Fill `buf` from `/dev/urandom`; failing to read it is an [`Error::Io`].
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    use std::io::Read;
    Ok(std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .ctx(|| "reading /dev/urandom".to_string())?)
}

/// One partition, in sectors.
#[derive(Debug, Clone)]
pub struct Partition {
    /// What the partition holds, e.g. [`Guid::ESP`] or [`Guid::ROOT_X86_64`].
    pub type_guid: Guid,
    /// The partition's own unique GUID.
    pub guid: Guid,
    /// First sector of the partition.
    pub first_lba: u64,
    /// Last sector of the partition, inclusive.
    pub last_lba: u64,
    /// The partition label; only its first 36 UTF-16 code units are written.
    pub name: String,
}

impl Partition {
    /// Where the partition starts, in bytes from the start of the disk.
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }
    /// Length of the partition in bytes.
    pub fn size(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
}

/// The first sector partitions may use, and the last, on a disk of `sectors`.
pub fn usable(sectors: u64) -> (u64, u64) {
    (2 + ARRAY_SECTORS, sectors - 2 - ARRAY_SECTORS)
}

/// CRC-32 (IEEE 802.3, reflected), as the GPT headers use.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn header(sectors: u64, disk_guid: Guid, entries_crc: u32, primary: bool) -> [u8; SECTOR as usize] {
    let (first, last) = usable(sectors);
    let (my, alt, array) = if primary {
        (1, sectors - 1, 2)
    } else {
        (sectors - 1, 1, sectors - 1 - ARRAY_SECTORS)
    };
    let mut h = [0u8; SECTOR as usize];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&my.to_le_bytes());
    h[32..40].copy_from_slice(&alt.to_le_bytes());
    h[40..48].copy_from_slice(&first.to_le_bytes());
    h[48..56].copy_from_slice(&last.to_le_bytes());
    h[56..72].copy_from_slice(&disk_guid.to_disk());
    h[72..80].copy_from_slice(&array.to_le_bytes());
    h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
    h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Write a protective MBR and both GPT copies onto `disk` of `size` bytes.
pub fn write<W: Write + Seek>(
    disk: &mut W,
    size: u64,
    disk_guid: Guid,
    parts: &[Partition],
    what: &str,
) -> Result<()> {
    let sectors = size / SECTOR;
    let (first, last) = usable(sectors);
    if parts.len() as u64 > ENTRIES {
        return Err(Error::Invalid(format!("{what}: too many partitions")));
    }
    for p in parts {
        if p.first_lba < first || p.last_lba > last || p.first_lba > p.last_lba {
            return Err(Error::Invalid(format!(
                "{what}: partition {} ({}..{}) does not fit in sectors {first}..{last}",
                p.name, p.first_lba, p.last_lba
            )));
        }
    }
    let mut array = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in parts.iter().enumerate() {
        let e = &mut array[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid.to_disk());
        e[16..32].copy_from_slice(&p.guid.to_disk());
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        for (j, u) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
        }
    }
    let entries_crc = crc32(&array);
    let mut mbr = [0u8; SECTOR as usize];
    let pe = &mut mbr[446..462];
    pe[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    pe[4] = 0xEE;
    pe[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    pe[8..12].copy_from_slice(&1u32.to_le_bytes());
    pe[12..16].copy_from_slice(&((sectors - 1).min(u32::MAX as u64) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let mut put = |off: u64, data: &[u8]| -> Result<()> {
        Ok(disk
            .seek(SeekFrom::Start(off))
            .and_then(|_| disk.write_all(data))
            .ctx(|| format!("{what}: writing the partition table at byte {off}"))?)
    };
    put(0, &mbr)?;
    put(SECTOR, &header(sectors, disk_guid, entries_crc, true))?;
    put(2 * SECTOR, &array)?;
    put((sectors - 1 - ARRAY_SECTORS) * SECTOR, &array)?;
    put(
        (sectors - 1) * SECTOR,
        &header(sectors, disk_guid, entries_crc, false),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn guid_text_and_disk_order() {
        assert_eq!(
            Guid::ESP.to_string(),
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
        );
        assert_eq!(
            Guid::ESP.to_disk()[..4],
            [0x28, 0x73, 0x2A, 0xC1],
            "first field little-endian on disk"
        );
        let g = Guid::random().unwrap();
        assert_eq!(g.0[6] >> 4, 4);
    }

    #[test]
    fn refuses_partitions_outside_the_usable_range() {
        let mut disk = std::io::Cursor::new(vec![0u8; 4 << 20]);
        let p = Partition {
            type_guid: Guid::ESP,
            guid: Guid::ESP,
            first_lba: 2048,
            last_lba: 8191,
            name: "ESP".into(),
        };
        let err = write(&mut disk, 4 << 20, Guid::ESP, &[p], "disk.raw").unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }
}
