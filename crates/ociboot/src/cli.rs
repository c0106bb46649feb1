//! Command-line syntax (clap). bootc's verbs and flags where bootc has them.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Image-based Linux hosts from OCI container images.
///
/// ociboot pulls an operating system image from a registry, stores it deduplicated, deploys
/// it next to the running system and makes it boot, keeping the previous one for rollback.
#[derive(Debug, Parser)]
#[command(
    name = "ociboot",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_long_help = ENVIRONMENT
)]
pub struct Cli {
    /// Operate on the system rooted at PATH instead of the running one.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "/",
        env = "OCIBOOT_SYSROOT"
    )]
    pub sysroot: PathBuf,

    /// Print only errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,

    /// Log what is being done (repeat for more).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// The environment variables that change limits, shown by `--help` and in the man page.
const ENVIRONMENT: &str = "\
Environment:
  OCIBOOT_SYSROOT               the same as --sysroot
  OCIBOOT_MIN_FREE_SPACE        what a pull leaves free on the store's filesystem: bytes, with
                                K, M or G, or a percentage (default: 5%, at least 256M)
  OCIBOOT_REGISTRY_TIMEOUT      seconds to wait for a registry to connect or send (default 30)
  OCIBOOT_REGISTRY_MIN_RATE     bytes per second a registry response must average (default
                                2048; 0 for no minimum)
  OCIBOOT_REGISTRY_RATE_WINDOW  seconds that average is taken over (default 30)";

