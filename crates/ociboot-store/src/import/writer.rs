//! The object-writing side of a layer import: the tar parser queues file contents as [`Job`]s,
//! batched (up to 256 jobs or ~1 MiB, at most 8 batches in flight) so the threads do not wake
//! each other for every small file, and a writer thread turns them into objects through
//! [`Staging`], returning the object ids in file order.
//!
//! Large files travel as 256 KiB chunks, so memory stays bounded whatever the file sizes. The
//! writer must never reorder files (ids are matched to the parser's files by position) and
//! never keep going after a failure: it returns the error and the parser sees [`WriterGone`].

use std::cell::RefCell;
use std::sync::mpsc;

use crate::error::{Error, Result};
use crate::objects::{LargeObject, ObjectId, Staging};
use crate::tree::Meta;

/// Work for the object-writing thread.
pub(super) enum Job {
    Small {
        data: Vec<u8>,
        /// The content's SHA-256 when the parser already computed it.
        digest: Option<[u8; 32]>,
        meta: Meta,
        what: String,
    },
    LargeStart {
        meta: Meta,
    },
    Chunk(Vec<u8>),
    LargeEnd {
        meta: Meta,
        size: u64,
        what: String,
    },
}

/// How far ahead of the writer the tar parser may run (batches of at most ~1 MiB).
pub(super) const QUEUE: usize = 8;
/// Large files reach the writer in chunks of this size.
pub(super) const CHUNK: usize = 256 << 10;

/// The tar parser's end of the queue: hands file contents to the writer thread, in batches so
/// that the two threads do not wake each other for every small file.
pub(super) struct Parser<'a> {
    tx: mpsc::SyncSender<Vec<Job>>,
    batch: RefCell<(Vec<Job>, usize)>,
    pub(super) what: &'a str,
    /// Hash small files here rather than in the writer: balances the threads when there
    /// is no decompression to do.
    pub(super) hash_small: bool,
}

const BATCH_JOBS: usize = 256;
const BATCH_BYTES: usize = 1 << 20;

/// The writer thread went away (it failed); its error is the one to report.
#[derive(Debug)]
pub(super) struct WriterGone;

impl<'a> Parser<'a> {
    pub(super) fn new(tx: mpsc::SyncSender<Vec<Job>>, what: &'a str, hash_small: bool) -> Self {
        Parser {
            tx,
            batch: Default::default(),
            what,
            hash_small,
        }
    }

    pub(super) fn send(&self, j: Job) -> Result<(), WriterGone> {
        let full = {
            let mut b = self.batch.borrow_mut();
            b.1 += match &j {
                Job::Small { data, .. } | Job::Chunk(data) => data.len(),
                _ => 0,
            };
            b.0.push(j);
            b.0.len() >= BATCH_JOBS || b.1 >= BATCH_BYTES
        };
        if full {
            self.flush()?;
        }
        Ok(())
    }

    pub(super) fn flush(&self) -> Result<(), WriterGone> {
        let jobs = std::mem::take(&mut self.batch.borrow_mut().0);
        self.batch.borrow_mut().1 = 0;
        if jobs.is_empty() {
            return Ok(());
        }
        self.tx.send(jobs).map_err(|_| WriterGone)
    }
}

pub(super) fn write_objects(
    rx: mpsc::Receiver<Vec<Job>>,
    staging: &mut Staging,
) -> Result<Vec<ObjectId>> {
    let mut large = None;
    let r = write_jobs(rx, staging, &mut large);
    // A large file cut short (a write failed, or the parser stopped): its temporary file goes.
    if let Some(o) = large.take() {
        staging.discard_large(o);
    }
    r
}

fn write_jobs(
    rx: mpsc::Receiver<Vec<Job>>,
    staging: &mut Staging,
    large: &mut Option<LargeObject>,
) -> Result<Vec<ObjectId>> {
    let mut ids = Vec::new();
    for job in rx.into_iter().flatten() {
        match job {
            Job::Small {
                data,
                digest,
                meta,
                what,
            } => ids.push(staging.add_bytes(&data, digest, &meta, &what)?),
            Job::LargeStart { meta } => *large = Some(staging.begin_large(&meta)?),
            Job::Chunk(data) => {
                if let Some(o) = large.as_mut() {
                    o.write(&data, "object")?;
                }
            }
            Job::LargeEnd { meta, size, what } => {
                let o = large.take().ok_or_else(|| {
                    Error::Layer(format!("{what}: internal error: no object in progress"))
                })?;
                ids.push(staging.finish_large(o, &meta, size, &what)?);
            }
        }
    }
    Ok(ids)
}
