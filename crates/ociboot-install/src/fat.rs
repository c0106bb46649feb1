//! The EFI system partition: a FAT32 filesystem written into its place in the disk image by
//! the `fatfs` crate, from a staging directory (no vfat driver, no mount).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Ctx, Error, Result};

/// A window `[start, start + len)` of a file, seen as a whole device.
pub struct Slice<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Slice<'a> {
    /// The `len` bytes of `file` from byte offset `start`. Reads end at the end of the window and
    /// writes past it fail, so nothing outside the partition is touched.
    pub fn new(file: &'a File, start: u64, len: u64) -> Slice<'a> {
        Slice {
            file,
            start,
            len,
            pos: 0,
        }
    }

    fn room(&self, want: usize) -> usize {
        want.min(self.len.saturating_sub(self.pos) as usize)
    }
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.room(buf.len());
        let n = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Slice<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.room(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        let n = self.file.write_at(&buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Slice<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(n) if n <= self.len => {
                self.pos = n;
                Ok(n)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the partition",
            )),
        }
    }
}

/// `XXXX-XXXX`, as blkid and /etc/fstab name a FAT volume.
pub fn volume_id_string(id: u32) -> String {
    format!("{:04X}-{:04X}", id >> 16, id & 0xffff)
}

/// Format the window as FAT32 and copy `src` (directories and regular files) into it.
pub fn write_esp(
    disk: &File,
    start: u64,
    len: u64,
    volume_id: u32,
    label: &str,
    src: &Path,
) -> Result<()> {
    let what = format!("the EFI system partition at byte {start}");
    let mut lab = [b' '; 11];
    for (d, s) in lab.iter_mut().zip(label.bytes()) {
        *d = s.to_ascii_uppercase();
    }
    let opts = fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat32)
        .volume_id(volume_id)
        .volume_label(lab);
    fatfs::format_volume(Slice::new(disk, start, len), opts)
        .ctx(|| format!("formatting {what} as FAT32"))?;
    let fs = fatfs::FileSystem::new(Slice::new(disk, start, len), fatfs::FsOptions::new())
        .ctx(|| format!("opening {what}"))?;
    copy_dir(&fs.root_dir(), src, &what)?;
    fs.unmount().ctx(|| format!("closing {what}"))?;
    Ok(())
}

fn copy_dir<T: fatfs::ReadWriteSeek>(dir: &fatfs::Dir<T>, src: &Path, what: &str) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(src)
        .at("reading", src)?
        .collect::<io::Result<Vec<_>>>()
        .at("reading", src)?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let p = e.path();
        let name =
            e.file_name().to_str().map(str::to_string).ok_or_else(|| {
                Error::Invalid(format!("{}: not a valid FAT file name", p.display()))
            })?;
        let ft = e.file_type().at("reading", &p)?;
        if ft.is_dir() {
            let sub = dir
                .create_dir(&name)
                .ctx(|| format!("{what}: creating {}", p.display()))?;
            copy_dir(&sub, &p, what)?;
        } else if ft.is_file() {
            let mut f = dir
                .create_file(&name)
                .ctx(|| format!("{what}: creating {}", p.display()))?;
            let mut s = File::open(&p).at("opening", &p)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = s.read(&mut buf).at("reading", &p)?;
                if n == 0 {
                    break;
                }
                f.write_all(&buf[..n]).map_err(|e| {
                    let hint = if e.kind() == io::ErrorKind::Other {
                        " (is the partition full?)"
                    } else {
                        ""
                    };
                    Error::Io(ociboot_fs::IoError {
                        context: format!("{what}: writing {}{hint}", p.display()),
                        path: Some(p.clone()),
                        source: e,
                    })
                })?;
            }
            f.flush()
                .ctx(|| format!("{what}: writing {}", p.display()))?;
        } else {
            return Err(Error::Invalid(format!(
                "{}: only directories and regular files can go on the FAT ESP",
                p.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_tree_that_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("esp");
        std::fs::create_dir_all(src.join("loader/entries")).unwrap();
        std::fs::write(src.join("loader/loader.conf"), "default ociboot-0.conf\n").unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(src.join("loader/entries/ociboot-0.conf"), &big).unwrap();
        let img = d.path().join("disk");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&img)
            .unwrap();
        f.set_len(1 << 20 | 300 << 20).unwrap();
        write_esp(&f, 1 << 20, 300 << 20, 0x1234_abcd, "esp", &src).unwrap();
        let fs =
            fatfs::FileSystem::new(Slice::new(&f, 1 << 20, 300 << 20), fatfs::FsOptions::new())
                .unwrap();
        assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
        assert_eq!(fs.volume_id(), 0x1234_abcd);
        let mut back = Vec::new();
        fs.root_dir()
            .open_file("loader/entries/ociboot-0.conf")
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == big, "file content differs after the round trip");
        assert_eq!(volume_id_string(0x1234_abcd), "1234-ABCD");
    }
}