/// Options every command sees.
#[derive(Debug, Clone)]
pub struct Global {
    pub sysroot: PathBuf,
    pub quiet: bool,
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the booted, staged and rollback deployments.
    Status {
        /// Output format (default: humanreadable on a terminal, yaml otherwise).
        #[arg(long, value_enum)]
        format: Option<StatusFormat>,
        /// Same as --format=json.
        #[arg(long, hide = true, conflicts_with = "format")]
        json: bool,
        /// Only the booted deployment.
        #[arg(long)]
        booted: bool,
        /// Accepted for compatibility: only version 1 exists.
        #[arg(long, hide = true, value_parser = ["0", "1"])]
        format_version: Option<String>,
    },
    /// Download the image this system follows again and stage it if it changed.
    #[command(alias = "update")]
    Upgrade {
        /// Only fetch the manifest and config, and report whether an update is available.
        #[arg(long, conflicts_with_all = ["apply", "download_only", "from_downloaded"])]
        check: bool,
        /// Reboot into the update if one was staged.
        #[arg(long)]
        apply: bool,
        /// Stage the update but do not apply it at shutdown (see --from-downloaded).
        #[arg(long, conflicts_with = "apply")]
        download_only: bool,
        /// Let a staged --download-only update be applied at the next shutdown; no network.
        #[arg(long, conflicts_with = "download_only")]
        from_downloaded: bool,
    },
    /// Follow another image: pull it and stage it for the next boot.
    Switch {
        /// The image to switch to.
        #[arg(value_name = "TARGET")]
        target: String,
        /// How TARGET is reached.
        #[arg(long, value_enum, default_value_t = TransportArg::Registry)]
        transport: TransportArg,
        /// Keep the previous image in the store.
        #[arg(long)]
        retain: bool,
        /// Reboot into the new image.
        #[arg(long)]
        apply: bool,
    },
    /// Make the rollback deployment the next boot (no download). /etc changes made since
    /// the rollback deployment was left do not carry over.
    Rollback {
        /// Reboot into it.
        #[arg(long)]
        apply: bool,
    },
    /// Merge /etc into the staged deployment and make it the default (the shutdown unit runs this).
    FinalizeStaged,
    /// Keep a deployment from garbage collection (by index in boot order, or id).
    Pin {
        #[arg(value_name = "DEPLOYMENT")]
        deployment: String,
    },
    /// Let a pinned deployment be garbage-collected again.
    Unpin {
        #[arg(value_name = "DEPLOYMENT")]
        deployment: String,
    },
    /// Show how the booted system's /etc (or /var) drifted from its image.
    Diff {
        #[arg(value_enum, default_value_t = DiffWhat::Etc)]
        what: DiffWhat,
    },
    /// Remove what no deployment needs any more (runs after every change anyway).
    #[command(hide = true)]
    Cleanup,
    /// Install ociboot and an image onto a target.
    #[command(subcommand)]
    Install(InstallCommand),
    /// Manage the images in the store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Operations for building images (in a Containerfile).
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Print a shell completion script.
    #[command(hide = true)]
    Completion {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Write man pages for every command into DIR.
    #[command(hide = true)]
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Operations run by ociboot's systemd units.
    #[command(hide = true, subcommand)]
    Internals(InternalsCommand),
    /// Set up the root as at boot, without switching to it: the deployment named by
    /// ociboot= in CMDLINE, under PHYSICAL_ROOT (for tests, in a private mount namespace).
    /// At boot the same runs as PID 1 (init=…/usr/bin/ociboot), then starts /sbin/init.
    #[command(hide = true)]
    PrepareRoot {
        #[arg(long, value_name = "DIR")]
        physical_root: PathBuf,
        #[arg(long, value_name = "CMDLINE")]
        cmdline: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum InternalsCommand {
    /// Run the booted system's health checks (ociboot-health.service, before
    /// boot-complete.target); exits 1 when a required one fails.
    HealthCheck {
        /// The running system's root, where health.d, wanted.d and health.toml are read.
        #[arg(long, value_name = "PATH", default_value = "/")]
        root: PathBuf,
    },
    /// Record this boot's health verdict once boot-complete.target settled, and reboot a
    /// failed counted try after the configured delay (ociboot-health-assess.service).
    HealthAssess {
        /// The running system's root, where health.toml is read.
        #[arg(long, value_name = "PATH", default_value = "/")]
        root: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum StatusFormat {
    Humanreadable,
    Yaml,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TransportArg {
    Registry,
    Oci,
    OciArchive,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DiffWhat {
    Etc,
    Var,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Bootloader {
    None,
    Systemd,
    Grub,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Filesystem {
    Ext4,
    Xfs,
}

/// What both install commands take: the image, where updates come from, kernel arguments.
#[derive(Debug, clap::Args)]
pub struct InstallImage {
    /// The image to install (registry, oci:PATH[:TAG], oci-archive:PATH[:TAG]).
    #[arg(long, value_name = "REF")]
    pub source_imgref: String,
    /// The image the installed system follows for updates (default: the source).
    #[arg(long, value_name = "REF")]
    pub target_imgref: Option<String>,
    /// How --target-imgref is reached.
    #[arg(long, value_enum)]
    pub target_transport: Option<TransportArg>,
    /// Name of the stateroot (the set of deployments sharing one /var).
    #[arg(long, default_value = "default")]
    pub stateroot: String,
    /// Add a kernel argument (repeatable).
    #[arg(long = "karg", value_name = "KARG")]
    pub kargs: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum InstallCommand {
    /// Install into an empty directory or mounted filesystem (the physical root).
    ToFilesystem {
        #[command(flatten)]
        image: InstallImage,
        /// The root filesystem for the kernel (root=SPEC); empty for none.
        #[arg(long, value_name = "SPEC")]
        root_mount_spec: Option<String>,
        /// Which bootloader to install (only `none`, entries and kernels, for now).
        #[arg(long, value_enum, default_value_t = Bootloader::None)]
        bootloader: Bootloader,
        /// The target root.
        #[arg(value_name = "ROOT")]
        root: PathBuf,
    },
    /// Install onto a whole disk: GPT, EFI system partition with systemd-boot, root filesystem.
    ///
    /// With --via-loopback, DEVICE is a disk image file, built without mounting anything; an
    /// existing file keeps its size. `qemu-img convert -O qcow2` turns it into a VM disk.
    ToDisk {
        #[command(flatten)]
        image: InstallImage,
        /// DEVICE is a disk image file (the only kind supported so far).
        #[arg(long)]
        via_loopback: bool,
        /// Overwrite a DEVICE that already holds data.
        #[arg(long)]
        wipe: bool,
        /// The root filesystem type.
        #[arg(long, value_enum, default_value_t = Filesystem::Ext4)]
        filesystem: Filesystem,
        /// Size of the root partition (e.g. 4G, 2500M); default: twice the image plus 1 GiB,
        /// or the rest of an existing file.
        #[arg(long, value_name = "SIZE")]
        root_size: Option<String>,
        /// authorized_keys for root on the installed system.
        #[arg(long, value_name = "FILE")]
        root_ssh_authorized_keys: Option<PathBuf>,
        /// The bootloader, taken from the image.
        #[arg(long, value_enum, default_value_t = Bootloader::Systemd)]
        bootloader: Bootloader,
        /// The disk (with --via-loopback: the image file to create or overwrite).
        #[arg(value_name = "DEVICE")]
        device: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull an image into the store.
    ///
    /// REF is a registry image (quay.io/org/os:tag, docker://host:port/repo@sha256:…), an OCI
    /// layout directory (oci:PATH[:TAG]) or an OCI archive (oci-archive:PATH[:TAG]). Layers
    /// already in the store are not downloaded again.
    Pull {
        /// The image to pull.
        #[arg(value_name = "REF")]
        image: String,
    },
    /// List the images in the store.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Print an image's manifest and config as JSON (from the store, else from its source).
    Inspect {
        /// Image reference, or manifest digest of a stored image.
        #[arg(value_name = "REF")]
        image: String,
    },
    /// Write an image's merged root filesystem to DEST, pulling it first if needed.
    Unpack {
        /// Image reference, or manifest digest of a stored image.
        #[arg(value_name = "REF")]
        image: String,
        /// Directory to create (or an empty one).
        #[arg(value_name = "DEST")]
        dest: PathBuf,
    },
    /// Remove image references, then the content nothing else uses.
    #[command(alias = "remove")]
    Rm {
        /// Image references or manifest digests.
        #[arg(value_name = "REF", required = true)]
        images: Vec<String>,
    },
    /// Remove content no image references; prints what was freed.
    Prune,
    /// Check the store's consistency.
    Fsck {
        /// Also re-hash every object's content and metadata.
        #[arg(long)]
        contents: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Check the image for problems: run it as the last line of a Containerfile,
    /// `RUN ociboot container lint`.
    ///
    /// Exits with status 1 when a fatal lint finds something (or, with --fatal-warnings, any
    /// lint).
    Lint {
        /// The image's root filesystem.
        #[arg(long, value_name = "PATH", default_value = "/")]
        rootfs: PathBuf,
        /// Fail on warnings too.
        #[arg(long)]
        fatal_warnings: bool,
        /// Print every lint's name, level and description (YAML), and exit.
        #[arg(long)]
        list: bool,
        /// Do not run the lint NAME (repeatable).
        #[arg(long = "skip", value_name = "NAME")]
        skip: Vec<String>,
        /// Print every path a lint found, not only the first few.
        #[arg(long)]
        no_truncate: bool,
    },
}
