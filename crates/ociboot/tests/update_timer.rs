//! The update timer. Its runs are the exact command of
//! systemd/ociboot-fetch-apply-updates.service's `ExecStart=` (read from the file, so the test
//! cannot drift from the unit), on a machine whose image is in Debian's `docker-registry` on
//! 127.0.0.1 (started and stopped with tests/fixtures/registry.sh), seen through a relay that
//! counts the requests and bytes on the wire. A run with no update fetches one manifest and no
//! blob; against a stopped registry it fails naming the registry and changes nothing, and the
//! next run stages; two runs never overlap (the second is refused, naming the first), while a
//! manual `switch` waits its turn; `upgrade --check` tells a staged update from a new one.
//!
//! PID 1 on the test host is not systemd: a `systemctl` first on PATH stands in for it and
//! records the reboot a run asks for (the VM tests boot the real thing). The units' schedule
//! is checked here, their installation in units.rs.

mod common;
mod timer_net;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sha2::Digest as _;
use timer_net::{Gate, Registry, Relay};

const SERVICE: &str = "systemd/ociboot-fetch-apply-updates.service";
const TIMER: &str = "systemd/ociboot-fetch-apply-updates.timer";

/// The arguments of the service's `ExecStart=`, after the program, which must be the
/// binary's installed path.
fn timer_args() -> Vec<String> {
    let unit = std::fs::read_to_string(repo_root().join(SERVICE)).unwrap();
    let exec: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ExecStart="))
        .collect();
    assert_eq!(exec.len(), 1, "one ExecStart= in {SERVICE}");
    let mut words = exec[0].split_whitespace().map(str::to_string);
    assert_eq!(words.next().as_deref(), Some("/usr/bin/ociboot"));
    words.collect()
}

fn digest(tag: &str) -> String {
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(os_layout().join("fixtures.json")).unwrap()).unwrap();
    j["tags"][tag]["manifest"].as_str().unwrap().to_string()
}
// ---- the machine ----------------------------------------------------------------------------

/// A machine booted from `image` (a registry reference), whose `systemctl` records its
/// arguments in `systemctl.log` instead of reaching a PID 1.
fn booted_from(name: &str, registry_host: &str, image: &str) -> Machine {
    let mut m = Machine::new(name);
    m.h.insecure(registry_host);
    let bin = m.h.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let shim = bin.join("systemctl");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\necho \"$*\" >>'{}'\n",
            m.h.path("systemctl.log").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    m.h.env.push(("PATH".into(), path));
    m.install_booted(&format!("docker://{image}"));
    m
}

