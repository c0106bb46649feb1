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
//! records the reboot a run asks for (the VM tests boot the real thing). The units themselves:
//! scripts/install-units enables each as its [Install] section says, the .deb carries them so,
//! and `systemd-analyze verify` accepts them.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sha2::Digest as _;

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

// ---- the registry, started and stopped like an admin's -------------------------------------

/// Debian's docker-registry, through tests/fixtures/registry.sh (access log on).
struct Registry {
    dir: tempfile::TempDir,
    port: u16,
}

fn registry_sh(args: &[&str]) {
    sh(Command::new("bash")
        .arg(repo_root().join("tests/fixtures/registry.sh"))
        .args(args));
}

impl Registry {
    fn start() -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = Registry {
            dir: scratch("timer-registry"),
            port,
        };
        r.up();
        r
    }

    fn up(&self) {
        registry_sh(&[
            "start",
            self.dir.path().to_str().unwrap(),
            &self.port.to_string(),
        ]);
    }

    fn down(&self) {
        registry_sh(&["stop", self.dir.path().to_str().unwrap()]);
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The fixture OS image `tag` as `os:<dest>`, digests kept.
    fn push(&self, tag: &str, dest: &str) {
        sh(Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:{tag}", os_layout().display()))
            .arg(format!("docker://{}/os:{dest}", self.host())));
    }

    /// The registry's log (its access log lines among them).
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.down();
    }
}

// ---- a relay on 127.0.0.1 that counts what crosses it --------------------------------------

/// What crossed the relay: connections, request lines, bytes each way.
#[derive(Debug, Default, Clone)]
struct Traffic {
    connections: usize,
    requests: Vec<String>,
    sent: u64,
    received: u64,
}

/// What the relay does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Carry it to the registry.
    Open,
    /// Hold it (the client waits for its answer) until the gate changes.
    Held,
    /// Answer every request with garbage, as a broken registry or a captive portal would.
    Garbage,
}

/// A TCP relay in front of the registry, counting what crosses it.
struct Relay {
    port: u16,
    traffic: Arc<Mutex<Traffic>>,
    gate: Arc<(Mutex<Gate>, Condvar)>,
}

impl Relay {
    fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        let gate = Arc::new((Mutex::new(Gate::Open), Condvar::new()));
        let (t, o) = (traffic.clone(), gate.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (t, o) = (t.clone(), o.clone());
                std::thread::spawn(move || relay_one(client, upstream, &t, &o));
            }
        });
        Relay {
            port,
            traffic,
            gate,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What crossed since the last call.
    fn take(&self) -> Traffic {
        std::mem::take(&mut *self.traffic.lock().unwrap())
    }

    fn connections(&self) -> usize {
        self.traffic.lock().unwrap().connections
    }

    fn set(&self, gate: Gate) {
        *self.gate.0.lock().unwrap() = gate;
        self.gate.1.notify_all();
    }
}

fn relay_one(
    mut client: TcpStream,
    upstream: u16,
    traffic: &Arc<Mutex<Traffic>>,
    gate: &(Mutex<Gate>, Condvar),
) {
    traffic.lock().unwrap().connections += 1;
    let g = *gate
        .1
        .wait_while(gate.0.lock().unwrap(), |g| *g == Gate::Held)
        .unwrap();
    if g == Gate::Garbage {
        let mut buf = [0u8; 4096];
        while let Ok(1..) = client.read(&mut buf) {
            let junk = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n<garbage>";
            if client.write_all(junk).is_err() {
                break;
            }
        }
        return;
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (mut c2, mut s2, t2) = (
        client.try_clone().unwrap(),
        server.try_clone().unwrap(),
        traffic.clone(),
    );
    let down = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n @ 1..) = s2.read(&mut buf) {
            t2.lock().unwrap().received += n as u64;
            if c2.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = c2.shutdown(std::net::Shutdown::Write);
    });
    // Requests of a pull have no body: each ends at its blank line.
    let (mut buf, mut head) = ([0u8; 65536], Vec::new());
    while let Ok(n @ 1..) = client.read(&mut buf) {
        let mut t = traffic.lock().unwrap();
        t.sent += n as u64;
        head.extend_from_slice(&buf[..n]);
        while let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let req: Vec<u8> = head.drain(..i + 4).collect();
            let line = String::from_utf8_lossy(&req);
            t.requests
                .push(line.lines().next().unwrap_or_default().to_string());
        }
        drop(t);
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Write);
    let _ = down.join();
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
    m.ok(&[
        "install",
        "to-filesystem",
        "--source-imgref",
        &format!("docker://{image}"),
        "--root-mount-spec",
        "UUID=0a1b2c3d",
        "--bootloader",
        "none",
        m.root().to_str().unwrap(),
    ]);
    m.reboot();
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

fn install_units(root: &Path, units: &[PathBuf]) -> Output {
    Command::new(repo_root().join("scripts/install-units"))
        .arg(root)
        .args(units)
        .output()
        .unwrap()
}

