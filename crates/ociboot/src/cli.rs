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
    max_term_width = 100
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

/// Options every command sees.
#[derive(Debug, Clone)]
pub struct Global {
    pub sysroot: PathBuf,
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the images in the store.
    #[command(subcommand)]
    Image(ImageCommand),
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
