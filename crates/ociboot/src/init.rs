//! ociboot as PID 1: the root set-up at boot (see ociboot_deploy::rootsetup), then the image's
//! own init. Runs as `init=/ociboot/deploy/<stateroot>/deploy/<id>/usr/bin/ociboot`, started
//! by the image's stock initramfs after it mounted the physical root.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::time::Instant;

use ociboot_deploy::rootsetup;

/// Log to the kernel log (and so to the console) and to our stderr, which is the console.
fn log(level: u8, msg: &str) {
    if let Ok(mut k) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = k.write_all(format!("<{level}>ociboot: {msg}\n").as_bytes());
    }
    if level <= 3 {
        eprintln!("ociboot: {msg}");
    }
}

fn fatal(msg: &str) -> ! {
    log(0, &format!("FATAL: {msg}"));
    log(
        0,
        "FATAL: cannot set up the root filesystem; this boot entry cannot start. Choose \
         another entry (the rollback deployment) in the boot menu.",
    );
    std::thread::sleep(std::time::Duration::from_secs(5));
    // PID 1 exiting makes the kernel panic, which reboots with panic=N or stops here.
    std::process::exit(1)
}

pub fn main() -> ! {
    let t = Instant::now();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let prepared = match rootsetup::prepare_root(std::path::Path::new("/"), &cmdline) {
        Ok(p) => p,
        Err(e) => fatal(&e.to_string()),
    };
    if let Err(e) = rootsetup::switch_root(&prepared) {
        fatal(&e.to_string());
    }
    let init = ociboot_deploy::cmdline::parse(&cmdline)
        .get("ociboot.init")
        .unwrap_or("/sbin/init")
        .to_string();
    log(
        5,
        &format!(
            "deployment {} is the root (set up in {:.1} ms); starting {init}",
            prepared.key,
            t.elapsed().as_secs_f64() * 1000.0
        ),
    );
    let err = std::process::Command::new(&init)
        .arg0(&init)
        .args(std::env::args_os().skip(1))
        .exec();
    fatal(&format!("executing {init}: {err}"))
}
