//! The `ociboot` command: a thin layer of argument parsing and output over the library crates.

mod cli;
mod image;
mod output;
mod progress;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let filter = if cli.verbose > 0 { "debug" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OCIBOOT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let g = cli::Global {
        sysroot: cli.sysroot.clone(),
        quiet: cli.quiet,
    };
    match cli.command {
        cli::Command::Image(cmd) => image::run(&g, cmd),
    }
}
