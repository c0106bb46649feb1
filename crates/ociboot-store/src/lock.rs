//! One writer at a time: an exclusive `flock` on a lock file (`ociboot/lock` for the store,
//! `ociboot/deploy.lock` for deployments and boot entries). Readers that need a still store
//! take the store's shared. A waiting command says who holds the lock: the holder writes `pid N (VERB)` into
//! the file, its process id and what it does ([`set_verb`]; the program's name until told),
//! never its arguments (a reference or path can say more than the reader should know).
//!
//! The file is the owner's alone (0600): it is created so, and an older one, readable by
//! anyone, is made so when opened.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;

use rustix::fs::{FlockOperation, Mode};

use crate::error::{Error, IoContext, Result};

/// The lock file's permission bits.
const LOCK_MODE: u32 = 0o600;

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

static VERB: OnceLock<String> = OnceLock::new();

/// Say what this process does (e.g. `image pull`), for the description of the lock's holder
/// that a waiting command shows. Only the first call counts; it should name the command, not
/// its arguments.
pub fn set_verb(verb: &str) {
    let _ = VERB.set(printable(verb));
}

/// At most 64 printable ASCII characters of `s`.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect()
}

/// What the holder writes into the lock: its pid and its verb, or the program's name.
fn holder() -> String {
    let verb = VERB.get().cloned().unwrap_or_else(|| {
        let prog = std::env::args_os().next().unwrap_or_default();
        let name = Path::new(&prog).file_name().unwrap_or_default();
        printable(&name.to_string_lossy())
    });
    format!("pid {} ({verb})", std::process::id())
}

/// Make the lock file private to its owner, if we own it and it is not.
fn restrict(f: &File, path: &Path) -> Result<()> {
    let st = rustix::fs::fstat(f).at("stat", path)?;
    if st.st_mode & 0o7777 != LOCK_MODE && st.st_uid == rustix::process::geteuid().as_raw() {
        rustix::fs::fchmod(f, Mode::from_raw_mode(LOCK_MODE)).at("chmod 0600", path)?;
    }
    Ok(())
}

