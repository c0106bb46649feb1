//! Pull progress: one bar per layer on a terminal (bytes, rate, ETA), plain lines otherwise
//! (also on a terminal without TERM or with TERM=dumb),
//! nothing with --quiet.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ociboot_oci::{LayerInfo, Sha256Digest};
use ociboot_store::{ImportStats, PullProgress};

use crate::output::{human_size, short_digest};

pub enum Reporter {
    Quiet,
    Lines,
    Bars {
        multi: MultiProgress,
        bars: Mutex<Vec<Option<ProgressBar>>>,
    },
}

impl Reporter {
    pub fn new(quiet: bool) -> Self {
        if quiet {
            Reporter::Quiet
        } else if std::io::stderr().is_terminal()
            && std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb")
        {
            // Bars need a terminal that can move the cursor: not a service's serial console
            // (no TERM) nor TERM=dumb, where they would be drawn nowhere.
            Reporter::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(Vec::new()),
            }
        } else {
            Reporter::Lines
        }
    }

    fn bar(&self, i: usize) -> Option<ProgressBar> {
        match self {
            Reporter::Bars { bars, .. } => bars.lock().ok()?.get(i).cloned().flatten(),
            _ => None,
        }
    }
}

impl PullProgress for Reporter {
    fn waiting_for_lock(&self, holder: &str) {
        if !matches!(self, Reporter::Quiet) {
            eprintln!("Waiting for {holder}");
        }
    }

    fn resolved(&self, image: &str, digest: &Sha256Digest, layers: usize) {
        match self {
            Reporter::Quiet => {}
            Reporter::Lines => eprintln!("Pulling {image} ({digest}, {layers} layers)"),
            Reporter::Bars { multi, bars } => {
                let _ = multi.println(format!("Pulling {image} ({digest}, {layers} layers)"));
                if let Ok(mut b) = bars.lock() {
                    *b = vec![None; layers];
                }
            }
        }
    }

    fn layer_cached(&self, i: usize, l: &LayerInfo) {
        match self {
            Reporter::Quiet => {}
            Reporter::Lines => eprintln!(
                "Layer {} {}: already in the store",
                i + 1,
                short_digest(&l.digest)
            ),
            Reporter::Bars { multi, .. } => {
                let _ = multi.println(format!(
                    "Layer {} {}: already in the store",
                    i + 1,
                    short_digest(&l.digest)
                ));
            }
        }
    }

    fn layer_start(&self, i: usize, l: &LayerInfo) {
        match self {
            Reporter::Quiet => {}
            Reporter::Lines => eprintln!(
                "Layer {} {}: fetching {}",
                i + 1,
                short_digest(&l.digest),
                human_size(l.size)
            ),
            Reporter::Bars { multi, bars } => {
                let pb = multi.add(ProgressBar::new(l.size));
                let style = ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                pb.set_style(style);
                pb.set_prefix(format!("Layer {} {}", i + 1, short_digest(&l.digest)));
                if let Ok(mut b) = bars.lock() {
                    if i < b.len() {
                        b[i] = Some(pb);
                    }
                }
            }
        }
    }

    fn layer_progress(&self, i: usize, bytes: u64) {
        if let Some(pb) = self.bar(i) {
            pb.set_position(bytes);
        }
    }

    fn layer_done(&self, i: usize, s: &ImportStats) {
        match self {
            Reporter::Quiet => {}
            Reporter::Lines => eprintln!(
                "Layer {}: {} files, {} new objects ({}), {} already stored",
                i + 1,
                s.files,
                s.new_objects,
                human_size(s.new_bytes),
                s.reused_objects
            ),
            Reporter::Bars { .. } => {
                if let Some(pb) = self.bar(i) {
                    pb.finish();
                }
            }
        }
    }
}
