//! Reading one layer: verify the blob, decompress it, parse the tar stream, store file
//! contents as objects and describe the layer as a list of [`LayerOp`]s. Everything streams:
//! a small file (at most 256 KiB) is held whole, a large one passes in 256 KiB chunks, and at
//! most a few MiB of contents are queued between the threads.
//!
//! [`import_layer`] parses tar (and decompresses) on the calling thread; helper threads hash
//! the compressed blob (`stream`), hash the uncompressed stream for the diff_id when the layer
//! is compressed, and write objects (`writer`). A layer is only ever read here, never applied:
//! entries become [`LayerOp`]s with paths normalised (hostile ones refused) and nothing is
//! written anywhere but the store's objects and `tmp/`.
//!
//! The tar stream is read by ociboot's own strict reader ([`crate::tarfmt`]): what it accepts
//! GNU tar and Python's tarfile accept too, with the same content. Memory stays bounded
//! whatever the input: extension headers are refused from their header when they claim more
//! than the limits, and each entry is checked against the kernel's limits and the layer's
//! [`Limits`] (`entry`).

use std::io::{self, Read};

use ociboot_oci::{Compression, Sha256Digest};

use crate::error::{join_worker, Error, Result};
use crate::limits::Limits;
use crate::objects::Staging;
use crate::tarfmt::{Reader, TarError};
use crate::tree::{Content, LayerOp, Node};

mod entry;
mod stream;
mod writer;

use entry::{entry_op, Budget, EntryError};
pub use stream::ProgressReader;
use stream::{Decoder, StreamHasher};
use writer::{write_objects, Job, Parser, WriterGone, QUEUE};

/// What importing a layer produced.
#[derive(Debug)]
pub struct ImportedLayer {
    /// The layer's changes in tar stream order, each file's object id filled in.
    pub ops: Vec<LayerOp>,
    /// The digest of the uncompressed stream; `None` for an uncompressed layer, whose
    /// diff_id is its blob digest (which the verifying reader below has checked).
    pub diff_id: Option<Sha256Digest>,
    /// Bytes of the uncompressed tar stream, padding after the end marker included.
    pub uncompressed_size: u64,
}

/// Import a layer from the raw `blob` stream, which must have `digest` and `size` (checked as
/// it streams, on a thread of its own). `what` names the layer for errors. The caller checks
/// `diff_id` against the config.
///
/// This thread decompresses and parses tar; the blob's digest, the diff_id (of a compressed
/// layer) and the objects are computed and written on helper threads, so both cores work on a
/// large layer. A layer beyond the store's [`Limits`] is refused.
pub fn import_layer<R: Read>(
    blob: R,
    digest: Sha256Digest,
    size: u64,
    compression: Compression,
    staging: &mut Staging,
    what: &str,
) -> Result<ImportedLayer> {
    import_limited(
        blob,
        digest,
        size,
        compression,
        staging,
        what,
        Limits::DEFAULT,
    )
}

/// [`import_layer`] within `limits`.
fn import_limited<R: Read>(
    blob: R,
    digest: Sha256Digest,
    size: u64,
    compression: Compression,
    staging: &mut Staging,
    what: &str,
    limits: Limits,
) -> Result<ImportedLayer> {
    let blob = StreamHasher::verifying(blob, digest, size, what.to_string());
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Job>>(QUEUE);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || write_objects(rx, staging));
        let parsed = parse_layer(
            blob,
            compression,
            Parser::new(tx, what, compression == Compression::None),
            limits,
        );
        let ids =
            join_worker(writer.join(), || format!("object writer for {what}")).and_then(|r| r);
        let (mut layer, pending) = match (parsed, ids) {
            (Ok(p), Ok(ids)) => {
                let (layer, pending) = p;
                if pending.len() != ids.len() {
                    return Err(Error::Layer(format!(
                        "{what}: internal error: {} files, {} objects",
                        pending.len(),
                        ids.len()
                    )));
                }
                (layer, pending.into_iter().zip(ids).collect::<Vec<_>>())
            }
            (_, Err(e)) => return Err(e),
            (Err(e), Ok(_)) => return Err(e),
        };
        for (i, id) in pending {
            if let LayerOp::Put(
                _,
                Node {
                    content: Content::File { object, .. },
                    ..
                },
            ) = &mut layer.ops[i]
            {
                *object = id;
            }
        }
        Ok(layer)
    })
}

/// Parse the stream; returns the layer and, for each regular file in order, the index of its
/// op (whose object id the writer supplies).
fn parse_layer<R: Read>(
    blob: R,
    compression: Compression,
    p: Parser<'_>,
    limits: Limits,
) -> Result<(ImportedLayer, Vec<usize>)> {
    let what = p.what;
    let dec = Decoder::new(blob, compression).map_err(|e| Error::stream(what, e))?;
    // An uncompressed layer's diff_id is its blob digest: no need to hash it twice.
    let hash = compression != Compression::None;
    let mut hashing = StreamHasher::new(dec, hash);
    let mut ops = Vec::new();
    let mut pending = Vec::new();
    let gone = |_: WriterGone| Error::Layer(format!("{what}: storing file contents failed"));
    let mut budget = Budget::new(limits);
    let mut ar = Reader::new(&mut hashing);
    while let Some(e) = ar.next_entry().map_err(|e| tar_error(what, e))? {
        budget.entry(what, &e.path)?;
        if let Some((op, is_file)) =
            entry_op(&e, &mut ar, &p, &mut budget).map_err(|e| match e {
                EntryError::Gone(g) => gone(g),
                EntryError::Err(e) => e,
            })?
        {
            if is_file {
                pending.push(ops.len());
            }
            ops.push(op);
        }
    }
    p.flush().map_err(gone)?;
    drop(p);
    // The tar end marker may be followed by padding: it is part of the diff_id.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| tar_err(what, e))?;
    let (digest, uncompressed_size, dec) = hashing.finish()?;
    dec.drain_inner().map_err(|e| tar_err(what, e))?;
    Ok((
        ImportedLayer {
            ops,
            diff_id: digest,
            uncompressed_size,
        },
        pending,
    ))
}

/// A refusal of the tar reader, naming the layer.
fn tar_error(what: &str, e: TarError) -> Error {
    match e {
        TarError::Io(e) => tar_err(what, e),
        TarError::Malformed(m) => Error::Layer(format!("{what}: malformed tar stream: {m}")),
        TarError::Limit(m) => Error::Limit(format!("{what}: {m}")),
    }
}

fn tar_err(what: &str, e: io::Error) -> Error {
    match Error::stream(what, e) {
        Error::Io(e) => Error::Layer(format!(
            "{}: malformed or truncated layer: {}",
            e.context, e.source
        )),
        other => other,
    }
}

#[cfg(test)]
mod limit_tests;
#[cfg(test)]
mod tests;