/// The `systemctl` calls the runs made.
fn systemctl_calls(m: &Machine) -> Vec<String> {
    std::fs::read_to_string(m.h.path("systemctl.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The manifest digest of the staged deployment ("none" if none is).
fn staged_digest(m: &Machine) -> String {
    m.status()["status"]["staged"]["image"]["imageDigest"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// A timer run, as systemd would start it, and how long it took.
fn timer_run(m: &Machine) -> (Output, Duration) {
    let t = Instant::now();
    let out = m.h.output(m.h.cmd().args(timer_args()));
    (out, t.elapsed())
}

fn spawn_timer_run(m: &Machine) -> Child {
    spawn(m.h.cmd().args(timer_args()))
}

fn spawn(c: &mut Command) -> Child {
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file of a tree as a user would compare it (kind, mode, owner, contents or link
/// target), but the store's lock file, which records the last process that took it.
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    fn rec(root: &Path, p: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let m = std::fs::symlink_metadata(p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        if rel == Path::new("ociboot/lock") {
            return;
        }
        let what = if m.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for n in names {
                rec(root, &n, out);
            }
            "dir".to_string()
        } else if m.is_symlink() {
            format!("-> {}", std::fs::read_link(p).unwrap().display())
        } else if m.is_file() {
            format!("{:x}", sha2::Sha256::digest(std::fs::read(p).unwrap()))
        } else {
            format!("special {:o}", m.mode())
        };
        out.insert(
            rel,
            format!("{what} {:o} {}:{}", m.mode(), m.uid(), m.gid()),
        );
    }
    let mut out = BTreeMap::new();
    rec(root, root, &mut out);
    out
}

fn assert_same_tree(before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>) {
    let changed: Vec<_> = before
        .iter()
        .filter(|(p, v)| after.get(*p) != Some(v))
        .map(|(p, _)| p)
        .chain(after.keys().filter(|p| !before.contains_key(*p)))
        .collect();
    assert!(changed.is_empty(), "changed on disk: {changed:?}");
}

// ---- the runs -------------------------------------------------------------------------------

#[test]
fn a_run_without_an_update_fetches_one_manifest_and_no_blob() {
    let reg = Registry::start();
    reg.push("v1", "latest");
    let relay = Relay::start(reg.port);
    let m = booted_from(
        "timer-noop",
        &relay.host(),
        &format!("{}/os:latest", relay.host()),
    );
    let before = tree(&m.root());
    let log_before = reg.log().len();
    relay.take();

    let (out, took) = timer_run(&m);
    let traffic = relay.take();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "--quiet");
    assert!(systemctl_calls(&m).is_empty(), "no update, no reboot");
    assert_same_tree(&before, &tree(&m.root()));
    eprintln!(
        "timer run without an update: {took:?}, {} connection(s), {} requests, {} bytes sent, \
         {} bytes received: {:?}",
        traffic.connections,
        traffic.requests.len(),
        traffic.sent,
        traffic.received,
        traffic.requests
    );
    assert!(
        traffic
            .requests
            .iter()
            .any(|r| r.starts_with("GET /v2/os/manifests/latest ")),
        "{traffic:?}"
    );
    assert!(
        traffic.requests.iter().all(|r| !r.contains("/blobs/")),
        "a blob was fetched: {traffic:?}"
    );
    // The registry's own access log agrees: a manifest, no blob.
    let log = &reg.log()[log_before..];
    assert!(log.contains("\"GET /v2/os/manifests/latest "), "{log}");
    assert!(!log.contains("/blobs/"), "{log}");
    // Far below the image: no layer crossed.
    assert!(traffic.received < 20_000, "{traffic:?}");

    let out = m.ok(&["upgrade", "--check"]);
    assert!(out.starts_with("No changes in: "), "{out}");

    // A registry that answers garbage: the run fails naming it, and changes nothing.
    relay.set(Gate::Garbage);
    let before = tree(&m.root());
    let (out, _) = timer_run(&m);
    let err = text(&out.stderr);
    eprintln!("timer run, registry answering garbage: {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&relay.host()), "names the registry: {err}");
    assert_same_tree(&before, &tree(&m.root()));
    assert!(systemctl_calls(&m).is_empty());
}

#[test]
fn a_run_against_a_stopped_registry_fails_cleanly_and_the_next_stages() {
    let reg = Registry::start();
    reg.push("v1", "latest");
    let m = booted_from(
        "timer-down",
        &reg.host(),
        &format!("{}/os:latest", reg.host()),
    );
    reg.push("v2", "latest");
    reg.down();
    let before = tree(&m.root());

    let (out, took) = timer_run(&m);
    let err = text(&out.stderr);
    eprintln!("timer run, registry stopped ({took:?}): {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&reg.host()), "names the registry: {err}");
    assert_same_tree(&before, &tree(&m.root()));
    assert!(
        systemctl_calls(&m).is_empty(),
        "no reboot after a failed run"
    );
    assert!(m.status()["status"]["staged"].is_null());

    // The next tick, with the registry back: staged, and a reboot asked for.
    reg.up();
    let (out, _) = timer_run(&m);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(staged_digest(&m), digest("v2"));
    assert_eq!(
        systemctl_calls(&m),
        ["reboot --message=Initiated by ociboot"]
    );

    // --check tells the staged update from a new one.
    let out = m.ok(&["upgrade", "--check"]);
    assert!(!out.contains("Update available"), "{out}");
    assert!(
        out.contains(&format!("No changes in: {}/os:latest", reg.host()))
            && out.contains("Staged update present, not changed")
            && out.contains(&format!("Digest: {}", digest("v2"))),
        "{out}"
    );
    assert!(m.status()["status"]["booted"]["cachedUpdate"].is_null());
    reg.push("v3", "latest");
    let out = m.ok(&["upgrade", "--check"]);
    assert!(
        out.contains(&format!("Update available for: {}/os:latest", reg.host()))
            && out.contains(&format!("Digest: {}", digest("v3"))),
        "{out}"
    );
    assert_eq!(
        m.status()["status"]["booted"]["cachedUpdate"]["imageDigest"],
        digest("v3").as_str()
    );
    assert_eq!(staged_digest(&m), digest("v2"), "--check staged nothing");

    // Downloaded only: --check says so; the timer's next run lets it be applied, and reboots.
    m.ok(&["upgrade", "--download-only"]);
    let out = m.ok(&["upgrade", "--check"]);
    assert!(
        out.contains("Staged update present, not changed")
            && out.contains(&format!("Digest: {}", digest("v3")))
            && out.contains("Downloaded only: `ociboot upgrade --from-downloaded`"),
        "{out}"
    );
    let (out, _) = timer_run(&m);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(m.status()["status"]["staged"]["downloadOnly"], false);
    assert_eq!(systemctl_calls(&m).len(), 2, "{:?}", systemctl_calls(&m));
}

/// Wait until the relay holds a connection of `child` (which then holds the store's lock).
fn until_held(relay: &Relay, child: &mut Child, seen: usize) {
    let t = Instant::now();
    while relay.connections() <= seen {
        assert!(child.try_wait().unwrap().is_none(), "it ended early");
        assert!(t.elapsed() < Duration::from_secs(30), "no connection");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The second run of the timer while `holder` holds the store: refused at once, naming it.
fn assert_refused(m: &Machine, holder: &Child, verb: &str) {
    let before = tree(&m.root());
    let t = Instant::now();
    let mut run = spawn_timer_run(m);
    while run.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(10) {
            let _ = run.kill();
            let err = text(&run.wait_with_output().unwrap().stderr);
            panic!(
                "the second run waits for pid {} ({verb}): {err}",
                holder.id()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (out, took) = (run.wait_with_output().unwrap(), t.elapsed());
    let err = text(&out.stderr);
    eprintln!("timer run while the store is held ({took:?}): {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(5), "it waited: {took:?}");
    assert!(
        err.contains(&format!("is held by pid {} ({verb})", holder.id())),
        "{err}"
    );
    assert!(err.contains("ociboot/lock"), "{err}");
    assert_same_tree(&before, &tree(&m.root()));
}

#[test]
fn overlapping_runs_are_refused_and_a_manual_switch_waits() {
    let reg = Registry::start();
    reg.push("v1", "latest");
    let relay = Relay::start(reg.port);
    let image = format!("{}/os:latest", relay.host());
    let m = booted_from("timer-overlap", &relay.host(), &image);
    reg.push("v2", "latest");
    reg.push("v3", "v3");

    // The first run holds the store while its registry does not answer.
    relay.set(Gate::Held);
    let mut first = spawn_timer_run(&m);
    until_held(&relay, &mut first, 0);
    assert_refused(&m, &first, "upgrade");
    // A manual switch meanwhile waits for it, and says for whom.
    let mut switch = spawn(
        m.h.cmd()
            .args(["switch", &format!("{}/os:v3", relay.host())]),
    );
    let mut lines = std::io::BufReader::new(switch.stderr.take().unwrap()).lines();
    let waiting = lines.next().unwrap().unwrap();
    assert!(
        waiting.contains(&format!(
            "Waiting for the store lock, held by pid {} (upgrade)",
            first.id()
        )),
        "{waiting}"
    );
    relay.set(Gate::Open);
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        systemctl_calls(&m),
        ["reboot --message=Initiated by ociboot"]
    );
    assert!(switch.wait().unwrap().success());
    assert_eq!(staged_digest(&m), digest("v3"));

    // A switch holding the store: the timer's run is refused, naming it.
    relay.set(Gate::Held);
    let seen = relay.connections();
    let mut switch = spawn(m.h.cmd().args(["switch", &image]));
    until_held(&relay, &mut switch, seen);
    assert_refused(&m, &switch, "switch");
    relay.set(Gate::Open);
    let out = switch.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(staged_digest(&m), digest("v2"));
    assert_eq!(systemctl_calls(&m).len(), 1, "only the first run rebooted");
}

// ---- the units ------------------------------------------------------------------------------

#[test]
fn the_timer_has_bootc_s_schedule() {
    let timer = std::fs::read_to_string(repo_root().join(TIMER)).unwrap();
    for line in [
        "OnBootSec=1h",
        "OnUnitInactiveSec=8h",
        "RandomizedDelaySec=2h",
        "WantedBy=timers.target",
        "ConditionKernelCommandLine=ociboot",
    ] {
        assert!(timer.lines().any(|l| l == line), "{TIMER}: no {line}");
    }
    assert_eq!(timer_args(), ["upgrade", "--apply", "--quiet"]);
    let service = std::fs::read_to_string(repo_root().join(SERVICE)).unwrap();
    for line in [
        "Type=oneshot",
        "After=network-online.target",
        "Wants=network-online.target",
        "ConditionKernelCommandLine=ociboot",
    ] {
        assert!(service.lines().any(|l| l == line), "{SERVICE}: no {line}");
    }
}
