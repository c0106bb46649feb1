//! The slow VM test of an unattended host: nobody types anything in the guest after the first
//! boot. A host installed from v1 finds v2 in its registry with its update timer, stages it,
//! reboots into it, checks it and blesses the boot; then finds v3, whose required health check
//! fails (first try) and hangs (later tries), and comes back to v2 by itself when systemd-boot
//! has no tries left for v3, and stays there.
//!
//! Images: the quick start's base image (scripts/make-base-image --slim with the VM test's step
//! unit: one cached image for vm_quickstart and this test) and the Containerfiles of
//! tests/vm/unattended/, built with `buildah bud --isolation chroot`, pushed with skopeo to a
//! `docker-registry` on 127.0.0.1:PORT, which the guest reaches as 10.0.2.100:5000
//! (scripts/run-vm's guestfwd). Guest side: tests/vm/unattended/observe.sh.
//!
//! Boots (scripts/run-vm --no-reboot: a guest reboot ends qemu, the harness boots it again):
//! 1. v1 (the step types): status; the cost of a timer run with no update; the admin's drop-in
//!    shortens the timer, /etc/ociboot/health.toml shortens the check timeout and the grace
//!    period, the journal is made persistent; power off. Then v2 is pushed.
//! 2. v1: the timer applies v2; the power is cut while it pulls.
//! 3. v1 (old): the timer runs again, stages v2 and reboots by itself.
//! 4. v2: checks pass, the wanted check only warns, the boot is blessed, v1 is the rollback.
//!    v3 is pushed meanwhile; the timer stages it and reboots. The registry is stopped.
//! 5. From here on, v3's tries: its check fails, the host reboots; it hangs until the timeout, reboot; ...
//!    until the tries run out and systemd-boot boots v2 again. In that last boot a timer run
//!    against the stopped registry fails cleanly, the registry is started again, the next run
//!    succeeds and does not stage v3 again; status names v3 as given up and its check.
//!
//! Boots 2.. only observe (print and wait): every reboot is the guest's own.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::vm::*;
use common::*;

/// The repository in the registry, and the images' names in buildah's storage.
const REPO: &str = "unattended";
const LOCAL: &str = "localhost/ociboot-unattended";
/// The v3 check's name, which status must give as the reason v3 was given up.
const V3_CHECK: &str = "60-unattended-broken";

fn fixtures() -> PathBuf {
    repo_root().join("tests/vm/unattended")
}

/// The base image (cached) and v1, v2, v3 from the Containerfiles; returns the time taken.
fn build_images(dir: &Path) -> f64 {
    let t = Instant::now();
    let add = step_runner_tree(dir);
    sh(Command::new(repo_root().join("scripts/make-base-image"))
        .arg("--slim")
        .env("OCIBOOT_BASE_ADD", &add));
    for v in ["v1", "v2", "v3"] {
        sh(Command::new("buildah")
            .args(["bud", "--isolation", "chroot", "--layers", "-f"])
            .arg(fixtures().join(format!("{v}.Containerfile")))
            .args(["-t", &format!("{LOCAL}:{v}")])
            .arg(fixtures()));
    }
    t.elapsed().as_secs_f64()
}

/// `skopeo copy` of an image from buildah's storage to the registry as REPO:latest.
fn push(reg: &Registry, v: &str) -> Instant {
    let t = Instant::now();
    sh(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("containers-storage:{LOCAL}:{v}"))
        .arg(format!("docker://{}/{REPO}:latest", reg.host())));
    eprintln!(
        "vm_unattended: pushed {v} in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    t
}

/// A step: observe.sh's functions, then `body`.
fn step(body: &str) -> String {
    let lib = std::fs::read_to_string(fixtures().join("observe.sh")).unwrap();
    format!("{lib}\n{body}\n")
}

/// A step that observes until the guest reboots by itself: the timer's runs watched from the
/// start (`watch`: watch_timer's arguments), status, `before`, then the journal followed.
fn watching(before: &str, watch: &str) -> String {
    step(&format!(
        "watch_timer {watch} &\nreport\n{before}\necho WATCHING\nfollow_journal\nexec sleep infinity"
    ))
}

