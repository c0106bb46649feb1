//! One mutating command at a time: an exclusive `flock` on `ociboot/lock`. Readers take it
//! shared. A waiting command says who holds the lock (the holder writes its pid and command
//! line into the file).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use rustix::fs::FlockOperation;

use crate::error::{IoContext, Result};

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Take the lock at `path`, exclusive or shared. If someone else holds it, `waiting` is called
/// once with a description of the holder, then this blocks until the lock is free.
pub fn acquire(path: &Path, exclusive: bool, waiting: &dyn Fn(&str)) -> Result<Lock> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .at("opening lock", path)?;
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
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        let holder = holder.trim();
        waiting(if holder.is_empty() {
            "another ociboot process"
        } else {
            holder
        });
        rustix::fs::flock(&f, op).at("locking", path)?;
    }
    if exclusive {
        let args: Vec<String> = std::env::args().collect();
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = write!(f, "pid {} ({})", std::process::id(), args.join(" "));
    }
    Ok(Lock { _file: f })
}
