//! Running checks: each in its own process group with stdin from /dev/null, its output passed
//! on line by line (cleaned of control characters, prefixed with its name) and its last line
//! kept for the reason; killed with its whole group when it runs past the timeout, and its
//! group killed when it exits, so nothing it started outlives it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Check, Failure, Verdict};

/// The longest line of a check's output kept for the reason.
const MAX_REASON: usize = 200;

/// Run `checks` in order: required ones first, stopping at the first that fails (the boot has
/// failed; the rest would only delay the reboot), then every wanted one. `say` gets each line
/// for the journal.
pub fn run_checks(checks: &[Check], timeout: Duration, say: &mut dyn FnMut(&str)) -> Verdict {
    let mut failed = Vec::new();
    let mut warnings = Vec::new();
    for c in checks {
        if c.required && !failed.is_empty() {
            say(&format!("{}: skipped (a required check failed)", c.name));
            continue;
        }
        let kind = if c.required { "required" } else { "wanted" };
        say(&format!("{}: running ({kind})", c.name));
        let t = Instant::now();
        match run_one(c, timeout, say) {
            Ok(()) => say(&format!(
                "{}: passed in {:.1} s",
                c.name,
                t.elapsed().as_secs_f64()
            )),
            Err(reason) => {
                let f = Failure {
                    check: c.name.clone(),
                    reason,
                };
                if c.required {
                    say(&format!("{}: FAILED: {}", c.name, f.reason));
                    failed.push(f);
                } else {
                    say(&format!("{}: warning: {}", c.name, f.reason));
                    warnings.push(f);
                }
            }
        }
    }
    Verdict::new(failed, warnings)
}

/// Text from a check, fit for the journal and status: control characters become spaces.
fn clean(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

fn run_one(c: &Check, timeout: Duration, say: &mut dyn FnMut(&str)) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(&c.path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", c.path.display()))?;
    let pgid = rustix::process::Pid::from_child(&child);
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            // Bounded lines: a check printing without newlines cannot fill memory.
            let mut r = BufReader::new(pipe.take(16 << 20));
            let mut buf = Vec::new();
            while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                buf.truncate(4096);
                let _ = tx.send(clean(&String::from_utf8_lossy(&buf)));
                buf.clear();
            }
        }));
    }
    drop(tx);
    let start = Instant::now();
    let mut last = String::new();
    let mut relay = |rx: &mpsc::Receiver<String>, last: &mut String, wait: Duration| {
        if let Ok(l) = rx.recv_timeout(wait) {
            if !l.is_empty() {
                say(&format!("{}: {l}", c.name));
                *last = l;
            }
        }
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for it: {e}")),
        }
        if start.elapsed() > timeout {
            break Err(format!("timed out after {} s", timeout.as_secs()));
        }
        relay(&rx, &mut last, Duration::from_millis(100));
    };
    // Whatever it left running goes with it; then its output drains.
    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    let _ = child.wait();
    for r in readers {
        let _ = r.join();
    }
    while let Ok(l) = rx.try_recv() {
        if !l.is_empty() {
            say(&format!("{}: {l}", c.name));
            last = l;
        }
    }
    let tail = |why: String| {
        let l: String = last.chars().take(MAX_REASON).collect();
        if l.is_empty() {
            why
        } else {
            format!("{why}: {l}")
        }
    };
    match status {
        Ok(st) if st.success() => Ok(()),
        Ok(st) => Err(tail(match st.code() {
            Some(code) => format!("exit status {code}"),
            None => format!("killed by signal ({st})"),
        })),
        Err(why) => Err(tail(why)),
    }
}
