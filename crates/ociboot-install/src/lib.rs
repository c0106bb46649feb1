//! # ociboot-install: installing to a disk
//!
//! The fourth stage of ociboot's data flow. `install to-disk` lays out a whole disk: a GUID
//! partition table with the Discoverable Partitions Specification's type GUIDs, an EFI system
//! partition (FAT32) carrying systemd-boot from the image, the boot entries and the kernels,
//! and a root filesystem holding the store and the first deployment.
//!
//! Nothing is mounted: the root filesystem is made from a staging directory by `mkfs.ext4 -d`
//! at its offset in the image, the FAT is written by the `fatfs` crate and the GPT by
//! [`gpt`]. So disk images can be built without loop devices, vfat in the kernel, or (given a
//! store that can be written) privileges.

mod error;
pub mod fat;
pub mod gpt;
pub mod todisk;

pub use error::{Error, Result};
pub use todisk::{install_to_disk, DiskOptions, DiskReport, RootFs};
