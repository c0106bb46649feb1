//! The `ociboot` command: a thin layer of argument parsing and output over the library crates.

mod cli;
mod container;
mod host;
mod image;
mod init;
mod install;
mod internals;
mod output;
mod progress;

fn main() {
    // Started by the kernel as init=…/usr/bin/ociboot: set up the root, then run the real init.
    if rustix::process::getpid().is_init() {
        init::main();
    }
    let matches = <cli::Cli as clap::CommandFactory>::command().get_matches();
    // What a command waiting for our lock is told we do: the verbs, never the arguments.
    let mut verb = Vec::new();
    let mut m = &matches;
    while let Some((name, sub)) = m.subcommand() {
        verb.push(name);
        m = sub;
    }
    ociboot_store::lock::set_verb(&verb.join(" "));
    let cli = match <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
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
        verbose: cli.verbose,
    };
    match cli.command {
        cli::Command::Image(cmd) => image::run(&g, cmd),
        cli::Command::Container(cmd) => container::run(&g, cmd),
        cli::Command::Completion { shell } => {
            let mut cmd = <cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "ociboot", &mut std::io::stdout());
            Ok(())
        }
        cli::Command::Man { dir } => write_man_pages(&dir),
        cli::Command::Internals(cmd) => internals::run(&g, cmd),
        other => host::run(&g, other),
    }
}

/// One page per command and subcommand: ociboot.8, ociboot-image.8, ociboot-image-pull.8, …
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fn rec(cmd: &clap::Command, name: String, dir: &std::path::Path) -> anyhow::Result<()> {
        // Hidden commands and clap's generated `help` get no page.
        if cmd.is_hide_set() || cmd.get_name() == "help" {
            return Ok(());
        }
        let cmd = cmd.clone().name(name.clone());
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .section("8")
            .render(&mut out)?;
        let path = dir.join(format!("{name}.8"));
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
        for sub in cmd.get_subcommands() {
            rec(sub, format!("{name}-{}", sub.get_name()), dir)?;
        }
        Ok(())
    }
    let mut cmd = <cli::Cli as clap::CommandFactory>::command();
    // Propagate global options (--sysroot, --quiet) into every subcommand's page.
    cmd.build();
    rec(&cmd, "ociboot".into(), dir)
}