fn link(p: &Path) -> String {
    std::fs::read_link(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .display()
        .to_string()
}

/// Every unit file of systemd/.
fn our_units() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_root().join("systemd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

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

#[test]
fn every_unit_is_installed_and_enabled_as_its_install_section_says() {
    let dir = scratch("units");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let out = install_units(&root, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let u = root.join("usr/lib/systemd/system");
    for unit in our_units() {
        let name = unit.file_name().unwrap();
        assert_eq!(
            std::fs::read(u.join(name)).unwrap(),
            std::fs::read(&unit).unwrap()
        );
        assert_eq!(
            std::fs::metadata(u.join(name)).unwrap().mode() & 0o7777,
            0o644
        );
    }
    assert_eq!(
        link(&u.join("timers.target.wants/ociboot-fetch-apply-updates.timer")),
        "../ociboot-fetch-apply-updates.timer"
    );
    assert_eq!(
        link(&u.join("multi-user.target.wants/ociboot-finalize-staged.service")),
        "../ociboot-finalize-staged.service"
    );
    assert!(
        !u.join("multi-user.target.wants/ociboot-fetch-apply-updates.service")
            .exists(),
        "the service is started by its timer only"
    );

    // Units like the health checks': RequiredBy= gets a .requires link, each target its own.
    let units = dir.path().join("more");
    std::fs::create_dir(&units).unwrap();
    let health = units.join("ociboot-health.service");
    std::fs::write(
        &health,
        "[Unit]\nBefore=boot-complete.target\n[Service]\nType=oneshot\nExecStart=/bin/true\n\
         [Install]\nRequiredBy=boot-complete.target\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    let assess = units.join("ociboot-health-assess.service");
    std::fs::write(
        &assess,
        "[Service]\nExecStart=/bin/true\n\n[Install]\n# a comment\nWantedBy = multi-user.target \n",
    )
    .unwrap();
    let out = install_units(&root, &[health, assess]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        link(&u.join("boot-complete.target.requires/ociboot-health.service")),
        "../ociboot-health.service"
    );
    assert_eq!(
        link(&u.join("multi-user.target.wants/ociboot-health.service")),
        "../ociboot-health.service"
    );
    assert_eq!(
        link(&u.join("multi-user.target.wants/ociboot-health-assess.service")),
        "../ociboot-health-assess.service"
    );
    assert!(!u.join("boot-complete.target.wants").exists());

    // An [Install] key it does not know: exit 1, naming the file and line, nothing written.
    let bad = units.join("bad.service");
    std::fs::write(
        &bad,
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=a.target\nDefaultInstance=x\n",
    )
    .unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = install_units(&empty, &[units.join("ociboot-health.service"), bad.clone()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:5", bad.display())) && err.contains("DefaultInstance"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn systemd_analyze_verifies_every_unit() {
    let dir = scratch("units-verify");
    let root = dir.path();
    let out = install_units(root, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // What the units run: the binary where the .deb puts it, /bin/true (a merged /usr).
    let bin = root.join("usr/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    for (from, to) in [
        (env!("CARGO_BIN_EXE_ociboot"), "ociboot"),
        ("/bin/true", "true"),
    ] {
        if std::fs::hard_link(from, bin.join(to)).is_err() {
            std::fs::copy(from, bin.join(to)).unwrap();
        }
    }
    let u = root.join("usr/lib/systemd/system");
    // The targets they name, as the image's systemd has them (the host's copies).
    for e in std::fs::read_dir("/usr/lib/systemd/system").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "target") {
            let _ = std::fs::copy(&p, u.join(p.file_name().unwrap()));
        }
    }
    for unit in our_units() {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .arg(format!("--root={}", root.display()))
            .arg(u.join(unit.file_name().unwrap()))
            .output()
            .expect("systemd-analyze (Debian package systemd) must be installed");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}: {}",
            unit.display(),
            text(&out.stderr)
        );
    }
}

#[test]
fn the_deb_ships_every_unit_enabled() {
    let dir = scratch("deb");
    let out = Command::new(repo_root().join("scripts/build-deb"))
        .args(["--binary", env!("CARGO_BIN_EXE_ociboot"), "--out"])
        .arg(dir.path())
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deb = text(&out.stdout).trim().to_string();
    let list = text(&sh(Command::new("dpkg-deb").args(["-c", &deb])).stdout);
    for unit in our_units() {
        let name = unit.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            list.contains(&format!("./usr/lib/systemd/system/{name}\n")),
            "{name} not in the .deb:\n{list}"
        );
    }
    for (link, to) in [
        (
            "timers.target.wants/ociboot-fetch-apply-updates.timer",
            "../ociboot-fetch-apply-updates.timer",
        ),
        (
            "multi-user.target.wants/ociboot-finalize-staged.service",
            "../ociboot-finalize-staged.service",
        ),
    ] {
        assert!(
            list.contains(&format!("./usr/lib/systemd/system/{link} -> {to}\n")),
            "{link} not in the .deb:\n{list}"
        );
    }
}