/// What [`take`] does when someone else holds the lock.
#[derive(Clone, Copy)]
enum IfHeld<'a> {
    /// Say for whom it waits (once), then wait.
    Wait(&'a dyn Fn(&str)),
    /// Give up: `None`.
    GiveUp,
    /// Refuse with [`Error::Busy`] if a writer holds it; wait (saying so) if only readers do.
    RefuseWriter(&'a dyn Fn(&str)),
}

/// Take the lock at `path`, exclusive or shared. If someone else holds it, `waiting` is called
/// once with what it waits for (`the NAME lock, held by pid N (VERB)`), then this blocks until
/// the lock is free.
pub fn acquire(path: &Path, name: &str, exclusive: bool, waiting: &dyn Fn(&str)) -> Result<Lock> {
    match take(path, name, exclusive, IfHeld::Wait(waiting))? {
        Some(l) => Ok(l),
        None => unreachable!("a blocking flock returns with the lock or an error"),
    }
}

/// Take the lock at `path` exclusively if nobody holds it; `None` if someone does.
pub fn try_acquire(path: &Path, name: &str) -> Result<Option<Lock>> {
    take(path, name, true, IfHeld::GiveUp)
}

/// Take the lock at `path` exclusively, but never queue behind another writer: if one holds
/// it, [`Error::Busy`] names it (`pid N (VERB)`). Readers (shared holders, which finish without
/// the network) are waited for, `waiting` told so. For a command that another run of itself
/// must not wait for (`upgrade`, started by a timer).
pub fn acquire_unless_written(path: &Path, name: &str, waiting: &dyn Fn(&str)) -> Result<Lock> {
    match take(path, name, true, IfHeld::RefuseWriter(waiting))? {
        Some(l) => Ok(l),
        None => unreachable!("a refusal is an error, a wait returns with the lock"),
    }
}

/// What the lock file says of its holder (an exclusive one writes it), or a stand-in.
fn read_holder(f: &mut File) -> String {
    let mut holder = String::new();
    let _ = f.rewind();
    let _ = f.take(256).read_to_string(&mut holder);
    let holder = printable(holder.trim());
    if holder.is_empty() {
        "another ociboot process".to_string()
    } else {
        holder
    }
}

/// Take the lock, doing what `if_held` says when someone else holds it.
fn take(path: &Path, name: &str, exclusive: bool, if_held: IfHeld<'_>) -> Result<Option<Lock>> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(LOCK_MODE)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .at("opening lock", path)?;
    restrict(&f, path)?;
    let (try_op, op) = if exclusive {
        (
            FlockOperation::NonBlockingLockExclusive,
            FlockOperation::LockExclusive,
        )
    } else {
        (
            FlockOperation::NonBlockingLockShared,
            FlockOperation::LockShared,
        )
    };
    if rustix::fs::flock(&f, try_op).is_err() {
        match if_held {
            IfHeld::GiveUp => return Ok(None),
            IfHeld::Wait(waiting) => {
                let holder = read_holder(&mut f);
                waiting(&format!("the {name} lock, held by {holder}"));
            }
            IfHeld::RefuseWriter(waiting) => {
                // Shared taken: only readers hold it. (Turning it exclusive below is not
                // atomic: a writer coming in meanwhile is waited for, a narrow race.)
                if rustix::fs::flock(&f, FlockOperation::NonBlockingLockShared).is_err() {
                    return Err(Error::Busy {
                        lock: name.to_string(),
                        path: path.to_path_buf(),
                        holder: read_holder(&mut f),
                    });
                }
                waiting(&format!("the {name} lock, held by a reader"));
            }
        }
        rustix::fs::flock(&f, op).at("locking", path)?;
    }
    if exclusive {
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = write!(f, "{}", holder());
    }
    Ok(Some(Lock { _file: f }))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_lock_is_private_and_names_no_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let l = acquire(&p, "test", true, &|_| panic!("nobody holds it")).unwrap();
        assert_eq!(mode(&p), 0o600);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, holder());
        // The pid and the program's name, none of its arguments.
        let prog = std::env::current_exe().unwrap();
        let prog = prog.file_name().unwrap().to_string_lossy();
        assert_eq!(text, format!("pid {} ({prog})", std::process::id()));
        drop(l);

        // A lock file left readable by anyone (and holding a command line) is made private.
        std::fs::write(&p, "pid 1 (ociboot --sysroot / switch registry/secret:tag)").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(acquire(&p, "test", false, &|_| panic!("nobody holds it")).unwrap());
        assert_eq!(mode(&p), 0o600);
        drop(acquire(&p, "test", true, &|_| panic!("nobody holds it")).unwrap());
        assert!(!std::fs::read_to_string(&p).unwrap().contains("secret"));
    }

    #[test]
    fn a_writer_is_refused_by_name_and_a_reader_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let writer = acquire(&p, "test", true, &|_| panic!("nobody holds it")).unwrap();
        let e = acquire_unless_written(&p, "test", &|_| panic!("a writer is not waited for"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "the test lock ({}) is held by {}",
                p.display(),
                holder()
            )),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            holder(),
            "the record is kept"
        );
        drop(writer);

        let reader = acquire(&p, "test", false, &|_| panic!("nobody holds it")).unwrap();
        let gone = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(reader);
        });
        let told = std::sync::Mutex::new(Vec::new());
        let l = acquire_unless_written(&p, "test", &|w| told.lock().unwrap().push(w.to_string()))
            .unwrap();
        assert_eq!(*told.lock().unwrap(), ["the test lock, held by a reader"]);
        gone.join().unwrap();
        drop(l);
        drop(acquire_unless_written(&p, "test", &|_| panic!("nobody holds it")).unwrap());
    }

    #[test]
    fn the_verb_is_printable_and_short() {
        assert_eq!(printable("image pull"), "image pull");
        assert_eq!(printable("a\nb\x1b[2Jc"), "ab[2Jc");
        assert_eq!(printable(&"x".repeat(100)).len(), 64);
    }
}