/// The n-th `ociboot status` for people in the step's log (after the n-th JSON one).
fn human_status(b: &Boot, n: usize) -> String {
    b.step()
        .split("OCIBOOT-JSON ")
        .nth(n + 1)
        .unwrap_or_else(|| b.fail(&format!("no status #{n}")))
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("ENTRIES "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Guest uptime (s) at which the journal shows the timer's service first starting.
fn first_run_at(b: &Boot) -> f64 {
    b.lines("JOURNAL")
        .iter()
        .find(|l| l.contains("Starting ociboot-fetch-apply-updates.service"))
        .and_then(|l| l.strip_prefix('[')?.split(']').next()?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn check(b: &Boot, ok: bool, what: &str) {
    if !ok {
        b.fail(what);
    }
}

/// Every deployment in a status (booted, staged, rollback, the others).
fn deployments(st: &serde_json::Value) -> Vec<&serde_json::Value> {
    let s = &st["status"];
    let mut all: Vec<&serde_json::Value> = ["booted", "staged", "rollback"]
        .iter()
        .map(|k| &s[*k])
        .filter(|d| !d.is_null())
        .collect();
    if let Some(o) = s["otherDeployments"].as_array() {
        all.extend(o.iter());
    }
    all
}

fn version_of(d: &serde_json::Value) -> &str {
    d["image"]["version"].as_str().unwrap_or("none")
}

/// TIMER-RUN lines after `after` in the step's log: (n, exit status).
fn runs_after(step: &str, after: &str) -> Vec<(String, String)> {
    let Some(i) = step.find(after) else {
        return Vec::new();
    };
    step[i..]
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("TIMER-RUN "))
        .map(|l| {
            let f = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .unwrap_or("")
                    .to_string()
            };
            (f("n="), f("rc="))
        })
        .collect()
}

const BOOT1: &str = r#"
report
schedule
echo "FAILED-UNITS $(systemctl list-units --failed --plain --no-legend | tr '\n' ' ')"
# The cost of a run with no update (the registry has v1, which runs): the timer's service.
b0=$(net_bytes)
systemctl start "$SVC"
rc=$?
b1=$(net_bytes)
us=$(( $(systemctl show -P ExecMainExitTimestampMonotonic "$SVC") - $(systemctl show -P ExecMainStartTimestampMonotonic "$SVC") ))
echo "NO-UPDATE-RUN rc=$rc bytes=$((b1 - b0)) us=$us"
journalctl -b -o cat --no-pager -u "$SVC" | sed 's/^/RUNLOG /'
echo "OCIBOOT-JSON $(ociboot status --json)"
# The admin: a short schedule (drop-in; its empty OnBootSec= clears all the unit's times; the
# first run at 60 s, after the step watches: a step starts at 25-65 s of uptime under TCG),
# short health timeouts, a journal kept across boots.
mkdir -p /etc/systemd/system/ociboot-fetch-apply-updates.timer.d
cat >/etc/systemd/system/ociboot-fetch-apply-updates.timer.d/50-vmtest.conf <<'END'
[Timer]
OnBootSec=
OnBootSec=60s
OnUnitInactiveSec=20s
RandomizedDelaySec=0
AccuracySec=1s
END
mkdir -p /etc/ociboot
printf '[health]\ncheck-timeout-seconds = 20\nreboot-delay-seconds = 3\n' >/etc/ociboot/health.toml
mkdir -p /var/log/journal
systemd-tmpfiles --create --prefix /var/log/journal
journalctl --flush
sync
"#;

/// The last boots' step: on v3 it only waits (the host reboots by itself); back on v2 it waits
/// for a failed timer run (registry stopped) and a good one, then shows status and the journal
/// of every boot, and ends (power off).
const AFTER_V3: &str = r#"
report
if [ "$(cat /usr/share/unattended/release)" != 2 ]; then
    follow_journal
    exec sleep infinity
fi
echo FINAL-BOOT
follow_journal
watch_timer &
wait_fail_then_success 200
echo "WAITED-RC $?"
sleep 1
report
journalctl -m -o short-monotonic --no-pager -u ociboot-health.service \
    -u ociboot-health-assess.service -u systemd-bless-boot.service | sed 's/^/PAST /'
journalctl --list-boots --no-pager | sed 's/^/BOOTS /'
"#;

#[test]
fn vm_unattended_slow_timer_health_rollback() {
    if std::env::var_os("OCIBOOT_SKIP_VM").is_some() {
        eprintln!("vm_unattended: skipped (OCIBOOT_SKIP_VM is set)");
        return;
    }
    let t0 = Instant::now();
    let dir = KeepOnFailure(Some(scratch("vm-unattended")));
    let build_s = build_images(dir.path());
    let mut reg = Registry::start(None);
    push(&reg, "v1");

    let t = Instant::now();
    let disk = dir.path().join("disk.raw");
    let h = Host::new("vm-unattended-install");
    h.insecure(&reg.host());
    h.ok(&[
        "install",
        "to-disk",
        "--via-loopback",
        "--root-size",
        "4G",
        "--source-imgref",
        &format!("docker://{}/{REPO}:latest", reg.host()),
        "--target-imgref",
        &format!("10.0.2.100:5000/{REPO}:latest"),
        disk.to_str().unwrap(),
    ]);
    let install_s = t.elapsed().as_secs_f64();
    let mut vm = Vm::new("vm_unattended", dir.path(), disk, vec![], Some(reg.port));
    let limit = Duration::from_secs(match vm.accel {
        Accel::Kvm => 200,
        Accel::Tcg => 420,
    });

    // Boot 1: v1; the no-update run; the admin's settings.
    let b = vm.boot("v1", &step(BOOT1));
    let st = b.status(0);
    assert_eq!(b.version(&st, "booted"), "1", "v1 booted");
    assert_eq!(
        st["spec"]["image"]["image"],
        format!("10.0.2.100:5000/{REPO}:latest")
    );
    check(
        &b,
        st["status"]["booted"]["ociboot"]["bootCounting"].is_null(),
        "the installed entry is counted",
    );
    check(
        &b,
        b.line("TIMER").ends_with(" active"),
        "the update timer is not enabled and active",
    );
    let noupd = b.line("NO-UPDATE-RUN");
    let field = |k: &str| -> u64 {
        noupd
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| b.fail(&format!("no {k} in NO-UPDATE-RUN {noupd}")))
    };
    check(&b, field("rc=") == 0, "the run with no update failed");
    let (noupd_bytes, noupd_ms) = (field("bytes="), field("us=") as f64 / 1000.0);
    check(
        &b,
        b.status(1)["status"]["staged"].is_null(),
        "a run with no update staged something",
    );

    // v2 into the registry.
    let t_v2 = push(&reg, "v2");

    // Boot 2: the timer applies v2; the power is cut while it pulls: once the registry has
    // sent 8 MiB of v2's 32 MiB layer (seen on the host, whenever the guest's step starts).
    let sent0 = reg.bytes_written();
    let mut sent = 0;
    let b = vm.boot_observed("timer-cut", &watching("", "4000000"), limit, |_| {
        sent = reg.bytes_written() - sent0;
        if sent > 8 << 20 {
            Act::Cut
        } else {
            Act::Wait
        }
    });
    check(
        &b,
        b.end == End::Cut,
        "the timer's run never pulled v2's layer",
    );
    // (The step may not have started: the cut goes by the registry's bytes.)
    if b.log.contains("OCIBOOT-STEP-BEGIN") {
        check(
            &b,
            runs_after(b.step(), "OCIBOOT-STEP-BEGIN").is_empty(),
            "the run had ended before the cut",
        );
    }
    let pulling = format!(
        "{} MiB sent by the registry, {:.1} s after qemu started",
        sent >> 20,
        b.wall.as_secs_f64()
    );

    // Boot 3: v1 again (the cut came before staging); the timer stages v2 and reboots.
    let t_b3 = Instant::now();
    let b = vm.boot_observed("after-cut", &watching("schedule", ""), limit, |_| Act::Wait);
    check(
        &b,
        b.end == End::Reboot,
        "the guest did not reboot by itself",
    );
    let st = b.status(0);
    assert_eq!(
        b.version(&st, "booted"),
        "1",
        "after the cut v1 (old) boots"
    );
    // The drop-in's schedule: the first run a minute after boot (the unit's own: an hour, up
    // to two more at random). systemd 252 lists only OnUnitInactiveUSec in TimersMonotonic.
    let first = first_run_at(&b);
    check(
        &b,
        b.line("SCHEDULE").contains("OnUnitInactiveUSec=20s")
            && b.line("RANDOM-DELAY") == "0"
            && (60.0..90.0).contains(&first),
        &format!("the drop-in's schedule is not in effect (first run at {first} s of uptime)"),
    );
    check(
        &b,
        b.step()
            .contains("Starting ociboot-fetch-apply-updates.service")
            || b.step().contains("TIMER-STARTED"),
        "no timer run seen before the reboot",
    );

    // Boot 4: v2. Once it is checked, v3 goes into the registry; the timer stages it, reboots.
    let mut v2_running = None;
    let mut t_v3 = None;
    let b = vm.boot_observed(
        "v2",
        &watching("ociboot image fsck\necho \"FSCK-RC $?\"", ""),
        limit,
        |r| {
            if v2_running.is_none() && r.step.contains("OCIBOOT-STEP-BEGIN") {
                v2_running = Some(Instant::now());
            }
            if t_v3.is_none() && r.step.contains("WATCHING") {
                t_v3 = Some(push(&reg, "v3"));
            }
            Act::Wait
        },
    );
    let v2_running = v2_running.unwrap_or_else(|| b.fail("the step never started on v2"));
    let st = b.status(0);
    assert_eq!(b.version(&st, "booted"), "2", "the timer brought v2");
    assert_eq!(b.version(&st, "rollback"), "1", "v1 is the rollback");
    assert_eq!(b.line("RELEASE"), "2");
    let booted = &st["status"]["booted"]["ociboot"];
    check(
        &b,
        booted["bootCounting"].is_null(),
        "v2's boot is not blessed (it still counts tries)",
    );
    check(
        &b,
        booted["health"]["result"] == "passed",
        "v2's health verdict is not passed",
    );
    check(
        &b,
        b.line("BLESS") == "good",
        "systemd-bless-boot does not say good",
    );
    check(
        &b,
        b.line("BOOT-COMPLETE") == "active",
        "boot-complete.target not reached",
    );
    check(
        &b,
        !b.line("ENTRIES").contains('+'),
        "an entry still has a counter after the blessing",
    );
    check(
        &b,
        b.lines("HEALTH")
            .iter()
            .any(|l| l.contains("50-unattended-wanted")),
        "the failing wanted check is not named in the health unit's journal",
    );
    check(&b, b.line("FSCK-RC") == "0", "the store does not check out");
    check(&b, t_v3.is_some(), "v3 was not pushed");
    check(&b, b.end == End::Reboot, "the timer did not reboot into v3");
    reg.stop();

    // Boots 5..: v3's tries, then v2 again.
    let t_v3_staged = Instant::now();
    let mut v3_boots: Vec<(f64, String)> = Vec::new();
    let mut restarted = false;
    let mut back_on_v2 = None;
    let last = loop {
        let n = v3_boots.len() + 1;
        let b = vm.boot_observed(&format!("after-v3-{n}"), &step(AFTER_V3), limit, |r| {
            if back_on_v2.is_none() && r.step.contains("FINAL-BOOT") {
                back_on_v2 = Some(t_v3_staged.elapsed().as_secs_f64());
            }
            let failed = runs_after(r.step, "FINAL-BOOT")
                .iter()
                .any(|(_, rc)| rc != "0");
            if failed && !restarted {
                reg.restart();
                restarted = true;
            }
            Act::Wait
        });
        if b.log.contains("FINAL-BOOT") {
            break b;
        }
        check(&b, b.end == End::Reboot, "a v3 try did not end in a reboot");
        let tried = b
            .console
            .lines()
            .find_map(|l| l.split("unattended-v3-check: ").nth(1))
            .unwrap_or_else(|| b.fail("v3's check did not run"))
            .trim()
            .to_string();
        v3_boots.push((b.wall.as_secs_f64(), tried));
        assert!(v3_boots.len() <= 4, "v3 is still booted after 4 tries");
    };
    let b = last;
    check(&b, !v3_boots.is_empty(), "v3 never booted");
    let back_on_v2 = back_on_v2.unwrap_or(f64::NAN);
    check(
        &b,
        b.end == End::PowerOff,
        "the last boot did not end its step",
    );
    let st = b.status(0);
    assert_eq!(b.version(&st, "booted"), "2", "back on v2");
    let v3: Vec<&serde_json::Value> = deployments(&st)
        .into_iter()
        .filter(|d| version_of(d) == "3")
        .collect();
    check(&b, v3.len() == 1, "no v3 deployment in status");
    let o = &v3[0]["ociboot"];
    check(
        &b,
        o["bootCounting"]["triesLeft"] == 0,
        "v3 is not shown as given up (triesLeft 0)",
    );
    check(
        &b,
        o["health"]["result"] == "failed"
            && o["health"]["failed"]
                .as_array()
                .is_some_and(|f| f.iter().any(|c| c["check"] == V3_CHECK)),
        "v3's health verdict does not name its failing check",
    );
    check(
        &b,
        human_status(&b, 0).contains(V3_CHECK) && human_status(&b, 0).contains("given up"),
        "`ociboot status` does not say v3 was given up on, for its failing check",
    );
    check(
        &b,
        b.line("V3-TRIES") == v3_boots.len().to_string(),
        "v3's check did not run once per v3 boot",
    );
    // The registry was down for the first run: it failed, saying where; the next succeeded.
    let runs = runs_after(b.step(), "FINAL-BOOT");
    check(
        &b,
        restarted,
        "no timer run failed against the stopped registry",
    );
    check(
        &b,
        b.line("WAITED-RC") == "0",
        "no good run after the failed one",
    );
    check(
        &b,
        b.lines("JOURNAL")
            .iter()
            .any(|l| l.contains("10.0.2.100:5000")),
        "the failed run's error does not name the registry",
    );
    let st = b.status(1);
    assert_eq!(b.version(&st, "booted"), "2", "still on v2");
    check(
        &b,
        st["status"]["staged"].is_null(),
        "v3, given up on, was staged again",
    );
    let assessed = b
        .lines("PAST")
        .iter()
        .filter(|l| l.contains("rebooting in"))
        .count();
    check(
        &b,
        assessed >= v3_boots.len(),
        "the journal does not show one automatic reboot per v3 try",
    );

    let copy_to_v2 = v2_running.duration_since(t_v2).as_secs_f64();
    let boot3_to_v2 = v2_running.duration_since(t_b3).as_secs_f64();
    let v3_push_to_staged = t_v3_staged.duration_since(t_v3.unwrap()).as_secs_f64();
    let tries: Vec<String> = v3_boots
        .iter()
        .map(|(s, what)| format!("{s:.0} s ({what})"))
        .collect();
    let summary = format!(
        "vm_unattended summary: accelerator {:?}; images (base cached, v1-v3) {build_s:.1} s; \
         install to-disk {install_s:.1} s; timer run with no update: {noupd_bytes} bytes, \
         {noupd_ms:.0} ms; cut while pulling ({pulling}); skopeo copy of v2 to v2 running \
         {copy_to_v2:.1} s (with the cut boot), {boot3_to_v2:.1} s from the boot after the cut; \
         v3 pushed to staged and rebooting {v3_push_to_staged:.1} s; from bad v3 back to v2: \
         {} boots ({} v3 tries: {}) in {back_on_v2:.1} s; timer runs in the last boot {runs:?}; \
         total {:.1} s",
        vm.accel,
        v3_boots.len() + 1,
        v3_boots.len(),
        tries.join(", "),
        t0.elapsed().as_secs_f64()
    );
    report(&summary, &vm.timings, "vm_unattended");
}
