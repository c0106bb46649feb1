//! `ociboot image …`

use std::path::Path;

use anyhow::{Context, Result};
use ociboot_oci::{fetch_image, open_source, ImageReference, RegistryOptions};
use ociboot_store::{unpack, Store};

use crate::cli::{Global, ImageCommand, ListFormat};
use crate::host::say;
use crate::output::{human_size, short_digest};
use crate::progress::Reporter;

fn parse_ref(s: &str) -> Result<ImageReference> {
    Ok(s.parse::<ImageReference>()?)
}

fn open_write(g: &Global, rep: &Reporter) -> Result<Store> {
    use ociboot_store::PullProgress;
    Ok(Store::open_write(
        &ociboot_deploy::physical_root(&g.sysroot),
        &|h| rep.waiting_for_lock(h),
    )?)
}

fn open_read(g: &Global, rep: &Reporter) -> Result<Option<Store>> {
    use ociboot_store::PullProgress;
    match Store::open_read(&ociboot_deploy::physical_root(&g.sysroot), &|h| {
        rep.waiting_for_lock(h)
    }) {
        Ok(s) => Ok(Some(s)),
        Err(ociboot_store::Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The store for listing and inspecting: no lock, so a pull never makes these wait.
fn open_unlocked(g: &Global) -> Result<Option<Store>> {
    match Store::open_unlocked(&ociboot_deploy::physical_root(&g.sysroot)) {
        Ok(s) => Ok(Some(s)),
        Err(ociboot_store::Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn run(g: &Global, cmd: ImageCommand) -> Result<()> {
    let rep = Reporter::new(g.quiet);
    match cmd {
        ImageCommand::Pull { image } => pull(g, &rep, &image),
        ImageCommand::List { format } => list(g, format),
        ImageCommand::Inspect { image } => inspect(g, &image),
        ImageCommand::Unpack { image, dest } => unpack_image(g, &rep, &image, &dest),
        ImageCommand::Rm { images } => {
            let store = open_write(g, &rep)?;
            for i in &images {
                for r in store.remove(i)? {
                    say(g, format_args!("Removed {r}"));
                }
            }
            prune(g, &store)
        }
        ImageCommand::Prune => prune(g, &open_write(g, &rep)?),
        ImageCommand::Fsck { contents } => fsck(g, &rep, contents),
    }
}

fn pull(g: &Global, rep: &Reporter, image: &str) -> Result<()> {
    let r = parse_ref(image)?;
    let opts = RegistryOptions::from_env()?;
    let store = open_write(g, rep)?;
    let out = store.pull(&r, &opts, rep)?;
    if out.already_present {
        say(
            g,
            format_args!("Image {r} is up to date ({})", out.manifest_digest),
        );
    } else {
        say(g, format_args!("Pulled {r}"));
        say(g, format_args!("  Digest: {}", out.manifest_digest));
        say(
            g,
            format_args!(
                "  Layers: {} fetched, {} already stored; {} new objects ({})",
                out.layers_fetched,
                out.layers_cached,
                out.stats.new_objects,
                human_size(out.stats.new_bytes)
            ),
        );
    }
    Ok(())
}

fn list(g: &Global, format: ListFormat) -> Result<()> {
    let list = match open_unlocked(g)? {
        Some(s) => s.list()?,
        None => Vec::new(),
    };
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        ListFormat::Table => {
            let rows: Vec<[String; 5]> = list
                .iter()
                .map(|i| {
                    [
                        i.reference.clone(),
                        short_digest(&i.digest),
                        i.version.clone().unwrap_or_else(|| "-".into()),
                        human_size(i.size),
                        human_size(i.unpacked_size),
                    ]
                })
                .collect();
            print_table(
                ["REFERENCE", "DIGEST", "VERSION", "SIZE", "UNPACKED"].map(String::from),
                &rows,
            );
        }
    }
    Ok(())
}

/// Columns padded to their widest cell; the last two (sizes) aligned right.
fn print_table(head: [String; 5], rows: &[[String; 5]]) {
    let mut w = [0usize; 5];
    for r in std::iter::once(&head).chain(rows) {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for r in std::iter::once(&head).chain(rows) {
        println!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        );
    }
}

fn inspect(g: &Global, image: &str) -> Result<()> {
    let stored = match open_unlocked(g)? {
        Some(s) => match s.find(image) {
            Ok(d) => {
                let (m, c) = s.manifest_and_config(&d)?;
                Some((d, m, c))
            }
            Err(ociboot_store::Error::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let (digest, m, c) = match stored {
        Some(x) => x,
        None => {
            let r = parse_ref(image)?;
            let mut src = open_source(&r, &RegistryOptions::from_env()?)?;
            let f = fetch_image(src.as_mut()).with_context(|| format!("inspecting {r}"))?;
            (f.manifest_digest, f.manifest_bytes, f.config_bytes)
        }
    };
    let v = serde_json::json!({
        "digest": digest.to_string(),
        "manifest": serde_json::from_slice::<serde_json::Value>(&m)?,
        "config": serde_json::from_slice::<serde_json::Value>(&c)?,
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn unpack_image(g: &Global, rep: &Reporter, image: &str, dest: &Path) -> Result<()> {
    let store = open_write(g, rep)?;
    let d = match store.find(image) {
        Ok(d) => d,
        Err(ociboot_store::Error::NotFound(_)) => {
            let r = parse_ref(image)?;
            let opts = RegistryOptions::from_env()?;
            store.pull(&r, &opts, rep)?.manifest_digest
        }
        Err(e) => return Err(e.into()),
    };
    let tree = store.tree(&d)?;
    let st = unpack(&store, &tree, dest)
        .with_context(|| format!("unpacking {image} to {}", dest.display()))?;
    say(
        g,
        format_args!(
            "Unpacked {image} ({}) to {}: {} entries, {}",
            short_digest(&d),
            dest.display(),
            st.entries,
            human_size(st.bytes)
        ),
    );
    Ok(())
}

fn prune(g: &Global, store: &Store) -> Result<()> {
    let rep = store.prune(&[])?;
    say(
        g,
        format_args!(
            "Freed {} ({} objects, {} layers, {} images)",
            human_size(rep.bytes),
            rep.objects,
            rep.layers,
            rep.images
        ),
    );
    Ok(())
}

fn fsck(g: &Global, rep: &Reporter, contents: bool) -> Result<()> {
    let Some(store) = open_read(g, rep)? else {
        say(g, "No store: nothing to check");
        return Ok(());
    };
    let problems = store.fsck(contents)?;
    if problems.is_empty() {
        say(g, "Store is consistent");
        return Ok(());
    }
    for p in &problems {
        eprintln!("{p}");
    }
    anyhow::bail!(
        "{} problem(s) found in {}",
        problems.len(),
        store.root().display()
    )
}
